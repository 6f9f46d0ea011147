/**
 * The Node.js transport: TCP and Unix-socket connections through `node:net`.
 *
 * `node:net` is imported at the first connect, so loading this module has no
 * side effects on any runtime. Reads adapt the socket's `'data'`/`'end'`
 * events to the pull-based {@linkcode TransportConnection.read}; the socket's
 * web-stream adapters are avoided (they never report EOF on a half-open
 * socket in Node 20, and are slower).
 *
 * @example Use Node's sockets explicitly
 * ```ts
 * import { ConnectionPool } from "@upstream/pool";
 * import { nodeTransport } from "@upstream/pool/node";
 * const pool = new ConnectionPool({ transport: nodeTransport });
 * ```
 *
 * @module
 */

import type * as net from "node:net";
import type * as tls from "node:tls";
import type { ResolvedAddress, ResolvedTcpAddress } from "../address.ts";
import type {
  TlsInfo,
  Transport,
  TransportConnection,
  TransportConnectOptions,
} from "./transport.ts";
import { twoImmediateTurns } from "./_immediate_turns.ts";
import { ReceiveQueue } from "./_receive_queue.ts";
import { tlsHandshakeError } from "./_tls.ts";
import { keepAliveDelay } from "./_keepalive.ts";

export type { Transport, TransportConnection, TransportConnectOptions } from "./transport.ts";
export type { ResolvedAddress } from "../address.ts";

const RESOLVED: Promise<void> = Promise.resolve();

let netModule: typeof net | undefined;
let tlsModule: typeof tls | undefined;

async function loadNet(): Promise<typeof net> {
  return netModule ??= await import("node:net");
}

async function loadTls(): Promise<typeof tls> {
  return tlsModule ??= await import("node:tls");
}

function ignore(): void {}

function closedError(what: string): Error {
  return new Error(`Cannot ${what}: the connection is closed`);
}

/**
 * One `net.Socket` behind the pull-based connection interface: reads go
 * through the shared receive queue (which pauses the socket when a reader
 * falls behind); writes wait for `'drain'` when Node's buffer is full.
 */
class NodeConnection implements TransportConnection {
  readonly #socket: net.Socket;
  readonly #received: ReceiveQueue;
  /** `close()` was called or the socket closed. */
  #closed = false;
  #resolveDrain: (() => void) | undefined;
  #rejectDrain: ((error: unknown) => void) | undefined;
  readonly tls: TlsInfo | undefined;

  constructor(socket: net.Socket, tls?: TlsInfo) {
    this.#socket = socket;
    this.tls = tls;
    this.#received = new ReceiveQueue(socket);
    socket.on("data", this.#onData);
    socket.on("end", this.#onEnd);
    socket.on("error", this.#onError);
    socket.on("close", this.#onClose);
    socket.on("drain", this.#onDrain);
  }

  read(): Promise<Uint8Array | null> {
    return this.#received.read();
  }

  write(chunk: Uint8Array): Promise<void> {
    const socket = this.#socket;
    const error = this.#received.error;
    if (error !== undefined) return Promise.reject(error);
    if (this.#closed || socket.destroyed) return Promise.reject(closedError("write"));
    if (socket.writableEnded) {
      return Promise.reject(new Error("Cannot write: the connection's write side was closed"));
    }
    // true: Node took the bytes and its buffer is below the high-water mark.
    if (socket.write(chunk)) return RESOLVED;
    return new Promise((resolve, reject) => {
      this.#resolveDrain = resolve;
      this.#rejectDrain = reject;
    });
  }

  closeWrite(): Promise<void> {
    const socket = this.#socket;
    const error = this.#received.error;
    if (error !== undefined) return Promise.reject(error);
    if (this.#closed || socket.destroyed) {
      return Promise.reject(closedError("close the write side"));
    }
    if (socket.writableFinished) return RESOLVED;
    return new Promise((resolve, reject) => {
      socket.end((error?: Error | null) => error ? reject(error) : resolve());
    });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#socket.destroy();
    this.#received.close(true);
    this.#failWrite(closedError("write"));
  }

  // A destroyed socket would only queue the call for a 'connect' that never comes.
  ref(): void {
    if (!this.#closed) this.#socket.ref();
  }

  unref(): void {
    if (!this.#closed) this.#socket.unref();
  }

  // Handlers are arrow-function fields: bound once per connection, not per event.

  #onData = (chunk: Uint8Array): void => {
    this.#received.push(chunk);
  };

  #onEnd = (): void => {
    this.#received.end();
  };

  #onError = (error: Error): void => {
    this.#received.fail(error);
    this.#failWrite(this.#received.error!);
  };

  #onClose = (): void => {
    this.#closed = true;
    this.#received.close(false);
    this.#failWrite(this.#received.error ?? closedError("write"));
  };

  #onDrain = (): void => {
    const resolve = this.#resolveDrain;
    if (resolve !== undefined) {
      this.#resolveDrain = this.#rejectDrain = undefined;
      resolve();
    }
  };

  /** Fails a write waiting for 'drain'. */
  #failWrite(error: Error): void {
    const reject = this.#rejectDrain;
    this.#resolveDrain = this.#rejectDrain = undefined;
    reject?.(error);
  }
}

function connect(
  address: ResolvedAddress,
  options: TransportConnectOptions,
): Promise<TransportConnection> {
  const signal = options.signal;
  if (signal?.aborted) return Promise.reject(signal.reason);
  if (address.kind === "tcp" && address.tls !== undefined) {
    if (tlsModule === undefined) return loadTls().then(() => connect(address, options));
    return whenOpen(connectTls(tlsModule, address, options), "secureConnect", address, signal);
  }
  if (netModule === undefined) {
    return loadNet().then(() => connect(address, options));
  }
  const socket = netModule.connect(
    address.kind === "unix"
      ? { path: address.path, allowHalfOpen: true }
      : { host: address.hostname, port: address.port, noDelay: true, allowHalfOpen: true },
  );
  setKeepAlive(socket, address, options);
  return whenOpen(socket, "connect", address, signal);
}

function connectTls(
  tlsApi: typeof tls,
  address: ResolvedTcpAddress,
  options: TransportConnectOptions,
): tls.TLSSocket {
  const settings = address.tls!;
  const sessions = options.tlsSessions;
  const saved = sessions?.get(address.key);
  // allowHalfOpen works for TLS sockets too (a real half-close); the types omit it.
  const connectOptions: tls.ConnectionOptions & { allowHalfOpen: boolean } = {
    host: address.hostname,
    port: address.port,
    allowHalfOpen: true,
    // Node may not send an IP address as SNI; the name is checked below anyway.
    ...(isIpAddress(settings.serverName) ? {} : { servername: settings.serverName }),
    checkServerIdentity: (_host, certificate) =>
      tlsApi.checkServerIdentity(settings.serverName, certificate),
    rejectUnauthorized: settings.verify,
    ...(settings.caCerts === undefined ? {} : { ca: [...settings.caCerts] }),
    ...(settings.cert === undefined ? {} : { cert: settings.cert, key: settings.key }),
    ...(settings.alpnProtocols === undefined ? {} : { ALPNProtocols: [...settings.alpnProtocols] }),
    ...(saved instanceof Uint8Array ? { session: saved as tls.ConnectionOptions["session"] } : {}),
  };
  const socket = tlsApi.connect(connectOptions);
  socket.setNoDelay(true); // tls.connect has no noDelay option
  setKeepAlive(socket, address, options);
  // TLS 1.3 tickets arrive after the handshake, and servers may send more.
  if (sessions !== undefined) {
    socket.on("session", (session: Uint8Array) => sessions.set(address.key, session));
  }
  return socket;
}

// Node takes the idle time in whole seconds; libuv then sets the probes
// too: one a second, ten of them (TCP_KEEPINTVL 1, TCP_KEEPCNT 10).
function setKeepAlive(
  socket: net.Socket,
  address: ResolvedAddress,
  options: TransportConnectOptions,
): void {
  const delay = keepAliveDelay(address, options);
  if (delay !== undefined) socket.setKeepAlive(true, delay);
}

function isIpAddress(name: string): boolean {
  return name.includes(":") || /^[0-9.]+$/.test(name);
}

/**
 * Resolves with the connection once `socket` emits `ready` (`connect`, or
 * `secureConnect` after a TLS handshake); rejects on an error or an abort,
 * and destroys the socket then.
 */
function whenOpen(
  socket: net.Socket,
  ready: "connect" | "secureConnect",
  address: ResolvedAddress,
  signal: AbortSignal | undefined,
): Promise<TransportConnection> {
  return new Promise((resolve, reject) => {
    // For TLS: whether TCP connected, so that a later error is the handshake's.
    let connected = false;
    const done = (): void => {
      socket.off("connect", onConnect);
      socket.off(ready, onReady);
      socket.off("error", onError);
      signal?.removeEventListener("abort", onAbort);
    };
    const onConnect = (): void => {
      connected = true;
    };
    const onReady = (): void => {
      done();
      const secure = socket as tls.TLSSocket;
      resolve(
        new NodeConnection(
          socket,
          ready === "secureConnect"
            ? { resumed: secure.isSessionReused(), alpnProtocol: secure.alpnProtocol || undefined }
            : undefined,
        ),
      );
    };
    // Node's errors already carry `code` (ECONNREFUSED, ENOTFOUND, ...).
    const fail = (reason: unknown): void => {
      done();
      socket.on("error", ignore); // nothing may escape as an uncaught 'error'
      socket.destroy();
      reject(reason);
    };
    const onError = (error: Error): void => {
      const handshake = ready === "secureConnect" && address.kind === "tcp" &&
        (connected || (error as { code?: string }).code?.startsWith("ERR_SSL") === true);
      fail(handshake ? tlsHandshakeError(address as ResolvedTcpAddress, error) : error);
    };
    const onAbort = (): void => fail(signal!.reason);
    if (ready !== "connect") socket.once("connect", onConnect);
    socket.once(ready, onReady);
    socket.once("error", onError);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

// settle() is two chained immediates (_immediate_turns.ts). An immediate runs in the check phase, right
// after the poll phase; but if settle() is called from the poll phase itself
// (an I/O callback, or a promise continuation after one), the first
// immediate runs in that same iteration, and bytes that reached the kernel
// after its `epoll_wait` have not been read yet. The second immediate runs
// only after the next full poll phase, which started after the call.
const settle: () => Promise<void> = twoImmediateTurns;

/**
 * The transport for Node.js: TCP connections made with `node:net`, with
 * Nagle's algorithm off, and Unix-domain socket connections for `{ path }`
 * addresses; half-open sockets allowed, so that
 * {@linkcode TransportConnection.closeWrite} is a real half-close.
 *
 * `node:net` is loaded at the first `connect`, never at import. Connect
 * errors are Node's own, with their `code` (`ECONNREFUSED`, `ENOTFOUND`,
 * `ENOENT` for a missing socket path, ...); an aborted `signal` rejects with the signal's reason and destroys
 * the socket. A `write` resolves as soon as Node has accepted the bytes and
 * its send buffer is below its high-water mark, otherwise at the next
 * `'drain'`; Node may still hold a reference to the chunk until it is sent,
 * so the caller must not modify it afterwards. `settle` costs two turns of
 * `setImmediate` (about 2 µs), far below a loopback round trip.
 *
 * On Bun it also works through Bun's `node:net` (the Bun transport is
 * faster). Not on Deno: there `setImmediate` does not wait for socket
 * events, so `settle` would resolve too early; use the Deno transport.
 *
 * @example Echo one message through a local server
 * ```ts
 * import { createServer } from "node:net";
 * import { resolveAddress } from "@upstream/pool";
 * import { nodeTransport } from "@upstream/pool/node";
 *
 * const server = createServer((peer) => peer.pipe(peer)).listen(0, "127.0.0.1");
 * await new Promise((resolve) => server.once("listening", resolve));
 * const { port } = server.address() as { port: number };
 *
 * const socket = await nodeTransport.connect(resolveAddress({ hostname: "127.0.0.1", port }), {
 *   signal: AbortSignal.timeout(1000),
 * });
 * await socket.write(new TextEncoder().encode("ping"));
 * console.log(new TextDecoder().decode((await socket.read())!)); // "ping"
 * socket.close();
 * server.close();
 * ```
 */
export const nodeTransport: Transport = Object.freeze({
  name: "node",
  connect,
  settle,
});
