// Starting and stopping real server programs (Debian packages) for tests:
// a free port on 127.0.0.1, readiness by connecting, SIGTERM then SIGKILL,
// and a last-resort kill at exit so no server outlives the test process.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import process from "node:process";
import { delay } from "../_async.ts";

const running: Set<ChildProcess> = new Set();
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/** A port on 127.0.0.1 that was free a moment ago (the OS picked it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

/** A new temporary directory for one server's config, pid and logs. */
export function serverDir(name: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `upstream-pool-${name}-`));
}

/**
 * The absolute path of a server program, or an error that says how to get
 * it: CI installs it (`.ci/run`), so a missing one fails, never skips.
 */
export function findProgram(program: string, debianPackage: string): string {
  const dirs = [...(process.env.PATH ?? "").split(":"), "/usr/sbin", "/usr/bin", "/sbin"];
  for (const dir of dirs) {
    const candidate = path.join(dir, program);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // Not here.
    }
  }
  throw new Error(
    `${program} is not installed: run \`bash .ci/run\` (it installs the test servers) or ` +
      `\`apt-get install --no-install-recommends ${debianPackage}\``,
  );
}

/** What a program prints about its version (stdout and stderr, first line). */
export function programVersion(program: string, args: string[]): string {
  const result = spawnSync(program, args, { encoding: "utf8", timeout: 5000 });
  return `${result.stdout ?? ""}${result.stderr ?? ""}`.trim().split("\n")[0] ?? "";
}

/** How to run one server: the program and its arguments for a given port. */
export interface ServerCommand {
  program: string;
  args(port: number): string[];
}

/**
 * One server program listening on 127.0.0.1:`port`. It can be killed and
 * started again on the same port (the fault tests do that).
 */
export class ServerProcess {
  readonly name: string;
  readonly port: number;
  #command: ServerCommand;
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();
  #output = "";

  private constructor(name: string, command: ServerCommand, port: number) {
    this.name = name;
    this.#command = command;
    this.port = port;
  }

  /** Starts the server on a free port, trying another port if that one was taken meanwhile. */
  static async start(name: string, command: ServerCommand): Promise<ServerProcess> {
    let lastError: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
      const server = new ServerProcess(name, command, await freePort());
      try {
        await server.restart();
        return server;
      } catch (error) {
        lastError = error;
        await server.stop();
      }
    }
    throw lastError;
  }

  /** The last lines the program printed, for error messages. */
  get output(): string {
    return this.#output.split("\n").slice(-10).join("\n");
  }

  /** Starts the program (again) on this port and resolves once it accepts connections. */
  async restart(timeoutMs = 10_000): Promise<void> {
    if (this.#child !== undefined) throw new Error(`${this.name} is already running`);
    const child = spawn(this.#command.program, this.#command.args(this.port), {
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.#child = child;
    running.add(child);
    let exited = false;
    this.#exited = new Promise((resolve) => {
      child.on("exit", () => {
        exited = true;
        running.delete(child);
        if (this.#child === child) this.#child = undefined;
        resolve();
      });
      child.on("error", (error) => {
        this.#output += `\n${error.message}`;
        exited = true;
        running.delete(child);
        if (this.#child === child) this.#child = undefined;
        resolve();
      });
    });
    for (const stream of [child.stdout, child.stderr]) {
      stream?.setEncoding("utf8");
      stream?.on("data", (text: string) => this.#output = (this.#output + text).slice(-4000));
    }
    const deadline = Date.now() + timeoutMs;
    while (!await canConnect(this.port)) {
      if (exited || Date.now() > deadline) {
        throw new Error(
          `${this.name} did not start listening on 127.0.0.1:${this.port}` +
            `${exited ? " (it exited)" : ` within ${timeoutMs} ms`}:\n${this.output}`,
        );
      }
      await delay(10);
    }
  }

  /** Sends `signal` and resolves once the program has exited (SIGKILL after `graceMs`). */
  async stop(signal: "SIGTERM" | "SIGKILL" = "SIGTERM", graceMs = 3000): Promise<void> {
    const child = this.#child;
    if (child === undefined) return;
    child.kill(signal);
    const killer = setTimeout(() => child.kill("SIGKILL"), graceMs);
    await this.#exited;
    clearTimeout(killer);
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}
