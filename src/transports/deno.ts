/**
 * The Deno transport: TCP and Unix-socket connections through `Deno.connect`.
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

import type { ResolvedAddress, ResolvedTcpAddress } from "../address.ts";
import type {
  TlsInfo,
  Transport,
  TransportConnection,
  TransportConnectOptions,
} from "./transport.ts";
import { closeQuietly, deno, type DenoConn, type DenoTcpConn } from "./_deno_api.ts";
import { ReactorTurn } from "./_deno_reactor_turn.ts";
import { tlsHandshakeError, tlsUnsupportedError } from "./_tls.ts";
import { unwritableChunk } from "./_chunks.ts";
import { LazyRef } from "./_lazy_unref.ts";

export type { Transport, TransportConnection, TransportConnectOptions } from "./transport.ts";
export type { ResolvedAddress } from "../address.ts";

// Reads are copied out of the buffer they went into (slice), so a tiny chunk
// never pins a big buffer. A read that follows a short one (the peer paused:
// a reply ended, or the connection is about to sit idle) goes into a small
// buffer of the connection's own, so the read an idle connection keeps
// pending holds 512 bytes, not kilobytes. A read that fills its buffer is
// followed by one into the big buffer, which starts at 4 KiB, grows 4x while
// reads fill it and shrinks when they come back far smaller; an idle
// connection lets go of it. On loopback such an adaptive big buffer gave
// 730-900 MiB/s for a 64 MiB echo, against 400-525 for a fixed 4 KiB,
// 600-790 for 16 KiB and 500-810 for a fresh 64 KiB buffer per read.
const SMALL_READ_BUFFER = 512;
const MIN_READ_BUFFER = 4 * 1024;
const MAX_READ_BUFFER = 64 * 1024;

const RESOLVED: Promise<void> = Promise.resolve();
const RESOLVED_NULL: Promise<null> = Promise.resolve(null);

function ignore(): void {}

// Connections opened and not yet closed (settle() has nothing to do without
// any), and completed reads of unref'd (idle) ones, which settle() watches.
const activity = { openConnections: 0, idleReadsDone: 0 };

function closedError(what: string): Error {
  return new Error(`Cannot ${what}: the connection is closed`);
}

/** One `Deno.TcpConn` or `Deno.UnixConn` behind the pull-based connection interface. */
class DenoConnection extends LazyRef implements TransportConnection {
  readonly #conn: DenoConn;
  readonly #small = new Uint8Array(SMALL_READ_BUFFER);
  #big: Uint8Array | undefined;
  /** The last read filled its buffer: the next one goes into the big buffer. */
  #nextBig = false;
  /** The buffer of the read in progress. */
  #reading: Uint8Array = this.#small;
  #closed = false;
  #refed = true;
  readonly tls: TlsInfo | undefined;

  constructor(conn: DenoConn, tls?: TlsInfo) {
    super();
    this.#conn = conn;
    this.tls = tls;
  }

  // No async function of our own: one promise per read fewer.
  read(): Promise<Uint8Array | null> {
    if (this.#closed) return RESOLVED_NULL;
    const buffer = this.#nextBig ? (this.#big ??= new Uint8Array(MIN_READ_BUFFER)) : this.#small;
    this.#reading = buffer;
    return this.#conn.read(buffer).then(this.#onRead, this.#onReadFailed);
  }

  /** The pool's read (see _read_to.ts): the outcome goes to the callbacks, one promise fewer. */
  readTo(
    onChunk: (chunk: Uint8Array | null) => void,
    onError: (error: unknown) => void,
  ): void {
    if (this.#closed) {
      RESOLVED_NULL.then(onChunk);
      return;
    }
    const buffer = this.#nextBig ? (this.#big ??= new Uint8Array(MIN_READ_BUFFER)) : this.#small;
    this.#reading = buffer;
    this.#sinkChunk = onChunk;
    this.#sinkError = onError;
    this.#conn.read(buffer).then(this.#onReadTo, this.#onReadToFailed);
  }

  #sinkChunk: (chunk: Uint8Array | null) => void = ignore;
  #sinkError: (error: unknown) => void = ignore;

  #onReadTo = (n: number | null): void => {
    let chunk: Uint8Array | null;
    try {
      chunk = this.#onRead(n);
    } catch (error) {
      this.#sinkError(error);
      return;
    }
    this.#sinkChunk(chunk);
  };

  #onReadToFailed = (error: unknown): void => {
    let outcome: null;
    try {
      outcome = this.#onReadFailed(error);
    } catch (failure) {
      this.#sinkError(failure);
      return;
    }
    this.#sinkChunk(outcome);
  };

  // Bound once per connection, not per read.
  #onRead = (n: number | null): Uint8Array | null => {
    if (!this.#refed) activity.idleReadsDone++;
    if (n === null) return null;
    const buffer = this.#reading;
    const chunk = buffer.slice(0, n);
    this.#nextBig = n === buffer.length;
    if (buffer !== this.#small) {
      if (n === buffer.length && buffer.length < MAX_READ_BUFFER) {
        this.#big = new Uint8Array(buffer.length * 4);
      } else if (n <= buffer.length >> 4 && buffer.length > MIN_READ_BUFFER) {
        this.#big = new Uint8Array(buffer.length >> 2);
      }
    }
    return chunk;
  };

  #onReadFailed = (error: unknown): null => {
    if (!this.#refed) activity.idleReadsDone++;
    // close() interrupts a pending read; report that as the end.
    if (this.#closed) return null;
    throw error;
  };

  // No async function for the common case (one conn.write() takes it all):
  // one promise and one turn fewer per write.
  write(chunk: Uint8Array): Promise<void> {
    const invalid = unwritableChunk(chunk);
    if (invalid !== undefined) return Promise.reject(invalid);
    if (this.#closed) return Promise.reject(closedError("write"));
    if (chunk.length === 0) return RESOLVED;
    let first: Promise<number>;
    try {
      first = this.#conn.write(chunk);
    } catch (error) {
      return Promise.reject(error);
    }
    return first.then((written) =>
      written === chunk.length ? undefined : this.#writeRest(chunk, written)
    );
  }

  // Deno.Conn.write() may take only part of the chunk.
  async #writeRest(chunk: Uint8Array, first: number): Promise<void> {
    if (first <= 0) throw new Error("Cannot write: the socket accepted no bytes");
    let offset = first;
    while (offset < chunk.length) {
      const written = await this.#conn.write(offset === 0 ? chunk : chunk.subarray(offset));
      if (written <= 0) throw new Error("Cannot write: the socket accepted no bytes");
      offset += written;
    }
  }

  // async: whatever the resource does, a failure comes through the promise.
  async closeWrite(): Promise<void> {
    if (this.#closed) throw closedError("close the write side");
    await this.#conn.closeWrite();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.stopRefs();
    try {
      this.#conn.close();
    } catch {
      // Already closed by Deno (BadResource): nothing left to free.
    }
    connectionClosed();
  }

  // LazyRef calls this at most once per sweep; `#refed` is what was asked.
  protected nativeRef(refed: boolean): void {
    if (this.#closed) return;
    if (refed) this.#conn.ref();
    else this.#conn.unref();
  }

  override ref(): void {
    this.#refed = true;
    super.ref();
  }

  override unref(): void {
    this.#refed = false;
    // Idle: the next burst starts with a small buffer again (a read in
    // progress keeps its own).
    this.#big = undefined;
    super.unref();
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

const reactorTurn = new ReactorTurn(activity);

function connectionClosed(): void {
  activity.openConnections--;
  // No sockets are left behind once the pool has closed every connection.
  if (activity.openConnections === 0) reactorTurn.close();
}

async function connect(
  address: ResolvedAddress,
  options: TransportConnectOptions,
): Promise<TransportConnection> {
  const { signal } = options;
  signal?.throwIfAborted();
  if (address.kind === "tcp" && address.tls !== undefined) checkTlsSupport(address);
  let conn: DenoConn;
  try {
    if (address.kind === "unix") {
      // Deno ignores `signal` here; a local connect completes at once, and the check below closes it.
      conn = await deno().connect({ transport: "unix", path: address.path });
    } else {
      const tcp = await deno().connect({
        hostname: address.hostname,
        port: address.port,
        transport: "tcp",
        signal,
      });
      tcp.setNoDelay(true);
      // On or off only: the kernel's times apply (net.ipv4.tcp_keepalive_*).
      if (options.keepAlive !== undefined && options.keepAlive !== false) tcp.setKeepAlive(true);
      conn = tcp;
    }
  } catch (error) {
    throw withConnectCode(error);
  }
  if (signal?.aborted) {
    closeQuietly(conn);
    throw signal.reason;
  }
  let tls: TlsInfo | undefined;
  if (address.kind === "tcp" && address.tls !== undefined) {
    [conn, tls] = await startTls(conn as DenoTcpConn, address, signal);
  }
  activity.openConnections++;
  return new DenoConnection(conn, tls);
}

// Deno.startTls (the only TLS call that keeps Nagle's algorithm off) has no
// switch for verification and no client certificate.
function checkTlsSupport(address: ResolvedTcpAddress): void {
  if (!address.tls!.verify) {
    throw tlsUnsupportedError(
      address,
      "Deno cannot turn certificate verification off for one connection (only for the whole process, with --unsafely-ignore-certificate-errors)",
    );
  }
  if (address.tls!.cert !== undefined) {
    throw tlsUnsupportedError(
      address,
      "Deno.startTls cannot present a client certificate",
    );
  }
}

/** Runs the TLS handshake over `tcp`; closing it is how an abort interrupts the handshake. */
async function startTls(
  tcp: DenoTcpConn,
  address: ResolvedTcpAddress,
  signal: AbortSignal | undefined,
): Promise<[DenoConn, TlsInfo]> {
  const settings = address.tls!;
  let conn: DenoConn = tcp;
  const onAbort = (): void => closeQuietly(conn);
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    const tls = await deno().startTls(tcp, {
      hostname: settings.serverName,
      ...(settings.caCerts === undefined ? {} : { caCerts: [...settings.caCerts] }),
      ...(settings.alpnProtocols === undefined
        ? {}
        : { alpnProtocols: [...settings.alpnProtocols] }),
    });
    conn = tls;
    if (signal?.aborted) throw signal.reason;
    const { alpnProtocol } = await tls.handshake();
    // Deno has no session API: every handshake is a full one, as far as it tells.
    return [tls, { resumed: undefined, alpnProtocol: alpnProtocol ?? undefined }];
  } catch (error) {
    closeQuietly(conn);
    if (signal?.aborted) throw signal.reason;
    throw tlsHandshakeError(address, error);
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
}

/**
 * The transport for Deno: TCP connections through `Deno.connect`, with
 * Nagle's algorithm turned off, and Unix-domain socket connections for
 * `{ path }` addresses.
 *
 * Needs `--allow-net` for the upstreams, and for Unix sockets also
 * `--allow-read` and `--allow-write` for their paths. {@linkcode Transport.settle} is
 * one extra turn of Deno's event loop, which a ping over a socket pair of
 * its own forces: about 4.5-5 µs on Linux with a plain `--allow-net` (an
 * abstract Unix socket), about twice that when the program may only listen
 * on `127.0.0.1` (any port, as with `--allow-net=127.0.0.1,...`, or on
 * other systems: TCP); without that permission it falls back to timers
 * and costs about 4 ms.
 *
 * Connect errors are Deno's own; a failed DNS lookup gets
 * `code: "ENOTFOUND"` (or `"EAI_AGAIN"`), a refused connect already has
 * `code: "ECONNREFUSED"`, and an aborted `signal` rejects with its reason.
 * A missing socket path rejects with `code: "ENOENT"`, a socket file with
 * no listener with `"ECONNREFUSED"`. Deno cannot cancel a Unix-socket
 * connect: the `signal` is checked once it completes (locally, at once).
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
    return activity.openConnections === 0 ? RESOLVED : reactorTurn.wait();
  },
};
