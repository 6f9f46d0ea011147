/**
 * What a borrower holds: the connection handle and the acquire result.
 *
 * @module
 */
import type { ResolvedAddress } from "./address.ts";
import { PoolError } from "./errors.ts";
import { checkKnownKeys, READ_OPTION_KEYS } from "./_known_keys.ts";
import { show } from "./_show.ts";
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
export interface UpstreamConnection<State = ConnectionState> {
  /** The upstream this connection goes to, normalised; `address.key` names its pool. */
  readonly address: ResolvedAddress;
  /**
   * A number that names the physical connection: the same on every lease of
   * it, unique within the pool. Events and errors use it too.
   */
  readonly id: number;
  /**
   * The caller's own data about this connection (a driver's prepared
   * statements, the selected database): the same object on every lease of
   * the connection, for as long as it lives. It starts as an empty object;
   * the pool's `setup` hook is the place to fill it. Assigning replaces it
   * for later leases too.
   */
  state: State;
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
   * closed its side. One read at a time. With `signal`, the read can be
   * abandoned: it rejects with the signal's reason and the connection stays
   * open, but its place in the byte stream is lost, so `retain` will close
   * it rather than pool it.
   *
   * @throws {PoolError} `LEASE_ENDED` after the connection was given back;
   * `CONNECTION_LOST` if the connection failed.
   * @throws {TypeError} If another read is still pending.
   */
  read(options?: ReadOptions): Promise<Uint8Array | null>;
  /**
   * Puts bytes back at the front of the receive queue: the next `read`
   * returns them first. For a parser that read past the end of a reply.
   * While such bytes are unread, `retain` closes the connection instead of
   * pooling it, so a reply's leftovers never reach the next borrower.
   *
   * @throws {PoolError} `LEASE_ENDED` after the connection was given back.
   * @throws {TypeError} If `chunk` is not a `Uint8Array`.
   */
  unread(chunk: Uint8Array): void;
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
export interface Acquired<State = ConnectionState> extends AsyncDisposable {
  /**
   * True if this is the connection's first hand-out (it was opened for this
   * acquire, or by `add`, `warm` or `minIdlePerHost` and not used since);
   * false if it was reused.
   */
  readonly created: boolean;
  /**
   * How long the connection had been idle before this hand-out, in ms, since
   * its last byte received or write completed (0 for one opened for this
   * acquire; a `warm` or `add` connection reports how long it waited), as
   * Go's `GotConnInfo.IdleTime`.
   */
  readonly idleMs: number;
  /** The borrowed connection. */
  readonly connection: UpstreamConnection<State>;
}

/**
 * The default type of {@linkcode UpstreamConnection.state}: an object the
 * caller fills in.
 *
 * @example
 * ```ts
 * import type { ConnectionState } from "@upstream/pool";
 * const state: ConnectionState = { database: 2 };
 * ```
 */
export type ConnectionState = Record<string, unknown>;

/**
 * Options for {@linkcode UpstreamConnection.read}.
 *
 * @example Give up on a reply after one second
 * ```ts ignore
 * const chunk = await connection.read({ signal: AbortSignal.timeout(1000) });
 * ```
 */
export interface ReadOptions {
  /** Abandons the read; the connection is then not reusable. */
  signal?: AbortSignal;
}

/** How a lease reports back to the pool that lent it. */
export interface LeaseOwner {
  releaseIfBorrowed(lease: Lease): void;
}

/**
 * The one object behind both `Acquired` and `UpstreamConnection`, so an
 * acquire allocates a single handle.
 */
// deno-lint-ignore no-explicit-any -- the pool's state type is the caller's business
export class Lease implements Acquired<any>, UpstreamConnection<any> {
  readonly created: boolean;
  readonly idleMs: number;
  readonly socket: PooledSocket;
  readonly owner: LeaseOwner;
  /** Where acquire() was called, for leak reports. */
  readonly stack: string;
  #readable: ReadableStream<Uint8Array> | undefined;
  #writable: WritableStream<Uint8Array> | undefined;

  constructor(
    owner: LeaseOwner,
    socket: PooledSocket,
    created: boolean,
    idleMs: number,
    stack: string,
  ) {
    this.owner = owner;
    this.socket = socket;
    this.created = created;
    this.idleMs = idleMs;
    this.stack = stack;
  }

  // deno-lint-ignore no-explicit-any
  get connection(): UpstreamConnection<any> {
    return this;
  }

  get address(): ResolvedAddress {
    return this.socket.address;
  }

  get id(): number {
    return this.socket.id;
  }

  // deno-lint-ignore no-explicit-any
  get state(): any {
    return this.socket.userState;
  }

  set state(value: unknown) {
    this.socket.userState = value;
  }

  get tls(): TlsInfo | undefined {
    return this.socket.transport.tls;
  }

  /** True while this handle is the socket's current holder (a borrower, or a hook). */
  get active(): boolean {
    return this.socket.holder === this;
  }

  read(options?: ReadOptions): Promise<Uint8Array | null> {
    if (!this.active) return Promise.reject(this.#ended("read from"));
    if (options === undefined) return this.socket.read();
    // Checked as every options object is (a plain object, known keys, each
    // read once), and any failure, a throwing getter's too, goes through the
    // promise.
    let signal: unknown;
    try {
      ({ signal } = checkKnownKeys(options, READ_OPTION_KEYS, "read options"));
    } catch (error) {
      return Promise.reject(error);
    }
    if (signal !== undefined && !(signal instanceof AbortSignal)) {
      return Promise.reject(
        new TypeError(`Invalid read option signal: expected an AbortSignal, got ${show(signal)}`),
      );
    }
    return this.socket.read(signal);
  }

  unread(chunk: Uint8Array): void {
    const problem = bytesProblem(chunk);
    if (problem !== undefined) throw new TypeError(`Cannot unread: ${problem}`);
    if (!this.active) throw this.#ended("unread to");
    this.socket.unread(chunk);
  }

  write(chunk: Uint8Array): Promise<void> {
    const problem = bytesProblem(chunk);
    if (problem !== undefined) return Promise.reject(new TypeError(`Cannot write: ${problem}`));
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
    let pulling = false;
    return new ReadableStream<Uint8Array>({
      pull: (controller) => {
        pulling = true;
        return this.read().then(
          (chunk) => {
            pulling = false;
            if (cancelled) {
              // Nobody will see this chunk: leave it in the connection.
              if (chunk !== null && this.active) this.socket.unread(chunk);
            } else if (chunk === null) controller.close();
            else controller.enqueue(chunk);
          },
          (error) => {
            pulling = false;
            if (!cancelled) controller.error(error);
          },
        );
      },
      cancel: () => {
        cancelled = true;
        // A read the stream still waits on would hold the connection's one
        // read until bytes came: give it up, so read() works at once. Bytes
        // on their way stay in the connection, unread.
        if (pulling && this.active) this.socket.abandonRead("cancel");
      },
    }, { highWaterMark: 0 });
  }

  #ended(what: string): PoolError {
    return new PoolError(
      "LEASE_ENDED",
      `Cannot ${what} the connection to "${this.socket.address.key}": it was given back to the pool`,
      { address: this.socket.address.key, operation: what.split(" ")[0] },
    );
  }
}

/**
 * Why `chunk` is not bytes a runtime can send, or undefined. Only a real
 * Uint8Array will do (not a Proxy of one, which runtimes cannot read, nor a
 * DataView), over a buffer still attached: a detached one reads as empty on
 * Deno and Bun but fails the write on Node, so it is refused everywhere,
 * before the connection is touched.
 */
function bytesProblem(chunk: unknown): string | undefined {
  // ArrayBuffer.isView first: it sees through no Proxy, and runs no trap.
  if (!ArrayBuffer.isView(chunk) || !(chunk instanceof Uint8Array)) {
    return `expected a Uint8Array, got ${show(chunk)}`;
  }
  if (chunk.byteLength === 0 && isDetached(chunk.buffer)) {
    return "its ArrayBuffer is detached (it was transferred)";
  }
  return undefined;
}

function isDetached(buffer: ArrayBufferLike): boolean {
  const detached = (buffer as { detached?: unknown }).detached;
  if (typeof detached === "boolean") return detached;
  try {
    new Uint8Array(buffer, 0, 0); // Node 20 has no `detached`: a detached buffer takes no view
    return false;
  } catch {
    return true;
  }
}
