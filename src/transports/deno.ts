/**
 * The Deno transport: TCP connections through `Deno.connect`.
 *
 * Reads and writes use `conn.read()`/`conn.write()`, not `conn.readable`/
 * `conn.writable`: the readable closes the whole resource at EOF, which
 * would make half-close impossible. `Deno` is looked up at the first call,
 * so loading this module has no side effects on any runtime.
 *
 * @example Use Deno's sockets explicitly
 * ```ts
 * import { ConnectionPool } from "@upstream/pool";
 * import { denoTransport } from "@upstream/pool/deno";
 * const pool = new ConnectionPool({ transport: denoTransport });
 * ```
 *
 * @module
 */

import type { ResolvedAddress } from "../address.ts";
import type { Transport, TransportConnection, TransportConnectOptions } from "./transport.ts";

export type { Transport, TransportConnection, TransportConnectOptions } from "./transport.ts";
export type { ResolvedAddress } from "../address.ts";

// Only the parts of Deno's API used here, so that tsc can compile this file
// without Deno's type library (the npm build compiles every file).
interface DenoConn {
  readonly localAddr: { readonly port?: number };
  readonly remoteAddr: { readonly port?: number };
  read(buffer: Uint8Array): Promise<number | null>;
  write(data: Uint8Array): Promise<number>;
  closeWrite(): Promise<void>;
  close(): void;
  setNoDelay(noDelay?: boolean): void;
  ref(): void;
  unref(): void;
}

interface DenoListener {
  readonly addr: { readonly port?: number };
  accept(): Promise<DenoConn>;
  close(): void;
}

interface DenoRuntime {
  connect(options: {
    hostname: string;
    port: number;
    transport?: "tcp";
    signal?: AbortSignal;
  }): Promise<DenoConn>;
  listen(options: { hostname: string; port: number; transport?: "tcp" }): DenoListener;
  permissions?: {
    querySync?(descriptor: { name: "net"; host: string }): { state: string };
  };
}

function deno(): DenoRuntime {
  const runtime = (globalThis as { Deno?: DenoRuntime }).Deno;
  if (runtime === undefined) {
    throw new TypeError(
      "Cannot use denoTransport: the Deno global is missing (not running on Deno)",
    );
  }
  return runtime;
}

// Reads go into a per-connection buffer and are copied out with slice(0, n),
// so a tiny chunk never pins a big buffer. The buffer starts small because an
// idle connection holds it for as long as its read is pending; it grows 4x
// when a read fills it and shrinks when reads come back far smaller. On
// loopback this adaptive buffer gave 730-900 MiB/s for a 64 MiB echo, against
// 400-525 for a fixed 4 KiB, 600-790 for 16 KiB and 500-810 for a fresh
// 64 KiB buffer per read; small round trips cost the same with all of them.
const MIN_READ_BUFFER = 4 * 1024;
const MAX_READ_BUFFER = 64 * 1024;

const RESOLVED: Promise<void> = Promise.resolve();

/** Connections opened and not yet closed; settle() has nothing to do without any. */
let openConnections = 0;
/** Completed reads of unref'd (idle) connections; settle() watches it move. */
let idleReadsDone = 0;

function closedError(what: string): Error {
  return new Error(`Cannot ${what}: the connection is closed`);
}

/** One `Deno.TcpConn` behind the pull-based connection interface. */
class DenoConnection implements TransportConnection {
  readonly #conn: DenoConn;
  #buffer = new Uint8Array(MIN_READ_BUFFER);
  #closed = false;
  #refed = true;

  constructor(conn: DenoConn) {
    this.#conn = conn;
  }

  async read(): Promise<Uint8Array | null> {
    if (this.#closed) return null;
    let buffer = this.#buffer;
    let n: number | null;
    try {
      n = await this.#conn.read(buffer);
    } catch (error) {
      if (!this.#refed) idleReadsDone++;
      // close() interrupts a pending read; report that as the end.
      if (this.#closed) return null;
      throw error;
    }
    if (!this.#refed) idleReadsDone++;
    if (n === null) return null;
    const chunk = buffer.slice(0, n);
    if (n === buffer.length && buffer.length < MAX_READ_BUFFER) {
      buffer = new Uint8Array(buffer.length * 4);
    } else if (n <= buffer.length >> 4 && buffer.length > MIN_READ_BUFFER) {
      buffer = new Uint8Array(buffer.length >> 2);
    }
    this.#buffer = buffer;
    return chunk;
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (this.#closed) throw closedError("write");
    // Deno.Conn.write() may take only part of the chunk.
    let offset = 0;
    while (offset < chunk.length) {
      const written = await this.#conn.write(offset === 0 ? chunk : chunk.subarray(offset));
      if (written <= 0) throw new Error("Cannot write: the socket accepted no bytes");
      offset += written;
    }
  }

  closeWrite(): Promise<void> {
    if (this.#closed) return Promise.reject(closedError("close the write side"));
    return this.#conn.closeWrite();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch {
      // Already closed by Deno (BadResource): nothing left to free.
    }
    connectionClosed();
  }

  ref(): void {
    this.#refed = true;
    if (!this.#closed) this.#conn.ref();
  }

  unref(): void {
    this.#refed = false;
    if (!this.#closed) this.#conn.unref();
  }
}

// Deno's DNS failure is a plain Error without a code.
function withConnectCode(error: unknown): unknown {
  if (!(error instanceof Error) || (error as { code?: unknown }).code !== undefined) return error;
  if (/failed to lookup address information/i.test(error.message)) {
    const code = /temporary failure/i.test(error.message) ? "EAI_AGAIN" : "ENOTFOUND";
    (error as Error & { code?: string }).code = code;
  }
  return error;
}

// ---------------------------------------------------------------------------
// settle(): waiting for Deno's I/O reactor.
//
// Bytes or a FIN that reached a socket are handed to a pending read only
// after Deno's tokio reactor has polled epoll, and it does that only when the
// event loop runs out of ready work (or every ~61 tasks): whatever keeps the
// loop busy without waiting for I/O never lets them in. Measured on Deno
// 2.9.6: misses out of 1,000-3,000 tries (a node:net server in the same
// process writes 1 byte or ends; settle() is called in its callback) and the
// median cost per call in a tight loop with 50 idle connections:
//
//   queueMicrotask             all missed          0.3 µs
//   setImmediate (x1 or x2)    all missed          1.4 µs (63 chained: ≈140 µs)
//   MessageChannel message     all missed
//   Deno.resolveDns            all missed          (answered without any I/O)
//   crypto.subtle.digest       ≈70% missed         (races a thread-pool job)
//   setTimeout(0)              none missed         ≈2,100 µs (1 ms timer grain;
//                                                  rare misses in other tests)
//   loopback ping (below)      none missed         ≈12 µs
//
// The ping: a socket pair of our own on 127.0.0.1. A read is started on one
// end (finding nothing, it waits for the reactor), then one byte is written
// to the other: the read completes only in a reactor turn that starts after
// the write, and epoll reports sockets oldest first, so every read whose
// bytes had arrived before settle() was called completes in that turn or an
// earlier one. A setImmediate afterwards lets the microtasks of everything
// completed in that turn run first.
//
// One catch: a turn completes at most 128 I/O operations (tokio's
// cooperative budget); the rest wait for later turns, behind new wake-ups
// such as the ping's. With 2,000 idle connections all ended at once, one
// ping left 595 EOFs undelivered, and each further ping delivered 127 more.
// So settle() pings again for as long as reads of idle (unref'd)
// connections complete during a ping. Without permission to listen on
// 127.0.0.1, two timers stand in for the ping (≈4 ms).
// ---------------------------------------------------------------------------

interface LoopbackPair {
  readonly writer: DenoConn;
  readonly reader: DenoConn;
}

const PING = new Uint8Array([0]);

// Enough for thousands of simultaneous EOFs at 127 per turn; only reached if
// idle connections keep receiving data.
const MAX_PINGS = 64;

// The fallback without the pair: two timers in a row. A single timer can
// fire before the reactor has run (the contract caught 1 miss in 300, and
// 472 of 600 simultaneous EOFs left behind); two never missed.
function timerTurns(): Promise<void> {
  const timer = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 0));
  return timer().then(timer);
}

function nextCheckPhase(): Promise<void> {
  const schedule = (globalThis as unknown as { setImmediate?: (callback: () => void) => unknown })
    .setImmediate;
  if (schedule === undefined) return RESOLVED;
  return new Promise((resolve) => schedule(resolve));
}

function closeQuietly(conn: DenoConn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

/** Waits for Deno's I/O reactor by pinging a loopback socket pair. */
class ReactorTurn {
  #pair: LoopbackPair | undefined;
  /** The settle that callers may still join: its first ping is not written yet. */
  #joinable: Promise<void> | undefined;
  /** The most recent settle; they run one after another on the one pair. */
  #last: Promise<void> = RESOLVED;
  readonly #scratch = new Uint8Array(16);

  wait(): Promise<void> {
    if (this.#joinable !== undefined) return this.#joinable;
    const run = (): Promise<void> => {
      if (this.#joinable === settled) this.#joinable = undefined;
      return this.#settle();
    };
    const settled: Promise<void> = this.#last.then(run, run);
    this.#joinable = settled;
    this.#last = settled;
    return settled;
  }

  /** Frees the socket pair; the next wait() opens a new one. */
  close(): void {
    const pair = this.#pair;
    if (pair === undefined) return;
    this.#pair = undefined;
    closeQuietly(pair.writer);
    closeQuietly(pair.reader);
  }

  async #settle(): Promise<void> {
    for (let ping = 0; ping < MAX_PINGS && openConnections > 0; ping++) {
      const before = idleReadsDone;
      await this.#turn();
      await nextCheckPhase();
      if (idleReadsDone === before) return;
    }
  }

  async #turn(): Promise<void> {
    const pair = this.#pair ?? await this.#open();
    if (pair === undefined) return timerTurns();
    try {
      // Read first: finding the buffer empty, the read waits for the reactor.
      const echoed = pair.reader.read(this.#scratch).catch(() => null);
      await pair.writer.write(PING);
      if (await echoed === null) throw new Error("loopback pair closed");
    } catch {
      if (this.#pair !== pair) return; // closed on purpose: no connections left
      this.close();
      return timerTurns();
    }
  }

  async #open(): Promise<LoopbackPair | undefined> {
    try {
      return await this.#tryOpen();
    } catch {
      return undefined; // settle() must not fail: the timer stands in
    }
  }

  async #tryOpen(): Promise<LoopbackPair | undefined> {
    const runtime = deno();
    // Never trigger a permission prompt: only use the pair if it is allowed.
    const state = runtime.permissions?.querySync?.({ name: "net", host: "127.0.0.1" }).state;
    if (state !== "granted") return undefined;
    let listener: DenoListener;
    try {
      listener = runtime.listen({ hostname: "127.0.0.1", port: 0, transport: "tcp" });
    } catch {
      return undefined;
    }
    const [writer, reader] = await Promise.allSettled([
      runtime.connect({ hostname: "127.0.0.1", port: listener.addr.port ?? 0, transport: "tcp" }),
      listener.accept(),
    ]);
    listener.close();
    if (writer.status === "rejected" || reader.status === "rejected") {
      if (writer.status === "fulfilled") closeQuietly(writer.value);
      if (reader.status === "fulfilled") closeQuietly(reader.value);
      return undefined;
    }
    const pair = { writer: writer.value, reader: reader.value };
    // Someone else may have connected to the listener first; and with no
    // connections left there is nothing to keep the pair for.
    if (pair.reader.remoteAddr.port !== pair.writer.localAddr.port || openConnections === 0) {
      closeQuietly(pair.writer);
      closeQuietly(pair.reader);
      return undefined;
    }
    pair.writer.setNoDelay(true);
    this.#pair = pair;
    return pair;
  }
}

const reactorTurn = new ReactorTurn();

function connectionClosed(): void {
  openConnections--;
  // No sockets are left behind once the pool has closed every connection.
  if (openConnections === 0) reactorTurn.close();
}

async function connect(
  address: ResolvedAddress,
  options: TransportConnectOptions,
): Promise<TransportConnection> {
  const { signal } = options;
  signal?.throwIfAborted();
  let conn: DenoConn;
  try {
    conn = await deno().connect({
      hostname: address.hostname,
      port: address.port,
      transport: "tcp",
      signal,
    });
  } catch (error) {
    throw withConnectCode(error);
  }
  if (signal?.aborted) {
    closeQuietly(conn);
    throw signal.reason;
  }
  conn.setNoDelay(true);
  openConnections++;
  return new DenoConnection(conn);
}

/**
 * The transport for Deno: TCP connections through `Deno.connect`, with
 * Nagle's algorithm turned off.
 *
 * Needs `--allow-net` for the upstreams. {@linkcode Transport.settle} costs
 * about 12 µs when the program may also listen on `127.0.0.1` (any port, as
 * with a plain `--allow-net` or `--allow-net=127.0.0.1,...`); without that
 * permission it falls back to timers and costs about 4 ms.
 *
 * Connect errors are Deno's own; a failed DNS lookup gets
 * `code: "ENOTFOUND"` (or `"EAI_AGAIN"`), a refused connect already has
 * `code: "ECONNREFUSED"`, and an aborted `signal` rejects with its reason.
 *
 * @example Talk to an upstream through the transport directly
 * ```ts ignore
 * import { resolveAddress } from "@upstream/pool";
 * import { denoTransport } from "@upstream/pool/deno";
 *
 * const address = resolveAddress({ hostname: "127.0.0.1", port: 6379 });
 * const socket = await denoTransport.connect(address, {});
 * await socket.write(new TextEncoder().encode("PING\r\n"));
 * const reply = await socket.read(); // "+PONG\r\n", or null at EOF
 * socket.close();
 * ```
 */
export const denoTransport: Transport = {
  name: "deno",
  connect,
  settle(): Promise<void> {
    return openConnections === 0 ? RESOLVED : reactorTurn.wait();
  },
};
