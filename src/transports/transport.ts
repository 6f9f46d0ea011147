/**
 * The neutral interface between the pool and a runtime's sockets.
 *
 * The pool core only ever talks to these two types. Each runtime adapter
 * (`deno.ts`, `bun.ts`, `node.ts`) and the in-memory transport implement
 * them; nothing in the core knows which one it is using.
 *
 * @module
 */

import type { ResolvedAddress } from "../address.ts";

/**
 * One open byte-stream connection, as a transport hands it to the pool.
 *
 * Reads are pull-based so that the pool can keep exactly one read pending
 * on an idle connection (that read is how it notices EOF, an error or
 * unsolicited bytes) and hand the very same pending read over to the next
 * borrower: no reader is ever swapped, so no chunk can be stranded.
 *
 * @example Echo one message
 * ```ts ignore
 * const socket = await transport.connect(address, {});
 * await socket.write(new TextEncoder().encode("ping"));
 * const reply = await socket.read(); // Uint8Array, or null at EOF
 * socket.close();
 * ```
 */
export interface TransportConnection {
  /**
   * Resolves with the next chunk of received bytes (never empty), or `null`
   * once the peer has closed its side (EOF; later calls resolve `null` too).
   * Rejects if the connection failed (for example a reset). At most one read
   * is pending at a time; the pool never calls it concurrently.
   */
  read(): Promise<Uint8Array | null>;
  /**
   * Writes all of `chunk`, looping over partial writes. Resolves once the
   * runtime has taken every byte (it may still be in flight, and the
   * runtime may still hold `chunk` itself: callers must not modify it
   * afterwards); rejects if the connection is closed or failed, and with a
   * `TypeError` for a chunk that is not a `Uint8Array` or whose buffer is
   * detached. Writes are never issued concurrently. Like `read` and
   * `closeWrite`, it never throws: every failure comes through the promise.
   */
  write(chunk: Uint8Array): Promise<void>;
  /** Sends FIN (half-close): no more writes, reads still work. */
  closeWrite(): Promise<void>;
  /**
   * Closes the connection at once and frees its socket. A pending read
   * settles (with `null` or a rejection; the pool ignores which), and later
   * reads resolve `null`. Safe to call more than once.
   */
  close(): void;
  /** Lets this connection keep the process alive (the default). */
  ref(): void;
  /**
   * Stops this connection, and any read pending on it, from keeping the
   * process alive. The built-in Node, Bun and Deno transports may defer the
   * native call by up to 50 ms (a pooled connection is usually ref'd again
   * sooner); `ref()` takes effect at once.
   */
  unref(): void;
  /** What the TLS handshake agreed on; `undefined` for a connection without TLS. */
  readonly tls?: TlsInfo;
}

/**
 * What a TLS connection's handshake agreed on.
 *
 * @example
 * ```ts ignore
 * const { connection } = await pool.acquire({ hostname: "example.com", port: 443, tls: true });
 * console.log(connection.tls?.resumed); // true if an earlier session was resumed
 * ```
 */
export interface TlsInfo {
  /**
   * Whether the handshake resumed an earlier session (an abbreviated
   * handshake); `undefined` where the runtime cannot tell (Deno).
   */
  readonly resumed: boolean | undefined;
  /** The ALPN protocol the server chose, if any. */
  readonly alpnProtocol: string | undefined;
}

/**
 * Where a transport keeps TLS sessions for resumption, one per pool key
 * (which names the TLS identity). The pool owns one per pool; a transport
 * whose runtime cannot resume sessions ignores it.
 *
 * @example
 * ```ts ignore
 * const session = options.tlsSessions?.get(address.key); // offer it in the handshake
 * socket.on("session", (ticket) => options.tlsSessions?.set(address.key, ticket));
 * ```
 */
export interface TlsSessionCache {
  /** The latest session saved for `key`, or `undefined`. */
  get(key: string): unknown;
  /** Saves a session (opaque to the pool) for later connects to `key`. */
  set(key: string, session: unknown): void;
}

/**
 * Options for {@linkcode Transport.connect}.
 *
 * @example Connect with a deadline
 * ```ts ignore
 * const socket = await transport.connect(address, { signal: AbortSignal.timeout(1000) });
 * ```
 */
export interface TransportConnectOptions {
  /**
   * Aborts the connect: the transport closes the socket, in SYN-SENT or
   * mid-handshake too, and the promise rejects once it has. The promise
   * settles only when the attempt holds no socket any more (the pool counts
   * the attempt against its limits until then); should a connection open
   * anyway, it may resolve with it, and the caller closes it.
   */
  signal?: AbortSignal;
  /** Sessions to resume TLS connections with, and to save new ones in. */
  tlsSessions?: TlsSessionCache;
  /**
   * TCP keepalive: ms of idleness before the first probe, or `false` (or
   * absent) for none. A runtime that can only switch keepalive on (Deno)
   * does that and leaves the times to the kernel. Ignored for Unix sockets.
   */
  keepAlive?: number | false;
}

/**
 * Opens connections for the pool on one runtime.
 *
 * Connect failures reject with the runtime's error; where the runtime does
 * not say so itself, the transport sets a POSIX-style `code` on it
 * (`ECONNREFUSED`, `ENOTFOUND`, ...) so the pool can classify it. A failed
 * TLS handshake rejects with a `PoolError` (`TLS_CERT_INVALID`,
 * `TLS_HANDSHAKE_FAILED`, `TLS_UNSUPPORTED`) whose `cause` is the
 * runtime's error. A TLS connect resolves only after the handshake.
 *
 * @example A transport passed explicitly
 * ```ts ignore
 * import { ConnectionPool } from "@upstream/pool";
 * import { nodeTransport } from "@upstream/pool/node";
 * const pool = new ConnectionPool({ transport: nodeTransport });
 * ```
 */
export interface Transport {
  /** A short name for logs and stats, such as `"deno"` or `"memory"`. */
  readonly name: string;
  /**
   * Opens a connection: TCP with Nagle's algorithm disabled, TLS over it
   * when `address.tls` is set, or a Unix-domain socket.
   */
  connect(
    address: ResolvedAddress,
    options: TransportConnectOptions,
  ): Promise<TransportConnection>;
  /**
   * Resolves once every connection of this transport whose receive buffer
   * held anything (bytes, a FIN, an error) when `settle` was called has
   * settled the read pending on it. That is all the pool needs: it awaits
   * `settle` before handing out an idle connection, and any outcome of the
   * idle read evicts it. (Not every byte: Bun, for one, delivers data and a
   * FIN that arrived together in two polls.) It must be called safely from
   * any phase (a timer, an immediate, an I/O callback) and cost far less
   * than a round trip: a turn of the event loop's I/O phase, not a timer.
   */
  settle(): Promise<void>;
}
