// Connections through `node:net` and `node:tls`: the Node transport uses
// them as they are; the Bun transport connects through them (Bun can cancel
// a connect there, not through Bun.connect) and then takes the socket over.
import type * as net from "node:net";
import type * as tls from "node:tls";
import type { ResolvedAddress, ResolvedTcpAddress } from "../address.ts";
import type { TlsInfo, TransportConnection, TransportConnectOptions } from "./transport.ts";
import { unwritableChunk, WRITTEN } from "./_chunks.ts";
import { ReceiveQueue } from "./_receive_queue.ts";
import { tlsHandshakeError } from "./_tls.ts";
import { keepAliveDelay } from "./_keepalive.ts";
import { LazyRef } from "./_lazy_unref.ts";

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

export function closedError(what: string): Error {
  return new Error(`Cannot ${what}: the connection is closed`);
}

/**
 * One `net.Socket` behind the pull-based connection interface: reads go
 * through the shared receive queue (which pauses the socket when a reader
 * falls behind); writes wait for `'drain'` when Node's buffer is full.
 */
export class NodeConnection extends LazyRef implements TransportConnection {
  readonly #socket: net.Socket;
  readonly #received: ReceiveQueue;
  /** `close()` was called or the socket closed. */
  #closed = false;
  #resolveDrain: (() => void) | undefined;
  #rejectDrain: ((error: unknown) => void) | undefined;
  readonly tls: TlsInfo | undefined;

  constructor(socket: net.Socket, tls?: TlsInfo) {
    super();
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

  /** The pool's read: see _read_to.ts. */
  readTo(
    onChunk: (chunk: Uint8Array | null) => void,
    onError: (error: unknown) => void,
  ): void {
    this.#received.readTo(onChunk, onError);
  }

  write(chunk: Uint8Array): Promise<void> {
    const invalid = unwritableChunk(chunk);
    if (invalid !== undefined) return Promise.reject(invalid);
    const socket = this.#socket;
    const error = this.#received.error;
    if (error !== undefined) return Promise.reject(error);
    if (this.#closed || socket.destroyed) return Promise.reject(closedError("write"));
    if (socket.writableEnded) {
      return Promise.reject(new Error("Cannot write: the connection's write side was closed"));
    }
    let taken: boolean;
    try {
      taken = socket.write(chunk);
    } catch (error) {
      return Promise.reject(error);
    }
    // true: Node took the bytes and its buffer is below the high-water mark.
    if (taken) return WRITTEN;
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
    // A throw inside the executor rejects the promise.
    return new Promise((resolve, reject) => {
      socket.end((error?: Error | null) => error ? reject(error) : resolve());
    });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.stopRefs();
    this.#socket.destroy();
    this.#received.close(true);
    if (this.#rejectDrain !== undefined) this.#failWrite(closedError("write"));
  }

  // ref() and unref() come from LazyRef, which calls this at most once per sweep.
  // A destroyed socket would only queue the call for a 'connect' that never comes.
  protected nativeRef(refed: boolean): void {
    if (this.#closed) return;
    if (refed) this.#socket.ref();
    else this.#socket.unref();
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
    this.stopRefs();
    this.#received.close(false);
    // Built only for a write waiting on 'drain': an Error per close costs.
    if (this.#rejectDrain !== undefined) {
      this.#failWrite(this.#received.error ?? closedError("write"));
    }
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

/**
 * Turns a socket that just connected (and finished its TLS handshake) into
 * a connection. Called synchronously from the socket's `'connect'` or
 * `'secureConnect'` event, before any byte can have arrived.
 */
export type AdoptSocket = (socket: net.Socket, tls: TlsInfo | undefined) => TransportConnection;

/**
 * Connects with `node:net` (`node:tls` for a TLS address) and hands the
 * socket to `adopt` once it is ready. An abort destroys the socket, which
 * closes its descriptor at once, in SYN-SENT too, and only then rejects.
 */
export function connectNodeSocket(
  address: ResolvedAddress,
  options: TransportConnectOptions,
  adopt: AdoptSocket,
): Promise<TransportConnection> {
  const signal = options.signal;
  if (signal?.aborted) return Promise.reject(signal.reason);
  if (address.kind === "tcp" && address.tls !== undefined) {
    if (tlsModule === undefined) {
      return loadTls().then(() => connectNodeSocket(address, options, adopt));
    }
    return whenOpen(
      connectTls(tlsModule, address, options),
      "secureConnect",
      address,
      options,
      adopt,
    );
  }
  if (netModule === undefined) {
    return loadNet().then(() => connectNodeSocket(address, options, adopt));
  }
  const socket = netModule.connect(
    address.kind === "unix"
      ? { path: address.path, allowHalfOpen: true }
      : { host: address.hostname, port: address.port, noDelay: true, allowHalfOpen: true },
  );
  setKeepAlive(socket, address, options);
  return whenOpen(socket, "connect", address, options, adopt);
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
// too: one a second, ten of them (TCP_KEEPINTVL 1, TCP_KEEPCNT 10). Bun's
// node:net keeps the setting until the socket opens, then hands it to the
// native socket (idle time in ms, whole seconds counting).
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
 * Resolves with the adopted connection once `socket` emits `ready`
 * (`connect`, or `secureConnect` after a TLS handshake); rejects on an
 * error or an abort, after destroying the socket.
 */
function whenOpen(
  socket: net.Socket,
  ready: "connect" | "secureConnect",
  address: ResolvedAddress,
  options: TransportConnectOptions,
  adopt: AdoptSocket,
): Promise<TransportConnection> {
  const signal = options.signal;
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
      const info = ready === "secureConnect"
        ? { resumed: secure.isSessionReused(), alpnProtocol: secure.alpnProtocol || undefined }
        : undefined;
      let connection: TransportConnection;
      try {
        connection = adopt(socket, info);
      } catch (error) {
        fail(error);
        return;
      }
      resolve(connection);
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
