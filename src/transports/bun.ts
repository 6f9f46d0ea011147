/**
 * The Bun transport: TCP and Unix-socket connections made with `Bun.connect`.
 *
 * Bun's sockets report through callbacks, not streams. One shared handlers
 * object serves every connection and finds the connection's state in
 * `socket.data`, so opening a connection creates no closures. Chunks that
 * arrive while no read is pending wait in a small queue. `globalThis.Bun`
 * is only read when connecting: importing this module has no side effects
 * on any runtime.
 *
 * @example Use Bun's sockets explicitly
 * ```ts
 * import { ConnectionPool } from "@upstream/pool";
 * import { bunTransport } from "@upstream/pool/bun";
 * const pool = new ConnectionPool({ transport: bunTransport });
 * await pool.close();
 * ```
 *
 * @module
 */

import type { ResolvedAddress, ResolvedTcpAddress } from "../address.ts";
import type {
  TlsInfo,
  TlsSessionCache,
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

// Only the parts of Bun's socket API used here, so that the module compiles
// without Bun's type definitions.
interface BunSocket {
  readonly data: BunConnection;
  /** Bytes taken: all, some, 0, or -1 once the socket is closed. The rest is not kept. */
  write(chunk: Uint8Array): number;
  /** Half-close: sends FIN, reading goes on. */
  shutdown(): void;
  /** Sends FIN and closes the socket at once. */
  end(): void;
  pause(): void;
  resume(): void;
  ref(): void;
  unref(): void;
  /** TCP keepalive; the idle time in ms (whole seconds count), then a probe a second, ten of them. */
  setKeepAlive(enable: boolean, initialDelay: number): boolean;
  // TLS sockets only.
  getSession?(): unknown;
  setSession?(session: unknown): void;
  isSessionReused?(): boolean;
  readonly alpnProtocol?: string | false | null;
}

interface BunSocketHandlers {
  open(socket: BunSocket): void;
  data(socket: BunSocket, chunk: Uint8Array): void;
  drain(socket: BunSocket): void;
  end(socket: BunSocket): void;
  close(socket: BunSocket, error?: Error): void;
  error(socket: BunSocket, error: Error): void;
  handshake(socket: BunSocket, success: boolean, authorizationError: Error | null): void;
}

interface BunTlsOptions {
  serverName: string;
  rejectUnauthorized: boolean;
  ca?: string[];
  cert?: string;
  key?: string;
  /** The wire format: each name preceded by its length in one byte. */
  ALPNProtocols?: ArrayBuffer;
}

// `{ hostname, port }` for TCP, `{ unix: path }` for a Unix-domain socket.
type BunConnectOptions = ({ hostname: string; port: number } | { unix: string }) & {
  allowHalfOpen: boolean;
  data: BunConnection;
  socket: BunSocketHandlers;
  tls?: BunTlsOptions;
};

interface BunGlobal {
  connect(options: BunConnectOptions): Promise<BunSocket>;
}

const RESOLVED: Promise<void> = Promise.resolve();

function closedError(what: string): Error {
  return new Error(`Cannot ${what}: the connection is closed`);
}

interface PendingWrite {
  chunk: Uint8Array;
  resolve: () => void;
  reject: (error: unknown) => void;
}

interface PendingShutdown {
  promise: Promise<void>;
  resolve: () => void;
  reject: (error: unknown) => void;
}

/** A TLS connect waiting for its handshake, and where its sessions go. */
interface PendingHandshake {
  address: ResolvedTcpAddress;
  sessions: TlsSessionCache | undefined;
  resolve: () => void;
  reject: (error: unknown) => void;
}

/**
 * One Bun socket behind the pull-based connection interface. It exists
 * before the socket does (it is the socket's `data`), so events that come
 * before `Bun.connect` resolves are not lost.
 */
class BunConnection implements TransportConnection {
  #socket: BunSocket | undefined;
  // Data only arrives after open, so the socket is there when this pauses it.
  readonly #received: ReceiveQueue = new ReceiveQueue({
    pause: () => this.#socket?.pause(),
    resume: () => this.#socket?.resume(),
  });
  /** `close()` was called or the socket closed. */
  #closed = false;
  /** The connect was aborted: a socket that opens anyway is closed at once. */
  #abandoned = false;
  #writeClosed = false;
  /** Writes that Bun has not fully taken yet, oldest first; the first is partly written. */
  #writes: PendingWrite[] = [];
  /** A `closeWrite()` waiting for `#writes` to empty. */
  #shutdown: PendingShutdown | undefined;
  /** Set while a TLS connect waits for its handshake. */
  #handshake: PendingHandshake | undefined;
  /** Where to save this TLS connection's session once the server's ticket came. */
  #saveSession: { key: string; sessions: TlsSessionCache } | undefined;
  tls: TlsInfo | undefined;

  /**
   * Resolves once the connection may be used: at once for plain TCP, after
   * a successful handshake for TLS (written to before it, Bun would queue
   * the bytes, and a failed check would surface only at the first read).
   */
  readonly ready: Promise<void>;

  constructor(address: ResolvedAddress, sessions: TlsSessionCache | undefined) {
    if (address.kind !== "tcp" || address.tls === undefined) {
      this.ready = RESOLVED;
      return;
    }
    this.ready = new Promise((resolve, reject) => {
      this.#handshake = { address, sessions, resolve, reject };
    });
    this.ready.catch(() => {}); // a connect that fails before open never looks at it
  }

  read(): Promise<Uint8Array | null> {
    return this.#received.read();
  }

  write(chunk: Uint8Array): Promise<void> {
    const error = this.#received.error;
    if (error !== undefined) return Promise.reject(error);
    if (this.#closed) return Promise.reject(closedError("write"));
    if (this.#writeClosed) {
      return Promise.reject(new Error("Cannot write: the connection's write side was closed"));
    }
    let rest = chunk;
    if (this.#writes.length === 0) {
      const taken = this.#socket!.write(chunk);
      if (taken === chunk.length) return RESOLVED;
      if (taken < 0) return Promise.reject(closedError("write"));
      rest = chunk.subarray(taken);
    }
    return new Promise((resolve, reject) => {
      this.#writes.push({ chunk: rest, resolve, reject });
    });
  }

  closeWrite(): Promise<void> {
    const error = this.#received.error;
    if (error !== undefined) return Promise.reject(error);
    if (this.#closed) return Promise.reject(closedError("close the write side"));
    if (this.#writeClosed) return this.#shutdown?.promise ?? RESOLVED;
    this.#writeClosed = true;
    if (this.#writes.length === 0) {
      this.#socket!.shutdown();
      return RESOLVED;
    }
    // The FIN must follow the bytes still waiting for `drain`.
    let resolve!: () => void;
    let reject!: (error: unknown) => void;
    const promise = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    this.#shutdown = { promise, resolve, reject };
    return promise;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#received.close(true);
    this.#failWrites();
    // Fires our close handler synchronously; #closed makes it a no-op.
    this.#socket?.end();
  }

  ref(): void {
    if (!this.#closed) this.#socket?.ref();
  }

  unref(): void {
    if (!this.#closed) this.#socket?.unref();
  }

  /** Marks an aborted connect; closes the socket if it already opened. */
  abandon(): void {
    this.#abandoned = true;
    this.#failHandshake(closedError("finish the TLS handshake"));
    this.close();
  }

  /** Fails a TLS connect still waiting for its handshake. */
  #failHandshake(error: unknown): void {
    const handshake = this.#handshake;
    if (handshake === undefined) return;
    this.#handshake = undefined;
    handshake.reject(error);
  }

  /** Fails the writes still waiting for `drain`, and a waiting half-close. */
  #failWrites(): void {
    const writes = this.#writes;
    const shutdown = this.#shutdown;
    if (writes.length === 0 && shutdown === undefined) return;
    this.#writes = [];
    this.#shutdown = undefined;
    const error = this.#received.error;
    for (const pending of writes) pending.reject(error ?? closedError("write"));
    shutdown?.reject(error ?? closedError("close the write side"));
  }

  // One handlers object for all connections; `socket.data` is the connection.
  // None of them may throw: Bun would report it to `error` and keep going.
  static readonly handlers: BunSocketHandlers = {
    open(socket: BunSocket): void {
      const connection = socket.data;
      connection.#socket = socket;
      if (connection.#abandoned) {
        socket.end();
        return;
      }
      const handshake = connection.#handshake;
      // Bun offers a session only if it is set here, before the handshake starts.
      const saved = handshake?.sessions?.get(handshake.address.key);
      if (saved !== undefined) socket.setSession?.(saved);
    },

    handshake(socket: BunSocket, success: boolean, authorizationError: Error | null): void {
      const connection = socket.data;
      const handshake = connection.#handshake;
      if (handshake === undefined) return;
      connection.#handshake = undefined;
      // Without verification Bun reports the check's result but keeps the socket.
      if (!success && handshake.address.tls!.verify) {
        handshake.reject(
          tlsHandshakeError(
            handshake.address,
            authorizationError ?? new Error("the certificate was not accepted"),
          ),
        );
        connection.close();
        return;
      }
      connection.tls = {
        resumed: socket.isSessionReused?.(),
        alpnProtocol: socket.alpnProtocol || undefined,
      };
      if (handshake.sessions !== undefined) {
        connection.#saveSession = { key: handshake.address.key, sessions: handshake.sessions };
      }
      handshake.resolve();
    },

    data(socket: BunSocket, chunk: Uint8Array): void {
      const connection = socket.data;
      // A TLS 1.3 server sends its session ticket right after the handshake,
      // so it has been processed by the time the first bytes arrive.
      const save = connection.#saveSession;
      if (save !== undefined) {
        connection.#saveSession = undefined;
        const session = socket.getSession?.();
        if (session !== undefined && session !== null) save.sessions.set(save.key, session);
      }
      connection.#received.push(chunk);
    },

    // Also fires when nothing was waiting (after open or resume, for one).
    drain(socket: BunSocket): void {
      const connection = socket.data;
      const writes = connection.#writes;
      while (writes.length > 0) {
        const pending = writes[0]!;
        const taken = socket.write(pending.chunk);
        if (taken < 0) return; // the close handler fails the writes
        if (taken < pending.chunk.length) {
          pending.chunk = pending.chunk.subarray(taken);
          return;
        }
        writes.shift();
        pending.resolve();
      }
      const shutdown = connection.#shutdown;
      if (shutdown !== undefined) {
        connection.#shutdown = undefined;
        socket.shutdown();
        shutdown.resolve();
      }
    },

    end(socket: BunSocket): void {
      socket.data.#received.end();
    },

    // Without an error this is EOF too: after our own shutdown(), Bun reports
    // the peer's FIN by closing, without calling `end`.
    close(socket: BunSocket, error?: Error): void {
      const connection = socket.data;
      if (connection.#closed) return;
      connection.#closed = true;
      connection.#failHandshake(
        error ?? new Error("the server closed the connection during the TLS handshake"),
      );
      if (error !== undefined) connection.#received.fail(error);
      connection.#received.close(false);
      connection.#failWrites();
    },

    error(socket: BunSocket, error: Error): void {
      const connection = socket.data;
      if (connection.#closed) return;
      connection.#failHandshake(error);
      connection.#received.fail(error);
      connection.close();
    },
  };
}

function connect(
  address: ResolvedAddress,
  options: TransportConnectOptions,
): Promise<TransportConnection> {
  const signal = options.signal;
  if (signal?.aborted) return Promise.reject(signal.reason);
  const bun = (globalThis as { Bun?: BunGlobal }).Bun;
  if (bun === undefined) {
    return Promise.reject(new Error("Cannot connect with the Bun transport: this is not Bun"));
  }
  const connection = new BunConnection(address, options.tlsSessions);
  const keepAlive = keepAliveDelay(address, options);
  // Bun's errors already carry `code` (ECONNREFUSED, ENOTFOUND, ...).
  const opening = bun.connect({
    ...(address.kind === "unix"
      ? { unix: address.path }
      : { hostname: address.hostname, port: address.port }),
    ...(address.kind === "tcp" && address.tls !== undefined ? { tls: bunTls(address) } : {}),
    allowHalfOpen: true,
    data: connection,
    socket: BunConnection.handlers,
  }).then((socket) => {
    if (keepAlive !== undefined) socket.setKeepAlive(true, keepAlive);
    return connection.ready;
  });
  if (signal === undefined) return opening.then(() => connection);
  // Bun.connect cannot be cancelled: reject at once, and the open handler
  // closes a socket that opens after all.
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      connection.abandon();
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
    opening.then(
      () => {
        signal.removeEventListener("abort", onAbort);
        resolve(connection);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}

function bunTls(address: ResolvedTcpAddress): BunTlsOptions {
  const settings = address.tls!;
  return {
    serverName: settings.serverName,
    rejectUnauthorized: settings.verify,
    ...(settings.caCerts === undefined ? {} : { ca: [...settings.caCerts] }),
    ...(settings.cert === undefined ? {} : { cert: settings.cert, key: settings.key! }),
    ...(settings.alpnProtocols === undefined
      ? {}
      : { ALPNProtocols: alpnWireFormat(settings.alpnProtocols) }),
  };
}

// Bun.connect takes ALPN names only in the wire format, not as an array.
function alpnWireFormat(protocols: readonly string[]): ArrayBuffer {
  const encoder = new TextEncoder();
  const names = protocols.map((name) => encoder.encode(name));
  const wire = new Uint8Array(names.reduce((total, name) => total + 1 + name.length, 0));
  let offset = 0;
  for (const name of names) {
    wire[offset++] = name.length; // at most 255: resolveAddress checks
    wire.set(name, offset);
    offset += name.length;
  }
  return wire.buffer;
}

/*
 * settle() is two chained immediates (_immediate_turns.ts). Bun's loop runs, in each iteration: immediates, then the I/O poll
 * (epoll_pwait2, zero timeout while immediates or due timers wait, socket
 * callbacks run during it), then timers. An immediate queued during the
 * immediate phase waits for the next iteration. So the second of two chained
 * immediates runs after a complete poll that began after the first one ran,
 * hence after settle() was called, from whatever phase it was called.
 *
 * Measured on Bun 1.4.5 (2 cores, loopback). Misses: a pending read whose
 * byte or FIN was already in the kernel buffer had not resolved, per 1,000 to
 * 2,000 tries, server in this process or in another one. Cost: median of a
 * tight loop with 50 idle connections open.
 * - queueMicrotask / process.nextTick: 0.2 / 0.4 µs; miss every time in
 *   process, about 5% of the time with a server in another process.
 * - one setImmediate: 1.1 µs; misses every time when called from an I/O
 *   callback or a timer (it runs before that iteration's poll).
 * - Bun.sleep(0): 0.9 µs; misses every time when called from an I/O callback
 *   (a 0 ms timer fires right after the poll that is running).
 * - setTimeout(0): 1,100 µs (clamped to 1 ms); no misses.
 * - two chained setImmediates (this): 1.9 µs; no misses from any phase. About
 *   2 µs too when called after a read, as the pool does.
 * Bun reads each ready socket once per poll: after data and FIN arrive
 * together, the data is delivered (so a pending read resolves) and the FIN
 * one turn later.
 */
const settle: () => Promise<void> = twoImmediateTurns;

/**
 * The transport for Bun: TCP connections, and Unix-domain socket
 * connections for `{ path }` addresses, made with `Bun.connect`, half-open
 * sockets allowed so that {@linkcode TransportConnection.closeWrite} is a
 * real half-close. Bun turns Nagle's algorithm off by itself.
 *
 * `globalThis.Bun` is read at each `connect`, never at import; elsewhere
 * `connect` rejects. Connect errors are Bun's own, with their `code`
 * (`ECONNREFUSED`, `ENOTFOUND`; `ENOENT` for a missing socket path, ...).
 * `Bun.connect` cannot be cancelled: an
 * aborted `signal` rejects with the signal's reason at once, and a socket
 * that opens afterwards is closed. A `write` resolves once Bun has taken
 * every byte, waiting for Bun's `drain` if need be; from then on the chunk
 * may be reused. A reader that falls 64 KiB behind pauses the socket
 * until it reads again. `settle` costs two turns of `setImmediate` (about
 * 2 µs), far below a loopback round trip.
 *
 * @example Echo one message through a local server (on Bun)
 * ```ts ignore
 * import { createServer } from "node:net";
 * import { resolveAddress } from "@upstream/pool";
 * import { bunTransport } from "@upstream/pool/bun";
 *
 * const server = createServer((peer) => peer.pipe(peer)).listen(0, "127.0.0.1");
 * await new Promise((resolve) => server.once("listening", resolve));
 * const { port } = server.address() as { port: number };
 *
 * const socket = await bunTransport.connect(resolveAddress({ hostname: "127.0.0.1", port }), {
 *   signal: AbortSignal.timeout(1000),
 * });
 * await socket.write(new TextEncoder().encode("ping"));
 * console.log(new TextDecoder().decode((await socket.read())!)); // "ping"
 * socket.close();
 * server.close();
 * ```
 */
export const bunTransport: Transport = Object.freeze({
  name: "bun",
  connect,
  settle,
});
