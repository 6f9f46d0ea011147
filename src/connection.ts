/**
 * What a borrower holds: the connection handle and the acquire result.
 *
 * @module
 */
import type { ResolvedAddress } from "./address.ts";
import { PoolError } from "./errors.ts";
import type { PooledSocket } from "./pooled_socket.ts";
import type { TlsInfo } from "./transports/transport.ts";

/**
 * A borrowed connection to an upstream. Each `acquire` hands out a fresh
 * handle; once it is given back with `retain` or `release`, that handle is
 * dead (reads and writes reject with code `LEASE_ENDED`) even if the socket
 * behind it goes on serving someone else.
 *
 * Bytes can be read and written either with `read()`/`write()` (the fast
 * path) or through `readable`/`writable` (web streams, created on first
 * use). Both go through the same queue, so they can be mixed without losing
 * a byte.
 *
 * @example A request and its reply
 * ```ts ignore
 * const { connection } = await pool.acquire({ hostname: "127.0.0.1", port: 6379 });
 * await connection.write(new TextEncoder().encode("PING\r\n"));
 * const reply = await connection.read(); // "+PONG\r\n"
 * pool.retain(connection);
 * ```
 */
export interface UpstreamConnection {
  /** The upstream this connection goes to, normalised; `address.key` names its pool. */
  readonly address: ResolvedAddress;
  /**
   * What the TLS handshake agreed on when the connection was opened (was an
   * earlier session resumed, which ALPN protocol); `undefined` without TLS.
   */
  readonly tls: TlsInfo | undefined;
  /**
   * Received bytes as a stream. It never reads ahead: bytes stay in the
   * connection until something reads them. Cancelling it does not close the
   * connection; a chunk it had in hand goes back to the connection, unread.
   */
  readonly readable: ReadableStream<Uint8Array>;
  /**
   * A stream that writes to the upstream. Closing it half-closes the
   * connection (sends FIN), which makes the connection not reusable;
   * aborting it also makes it not reusable.
   */
  readonly writable: WritableStream<Uint8Array>;
  /**
   * Resolves with the next chunk received, or `null` once the upstream has
   * closed its side. One read at a time.
   *
   * @throws {PoolError} `LEASE_ENDED` after the connection was given back;
   * `CONNECTION_LOST` if the connection failed.
   * @throws {TypeError} If another read is still pending.
   */
  read(): Promise<Uint8Array | null>;
  /**
   * Writes all of `chunk`. Overlapping writes go out in call order. The
   * runtime may keep `chunk` until it is sent: do not modify it afterwards.
   *
   * @throws {PoolError} `LEASE_ENDED` after the connection was given back;
   * `CONNECTION_LOST` if the connection failed.
   * @throws {TypeError} If `chunk` is not a `Uint8Array`.
   */
  write(chunk: Uint8Array): Promise<void>;
  /**
   * Sends FIN after pending writes; reading still works. The connection can
   * no longer be reused (`retain` will close it).
   */
  closeWrite(): Promise<void>;
}

/**
 * What `acquire` resolves with. It is also `AsyncDisposable`: leaving an
 * `await using` scope releases (closes) the connection unless it was given
 * back before, so a forgotten or half-read connection is never reused.
 *
 * @example Scoped use
 * ```ts ignore
 * await using lease = await pool.acquire(address);
 * await lease.connection.write(request);
 * const reply = await lease.connection.read();
 * if (complete(reply)) pool.retain(lease.connection); // otherwise closed at scope end
 * ```
 */
export interface Acquired extends AsyncDisposable {
  /** True if a new connection was opened for this acquire, false if an idle one was reused. */
  readonly created: boolean;
  /** The borrowed connection. */
  readonly connection: UpstreamConnection;
}

/** How a lease reports back to the pool that lent it. */
export interface LeaseOwner {
  releaseIfBorrowed(lease: Lease): void;
}

/**
 * The one object behind both `Acquired` and `UpstreamConnection`, so an
 * acquire allocates a single handle.
 */
export class Lease implements Acquired, UpstreamConnection {
  readonly created: boolean;
  readonly socket: PooledSocket;
  readonly owner: LeaseOwner;
  readonly generation: number;
  /** Where acquire() was called, for leak reports. */
  readonly stack: string;
  #readable: ReadableStream<Uint8Array> | undefined;
  #writable: WritableStream<Uint8Array> | undefined;

  constructor(owner: LeaseOwner, socket: PooledSocket, created: boolean, stack: string) {
    this.owner = owner;
    this.socket = socket;
    this.created = created;
    this.generation = socket.generation;
    this.stack = stack;
  }

  get connection(): UpstreamConnection {
    return this;
  }

  get address(): ResolvedAddress {
    return this.socket.address;
  }

  get tls(): TlsInfo | undefined {
    return this.socket.transport.tls;
  }

  /** True while this handle is the socket's current borrower. */
  get active(): boolean {
    return this.socket.state === "borrowed" && this.socket.generation === this.generation;
  }

  read(): Promise<Uint8Array | null> {
    if (!this.active) return Promise.reject(this.#ended("read from"));
    return this.socket.read();
  }

  write(chunk: Uint8Array): Promise<void> {
    if (!(chunk instanceof Uint8Array)) {
      return Promise.reject(
        new TypeError(`Cannot write: expected a Uint8Array, got ${typeof chunk}`),
      );
    }
    if (!this.active) return Promise.reject(this.#ended("write to"));
    return this.socket.write(chunk);
  }

  closeWrite(): Promise<void> {
    if (!this.active) return Promise.reject(this.#ended("half-close"));
    return this.socket.closeWrite();
  }

  get readable(): ReadableStream<Uint8Array> {
    return this.#readable ??= this.#makeReadable();
  }

  get writable(): WritableStream<Uint8Array> {
    return this.#writable ??= new WritableStream<Uint8Array>({
      write: (chunk) => this.write(chunk),
      close: () => this.closeWrite(),
      abort: () => {
        if (this.active) this.socket.reusable = false;
      },
    });
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.owner.releaseIfBorrowed(this);
    return Promise.resolve();
  }

  #makeReadable(): ReadableStream<Uint8Array> {
    let cancelled = false;
    return new ReadableStream<Uint8Array>({
      pull: (controller) =>
        this.read().then(
          (chunk) => {
            if (cancelled) {
              // Nobody will see this chunk: leave it in the connection.
              if (chunk !== null && this.active) this.socket.unshift(chunk);
            } else if (chunk === null) controller.close();
            else controller.enqueue(chunk);
          },
          (error) => {
            if (!cancelled) controller.error(error);
          },
        ),
      cancel: () => {
        cancelled = true;
      },
    }, { highWaterMark: 0 });
  }

  #ended(what: string): PoolError {
    return new PoolError(
      "LEASE_ENDED",
      `Cannot ${what} the connection to "${this.socket.address.key}": it was given back to the pool`,
      { address: this.socket.address.key },
    );
  }
}
