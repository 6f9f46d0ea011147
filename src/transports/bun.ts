/**
 * The Bun transport: TCP and Unix-socket connections on Bun's own sockets.
 *
 * Connects go through Bun's `node:net` (and `node:tls`), because there a
 * connect in progress can be cancelled: `Bun.connect` cannot be, and a
 * connect given up on would stay in SYN-SENT, holding a descriptor and
 * keeping the process alive, for as long as the kernel retries (about two
 * minutes). Once connected, the native Bun socket under the `net.Socket` is
 * taken over: its handlers are swapped for this module's, so reads and
 * writes skip the stream layer. One shared handlers object serves every
 * connection and finds the connection's state in `socket.data`. Chunks that
 * arrive while no read is pending wait in a small queue. Nothing is read
 * from the runtime at import: importing this module has no side effects.
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

import type * as net from "node:net";
import type { ResolvedAddress } from "../address.ts";
import type {
  TlsInfo,
  TlsSessionCache,
  Transport,
  TransportConnection,
  TransportConnectOptions,
} from "./transport.ts";
import { twoImmediateTurns } from "./_immediate_turns.ts";
import { unwritableChunk, WRITTEN } from "./_chunks.ts";
import { ReceiveQueue } from "./_receive_queue.ts";
import { LazyRef } from "./_lazy_unref.ts";
import { closedError, connectNodeSocket, NodeConnection } from "./_node_net.ts";

export type { Transport, TransportConnection, TransportConnectOptions } from "./transport.ts";
export type { ResolvedAddress } from "../address.ts";

// Only the parts of Bun's socket API used here, so that the module compiles
// without Bun's type definitions.
interface BunSocket {
  data: unknown;
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
  /** Swaps the socket's handlers, at once. */
  reload(options: { socket: BunSocketHandlers }): void;
  // TLS sockets only.
  getSession?(): unknown;
}

/** A socket whose `data` is one of this module's connections. */
interface OwnSocket extends BunSocket {
  readonly data: BunConnection;
}

interface BunSocketHandlers {
  data(socket: OwnSocket, chunk: Uint8Array): void;
  drain(socket: OwnSocket): void;
  end(socket: OwnSocket): void;
  close(socket: OwnSocket, error?: Error): void;
  error(socket: OwnSocket, error: Error): void;
}

const RESOLVED: Promise<void> = Promise.resolve();

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

/** One native Bun socket behind the pull-based connection interface. */
class BunConnection extends LazyRef implements TransportConnection {
  readonly #socket: BunSocket;
  readonly #received: ReceiveQueue;
  /** `close()` was called or the socket closed. */
  #closed = false;
  #writeClosed = false;
  /** Writes that Bun has not fully taken yet, oldest first; the first is partly written. */
  #writes: PendingWrite[] = [];
  /** A `closeWrite()` waiting for `#writes` to empty. */
  #shutdown: PendingShutdown | undefined;
  /** Where to save this TLS connection's session once the server's ticket came. */
  #saveSession: { key: string; sessions: TlsSessionCache } | undefined;
  readonly tls: TlsInfo | undefined;

  constructor(
    socket: BunSocket,
    tls: TlsInfo | undefined,
    saveSession: { key: string; sessions: TlsSessionCache } | undefined,
  ) {
    super();
    this.#socket = socket;
    this.#received = new ReceiveQueue(socket);
    this.tls = tls;
    this.#saveSession = saveSession;
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
    const error = this.#received.error;
    if (error !== undefined) return Promise.reject(error);
    if (this.#closed) return Promise.reject(closedError("write"));
    if (this.#writeClosed) {
      return Promise.reject(new Error("Cannot write: the connection's write side was closed"));
    }
    let rest = chunk;
    if (this.#writes.length === 0) {
      let taken: number;
      try {
        taken = this.#socket.write(chunk);
      } catch (error) {
        return Promise.reject(error);
      }
      if (taken === chunk.length) return WRITTEN;
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
      try {
        this.#socket.shutdown();
      } catch (error) {
        return Promise.reject(error);
      }
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
    this.stopRefs();
    this.#received.close(true);
    this.#failWrites();
    // Fires our close handler synchronously; #closed makes it a no-op.
    this.#socket.end();
  }

  // ref() and unref() come from LazyRef, which calls this at most once per sweep.
  protected nativeRef(refed: boolean): void {
    if (this.#closed) return;
    if (refed) this.#socket.ref();
    else this.#socket.unref();
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
    data(socket: OwnSocket, chunk: Uint8Array): void {
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
    drain(socket: OwnSocket): void {
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

    end(socket: OwnSocket): void {
      socket.data.#received.end();
    },

    // Without an error this is EOF too: after our own shutdown(), Bun reports
    // the peer's FIN by closing, without calling `end`.
    close(socket: OwnSocket, error?: Error): void {
      const connection = socket.data;
      if (connection.#closed) return;
      connection.#closed = true;
      connection.stopRefs();
      if (error !== undefined) connection.#received.fail(error);
      connection.#received.close(false);
      connection.#failWrites();
    },

    error(socket: OwnSocket, error: Error): void {
      const connection = socket.data;
      if (connection.#closed) return;
      connection.#received.fail(error);
      connection.close();
    },
  };
}

/**
 * Takes the native socket over from a `net.Socket` that just connected (from
 * its `'connect'` or `'secureConnect'` event, so no byte has arrived yet).
 * If this Bun's `node:net` does not look as expected, the `net.Socket` is
 * used as it is: slower, but correct.
 */
function adopt(
  socket: net.Socket,
  tls: TlsInfo | undefined,
  address: ResolvedAddress,
  sessions: TlsSessionCache | undefined,
): TransportConnection {
  const native = (socket as unknown as { _handle?: Partial<BunSocket> | null })._handle;
  if (
    typeof native?.reload !== "function" || typeof native.write !== "function" ||
    !("data" in native) || socket.readableLength !== 0
  ) {
    return new NodeConnection(socket, tls);
  }
  const handle = native as BunSocket;
  const connection = new BunConnection(
    handle,
    tls,
    tls === undefined || sessions === undefined ? undefined : { key: address.key, sessions },
  );
  handle.reload({ socket: BunConnection.handlers });
  // node:net's own open handler still runs after 'connect' and sets
  // `connecting` on whatever `data` is by then: a harmless stray property.
  handle.data = connection;
  handle.ref(); // whatever node:net did, a new connection keeps the process alive
  // The native socket points back at the net.Socket, which would stay in
  // memory with it (≈2.3 KB per idle connection instead of ≈1.4 KB).
  for (const key of Object.getOwnPropertySymbols(handle)) {
    if (key.description === "owner_symbol") {
      delete (handle as unknown as Record<symbol, unknown>)[key];
    }
  }
  return connection;
}

function connect(
  address: ResolvedAddress,
  options: TransportConnectOptions,
): Promise<TransportConnection> {
  if ((globalThis as { Bun?: unknown }).Bun === undefined) {
    return Promise.reject(new Error("Cannot connect with the Bun transport: this is not Bun"));
  }
  const sessions = options.tlsSessions;
  return connectNodeSocket(
    address,
    options,
    (socket, tls) => adopt(socket, tls, address, sessions),
  );
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
 * connections for `{ path }` addresses, on Bun's native sockets, with
 * Nagle's algorithm off and half-open sockets allowed so that
 * {@linkcode TransportConnection.closeWrite} is a real half-close.
 *
 * Connects go through Bun's `node:net` and `node:tls` (loaded at the first
 * connect, never at import; elsewhere than on Bun `connect` rejects), which
 * can cancel a connect in progress: an aborted `signal` closes the socket,
 * in SYN-SENT too, and then rejects with the signal's reason. Then the
 * native socket is taken over from the `net.Socket`. Connect errors are
 * Bun's own, with their `code` (`ECONNREFUSED`, `ENOTFOUND`; `ENOENT` for a
 * missing socket path, ...). A `write` resolves once Bun has taken
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
