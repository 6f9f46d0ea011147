// A loopback upstream for tests, written with node:net (node:tls for TLS)
// so that the same server runs under Deno, Bun and Node while each
// runtime's own client transport is under test. It listens on 127.0.0.1 on
// a free port, or on a Unix socket in a fresh temporary directory.
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { after, before } from "node:test";
import * as tls from "node:tls";
import type { TcpAddress, UnixAddress } from "../src/address.ts";
import { testCertificates } from "./_certs.ts";

export type UpstreamMode = "echo" | "silent";

export interface TestUpstreamOptions {
  /** "echo" writes back whatever arrives; "silent" never writes by itself. */
  mode?: UpstreamMode;
  /** Listen on a Unix socket in a new temporary directory instead of a TCP port. */
  unix?: boolean;
  /**
   * Speak TLS with the test server certificate (for `localhost` and
   * `127.0.0.1`); the address then trusts the test CA. Server-side sockets
   * are `tls.TLSSocket`s, counted once their handshake is done.
   */
  tls?: boolean;
  /** TLS only: ask for a client certificate signed by the test CA and refuse clients without one. */
  requireClientCertificate?: boolean;
}

export class TestUpstream {
  readonly server: net.Server;
  /** `{ hostname, port }`, or `{ path }` for a Unix-socket upstream. */
  readonly address: TcpAddress & { port: number } | UnixAddress;
  /** Server-side sockets that are still open. */
  readonly open: Set<net.Socket> = new Set();
  /** How many connections were accepted in all (for TLS: completed handshakes). */
  accepted = 0;
  /** TLS only: handshakes that failed or that the client gave up on. */
  handshakeFailures = 0;
  #waiters: Array<(socket: net.Socket) => void> = [];
  #backlog: net.Socket[] = [];
  #openWaiters: Array<() => void> = [];

  private constructor(server: net.Server, address: TestUpstream["address"]) {
    this.server = server;
    this.address = address;
  }

  static async start(options: TestUpstreamOptions = {}): Promise<TestUpstream> {
    const mode = options.mode ?? "echo";
    const certificates = options.tls ? testCertificates() : undefined;
    const server = certificates === undefined
      ? net.createServer({ noDelay: true, allowHalfOpen: false })
      : tls.createServer({
        noDelay: true,
        allowHalfOpen: false,
        key: certificates.server.key,
        cert: certificates.server.cert,
        ...(options.requireClientCertificate
          ? { requestCert: true, rejectUnauthorized: true, ca: [certificates.ca] }
          : {}),
      });
    const socketPath = options.unix
      ? path.join(fs.mkdtempSync(path.join(os.tmpdir(), "upstream-pool-")), "upstream.sock")
      : undefined;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      if (socketPath === undefined) server.listen(0, "127.0.0.1", () => resolve());
      else server.listen(socketPath, () => resolve());
    });
    const port = (server.address() as net.AddressInfo | null)?.port ?? 0;
    const upstream = new TestUpstream(
      server,
      socketPath !== undefined
        ? { path: socketPath }
        : certificates === undefined
        ? { hostname: "127.0.0.1", port }
        : { hostname: "127.0.0.1", port, tls: { caCerts: [certificates.ca] } },
    );
    if (certificates === undefined) {
      server.on("connection", (socket: net.Socket) => upstream.#accept(socket, mode));
    } else {
      server.on("secureConnection", (socket: tls.TLSSocket) => upstream.#accept(socket, mode));
      // A client that gave up during the handshake (a failed certificate check).
      server.on("tlsClientError", () => upstream.handshakeFailures++);
    }
    return upstream;
  }

  /** The TCP port; throws for a Unix-socket upstream. */
  get port(): number {
    if ("path" in this.address) throw new TypeError("this upstream listens on a Unix socket");
    return this.address.port;
  }

  /** The port or the socket path, as a fixture's command-line argument. */
  get location(): string {
    return "path" in this.address ? this.address.path : String(this.address.port);
  }

  #accept(socket: net.Socket, mode: UpstreamMode): void {
    this.accepted++;
    this.open.add(socket);
    if (!("path" in this.address)) socket.setNoDelay(true);
    socket.on("error", () => {});
    socket.on("close", () => {
      this.open.delete(socket);
      for (const wake of this.#openWaiters.splice(0)) wake();
    });
    if (mode === "echo") socket.on("data", (chunk) => socket.write(chunk));
    const waiter = this.#waiters.shift();
    if (waiter) waiter(socket);
    else this.#backlog.push(socket);
  }

  /** The next accepted connection (server side), in order of arrival. */
  nextConnection(): Promise<net.Socket> {
    const ready = this.#backlog.shift();
    if (ready) return Promise.resolve(ready);
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Resolves once at most `count` server-side connections are open, or rejects after `ms`. */
  async waitForOpen(count: number, ms = 2000): Promise<void> {
    const deadline = Date.now() + ms;
    while (this.open.size > count) {
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(
          `expected at most ${count} open upstream connections, still ${this.open.size}`,
        );
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#openWaiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  async close(): Promise<void> {
    for (const socket of this.open) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    if ("path" in this.address) {
      fs.rmSync(path.dirname(this.address.path), { recursive: true, force: true });
    }
  }
}

/** An echo upstream and a silent one, shared by the tests of one describe block. */
export interface UpstreamPair {
  echo: TestUpstream;
  silent: TestUpstream;
}

/**
 * Starts an echo and a silent upstream before the enclosing describe block's
 * tests and closes them after; read them from the returned object inside tests.
 */
export function useUpstreamPair(
  options: Pick<TestUpstreamOptions, "unix" | "tls"> = {},
): UpstreamPair {
  const pair = {} as UpstreamPair;
  before(async () => {
    pair.echo = await TestUpstream.start({ ...options, mode: "echo" });
    pair.silent = await TestUpstream.start({ ...options, mode: "silent" });
  });
  after(async () => {
    await pair.echo.close();
    await pair.silent.close();
  });
  return pair;
}
