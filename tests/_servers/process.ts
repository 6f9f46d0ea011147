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

/** A program the real-server tests run, and the Debian package that has it. */
export interface ServerProgram {
  program: string;
  debianPackage: string;
}

/**
 * The servers the real-server tests start. scripts/install_servers.mjs, which
 * `npm test` runs first, installs the same list (tests/install_servers_test.ts
 * checks that they agree).
 */
export const SERVER_PROGRAMS: readonly ServerProgram[] = [
  { program: "nginx", debianPackage: "nginx" },
  { program: "redis-server", debianPackage: "redis-server" },
  { program: "memcached", debianPackage: "memcached" },
];

/** Programs that UPSTREAM_POOL_HIDE_PROGRAMS names look missing (to try the missing path). */
function isHidden(program: string): boolean {
  return (process.env.UPSTREAM_POOL_HIDE_PROGRAMS ?? "").split(",").some((name) =>
    name.trim() === program
  );
}

/** The absolute path of an executable program, or undefined. */
function locateProgram(program: string): string | undefined {
  if (isHidden(program)) return undefined;
  const dirs = [
    ...(process.env.PATH ?? "").split(":"),
    ...["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"],
  ];
  for (const dir of dirs) {
    if (!dir) continue;
    const candidate = path.join(dir, program);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      if (fs.statSync(candidate).isFile()) return candidate;
    } catch {
      // Not here.
    }
  }
  return undefined;
}

/** How to install `missing`, for messages. */
function howToInstall(missing: readonly ServerProgram[]): string {
  const packages = missing.map((entry) => entry.debianPackage).join(" ");
  return `\`npm test\` installs them when run as root where apt-get is, or run ` +
    `\`apt-get install --no-install-recommends ${packages}\` (as root)`;
}

/**
 * The absolute path of a server program, or an error that says how to get
 * it (under CI a missing program fails the tests, never skips them).
 */
export function findProgram(program: string, debianPackage: string): string {
  const found = locateProgram(program);
  if (found !== undefined) return found;
  throw new Error(`${program} is not installed: ${howToInstall([{ program, debianPackage }])}`);
}

/**
 * Why the real-server tests cannot run here: the programs that are missing
 * and how to install them; or undefined when all are present. Under
 * `CI=true` always undefined, so that a missing server fails the tests.
 */
export function realServersSkipReason(
  programs: readonly ServerProgram[] = SERVER_PROGRAMS,
): string | undefined {
  const missing = programs.filter((entry) => locateProgram(entry.program) === undefined);
  if (missing.length === 0 || /^(true|1)$/i.test(process.env.CI ?? "")) return undefined;
  const names = missing.map((entry) => entry.program).join(", ");
  return `SKIPPED: ${names} not installed: ${howToInstall(missing)}`;
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
