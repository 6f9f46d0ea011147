// Does a client resend a request by itself? The benchmarks promise "no
// retries anywhere", and a runtime's HTTP client may retry inside (Deno's
// node:http was seen to resend a GET, and even a POST, on a new connection
// after a reused one closed without an answer). This asks each client
// directly: an upstream answers the first request on each connection and
// closes the connection at the second, unanswered; the client sends two
// requests over its one connection. If the upstream sees a third request,
// the client resent one.
import * as net from "node:net";
import { BODY } from "../_nginx.ts";
import type { ClientFactory } from "./client.ts";

const RESPONSE = `HTTP/1.1 200 OK\r\nContent-Length: ${BODY.length}\r\n\r\n${BODY}`;

/** What the probe saw: requests the upstream received for two sent, and the second's outcome. */
export interface RetryProbe {
  /** True if the upstream received more requests than the client was asked to send. */
  readonly resent: boolean;
  readonly requestsSeen: number;
  readonly connections: number;
  /** "ok" or the failure of the second request. */
  readonly second: string;
}

/** Runs the probe on a new client from `make` (one connection), within about 5 s. */
export async function probeRetry(make: ClientFactory): Promise<RetryProbe> {
  let connections = 0;
  let requestsSeen = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    connections++;
    sockets.add(socket);
    let onThis = 0;
    socket.on("error", () => {});
    socket.on("close", () => sockets.delete(socket));
    socket.on("data", (chunk: Uint8Array) => {
      // One request per chunk is enough here: each client writes a GET in one go.
      const text = new TextDecoder().decode(chunk);
      const count = text.split("\r\n\r\n").length - 1;
      for (let i = 0; i < count; i++) {
        requestsSeen++;
        if (++onThis === 1) socket.write(RESPONSE);
        else socket.destroy();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const client = make((server.address() as net.AddressInfo).port, 1);
  const timeout = (ms: number): Promise<string> =>
    new Promise((resolve) => setTimeout(() => resolve(`no answer in ${ms} ms`), ms));
  try {
    await Promise.race([client.get(), timeout(2000)]);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const second = await Promise.race([
      client.get().then(() => "ok", (error: unknown) => String(error).slice(0, 80)),
      timeout(2000),
    ]);
    return { resent: requestsSeen > 2, requestsSeen, connections, second };
  } finally {
    await Promise.race([client.close().catch(() => {}), timeout(1000)]);
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  }
}
