// A TCP listener on 127.0.0.1 whose accept queue is full: it listens with a
// backlog of 0, never accepts, and a couple of connects fill its queue, so
// the kernel drops every further SYN and a connect to it stays in SYN-SENT
// until the client gives up. A `node:net` server cannot play it (it always
// accepts), so Python's socket module does, in a child process that ends
// when its stdin closes.
import { spawn } from "node:child_process";

const LISTENER = `
import socket, sys
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(0)
port = server.getsockname()[1]
fillers = []
for _ in range(3):
    filler = socket.socket()
    filler.setblocking(False)
    filler.connect_ex(("127.0.0.1", port))
    fillers.append(filler)
print(port, flush=True)
sys.stdin.read()
`;

export interface FullBacklogListener {
  port: number;
  close(): Promise<void>;
}

/** Starts the listener, or resolves `undefined` if `python3` cannot be run here. */
export function listenWithFullBacklog(): Promise<FullBacklogListener | undefined> {
  return new Promise((resolve, reject) => {
    const child = spawn("python3", ["-c", LISTENER], { stdio: ["pipe", "pipe", "inherit"] });
    const exited = new Promise<void>((done) => child.once("exit", () => done()));
    let output = "";
    child.once("error", (error: Error & { code?: string }) => {
      if (error.code === "ENOENT") resolve(undefined);
      else reject(error);
    });
    child.stdout!.on("data", (chunk) => {
      output += chunk;
      if (!output.includes("\n")) return;
      const port = Number(output.trim());
      if (!Number.isInteger(port) || port <= 0) {
        child.kill();
        reject(new Error(`the full-backlog listener printed ${JSON.stringify(output)}`));
        return;
      }
      // Let the fillers' handshakes finish, so the queue is full before use.
      setTimeout(() =>
        resolve({
          port,
          close: () => {
            child.stdin!.end();
            return exited;
          },
        }), 20);
    });
  });
}
