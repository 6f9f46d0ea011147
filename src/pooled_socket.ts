// One transport connection as the pool sees it: which phase of its life it
// is in, who may use it, and where its bytes go.
//
// The socket keeps exactly one transport read pending for as long as it is
// open and has nothing unread. While the socket is idle, that read is the
// idle watch: whatever it yields (bytes, EOF, an error) means the connection
// is broken and it leaves the pool. When the socket is lent out (to a
// borrower, or to the setup and validate hooks), the same read carries on
// for the holder; chunks that arrive before the holder asks wait here (the
// transport read stops meanwhile), which is also how `retain` knows that
// bytes are left unread. Nothing is ever handed from one reader to another,
// so no chunk can be stranded.
import type { ResolvedAddress } from "./address.ts";
import { PoolError } from "./errors.ts";
import type { SocketList } from "./host_pool.ts";
import type { TransportConnection } from "./transports/transport.ts";
import { WRITTEN } from "./transports/_chunks.ts";
import { type ReadsTo, readsTo } from "./transports/_read_to.ts";

/** What one transport read produced. */
type ReadOutcome =
  | { readonly chunk: Uint8Array }
  | { readonly eof: true }
  | { readonly error: unknown };

interface PendingRead {
  resolve(chunk: Uint8Array | null): void;
  reject(error: unknown): void;
}

/** Why an idle socket left the pool on its own. */
export type BreakReason = "eof" | "error" | "unsolicited-bytes";

/** The pool's side of a socket: how it learns that an idle one broke. */
export interface SocketOwner {
  onIdleBreak(socket: PooledSocket, reason: BreakReason): void;
}

/**
 * Where a connection is in its life. Connects in progress have no socket
 * yet (the address counts them); `closed` is final. `reserved` is idle but
 * promised to an acquire that waits for its settle turn: still watched.
 */
export type Phase = "setting-up" | "idle" | "reserved" | "validating" | "borrowed" | "closed";

export class PooledSocket {
  /** Unique within the pool, stable for the life of the connection. */
  readonly id: number;
  readonly address: ResolvedAddress;
  readonly transport: TransportConnection;
  readonly createdAt: number;
  /** Owned by the caller: the same object on every lease. */
  userState: unknown = {};
  phase: Phase = "setting-up";
  /** The handle that may use the socket now (a borrower's, or a hook's), if any. */
  holder: object | undefined = undefined;
  /** While reserved: the arrival number of the acquire it is reserved for. */
  reservedBy = 0;
  /** Times handed out to a borrower. */
  uses = 0;
  /** The address's drain epoch when the socket opened: an older one is drained. */
  epoch = 0;
  /** When the socket is to be closed for age (maxLifetime with jitter), or Infinity. */
  expiresAt = Infinity;
  /**
   * When its current idle period began (Date.now()): its last activity, a
   * byte received or a write completed, not the `retain` after it. The
   * upstream's keep-alive timer starts at its last reply, so the time a
   * borrower spends between reading a reply and retaining (a busy event
   * loop, say) must not stretch the pool's idle deadline past the server's.
   */
  idleSince = 0;
  /** When a byte was last received or a write completed (Date.now()). */
  lastActiveAt: number;
  /** How long this idle period may last, in ms (the policy's, or what retain asked). */
  idleTimeout = Infinity;
  /** When it last became idle, in the pool's order of arrivals and returns. */
  idleStamp = 0;
  /** False once anything made the byte stream's position unknown or final. */
  reusable = true;
  /** Bytes received since the current holder took the socket. */
  received = 0;
  /**
   * The list of its phase it is in (the pool's reserved or borrowed list,
   * the address's setting-up or validating list; none while idle), and its
   * neighbours there: see SocketList. Only the lifecycle moves it.
   */
  list: SocketList | undefined = undefined;
  /** While idle: its slot in the pool-wide idle LRU (IdleLru); -1 when not in it. */
  lruIndex = -1;
  prev: PooledSocket | undefined = undefined;
  next: PooledSocket | undefined = undefined;

  #owner: SocketOwner;
  #reading = false;
  /** Read results nobody has taken yet, oldest first (bytes put back go in front). */
  #unread: ReadOutcome[] | undefined = undefined; // made when needed: most sockets never hold any
  #reader: PendingRead | null = null;
  #ended = false;
  /** The first failure of the connection, as the runtime reported it. */
  #failure: { cause: unknown; during: string } | undefined;
  #writes = 0;
  /** The transport delivers reads to callbacks (see _read_to.ts): one promise per chunk fewer. */
  readonly #readsTo: boolean;
  #writeTail: Promise<void> = Promise.resolve();

  constructor(
    id: number,
    address: ResolvedAddress,
    transport: TransportConnection,
    owner: SocketOwner,
  ) {
    this.id = id;
    this.address = address;
    this.transport = transport;
    this.#owner = owner;
    this.#readsTo = readsTo(transport);
    this.lastActiveAt = this.createdAt = Date.now();
  }

  /** True while bytes, EOF or an error wait in the socket unread. */
  get hasUnread(): boolean {
    return this.#unread !== undefined;
  }

  /** True while a write is still in progress. */
  get writing(): boolean {
    return this.#writes > 0;
  }

  /** Whether the connection ended or failed (EOF read, reset, failed write). */
  get ended(): boolean {
    return this.#ended || this.#failure !== undefined;
  }

  /** Could go back to the idle list as it is: open, clean, nothing pending. */
  get clean(): boolean {
    return this.reusable && this.#unread === undefined && this.#writes === 0;
  }

  /** Starts the idle watch: a read whose every outcome means "broken". */
  watchIdle(): void {
    this.phase = "idle";
    this.holder = undefined;
    this.idleSince = this.lastActiveAt;
    this.transport.unref();
    this.#ensureReading();
  }

  /** Gives the socket to `holder` (a borrower or a hook); the idle watch's read carries on for it. */
  lend(phase: "setting-up" | "validating" | "borrowed", holder: object): void {
    this.#ensureReading();
    this.phase = phase;
    this.holder = holder;
    this.received = 0;
    this.transport.ref();
  }

  close(): void {
    if (this.phase === "closed") return;
    this.phase = "closed";
    this.holder = undefined;
    this.reusable = false;
    this.abandonRead("close");
    this.transport.close();
  }

  /**
   * Fails a holder's read that is still waiting: the holder gave the socket
   * back (`verb`) under it. The error is made only then: capturing its stack
   * costs more than the rest of a retain.
   */
  abandonRead(verb: string): void {
    const reader = this.#reader;
    if (reader === null) return;
    this.#reader = null;
    reader.reject(
      new PoolError(
        "LEASE_ENDED",
        `The read on the connection to "${this.address.key}" was cut short: the connection was ${
          verb === "close" ? "closed" : `given back (${verb})`
        }`,
        { address: this.address.key, operation: "read" },
      ),
    );
  }

  /** The holder's read: the next chunk, or null at EOF. */
  read(signal?: AbortSignal): Promise<Uint8Array | null> {
    if (this.#reader !== null) {
      return Promise.reject(
        new TypeError("Cannot read: another read on this connection is still pending"),
      );
    }
    const unread = this.#takeUnread();
    if (unread !== undefined) {
      this.#ensureReading();
      return this.#settle(unread);
    }
    if (this.#ended) return Promise.resolve(null);
    if (this.#failure !== undefined) return Promise.reject(this.#error("read"));
    if (signal !== undefined) return this.#readUntilAborted(signal);
    return new Promise((resolve, reject) => {
      this.#reader = { resolve, reject };
      this.#ensureReading();
    });
  }

  // A read the caller may abandon: the socket stays open but its position
  // in the byte stream is lost, so it is never pooled again.
  #readUntilAborted(signal: AbortSignal): Promise<Uint8Array | null> {
    if (signal.aborted) {
      this.reusable = false;
      return Promise.reject(signal.reason);
    }
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        if (this.#reader !== reader) return;
        this.#reader = null;
        this.reusable = false;
        reject(signal.reason);
      };
      const reader: PendingRead = {
        resolve: (chunk) => {
          signal.removeEventListener("abort", onAbort);
          resolve(chunk);
        },
        reject: (error) => {
          signal.removeEventListener("abort", onAbort);
          reject(error);
        },
      };
      this.#reader = reader;
      signal.addEventListener("abort", onAbort, { once: true });
      this.#ensureReading();
    });
  }

  /** Puts bytes back in front of the receive queue; the next read returns them first. */
  unread(chunk: Uint8Array): void {
    if (chunk.length > 0) (this.#unread ??= []).unshift({ chunk });
  }

  write(chunk: Uint8Array): Promise<void> {
    if (this.#failure !== undefined) return Promise.reject(this.#error("write"));
    // Overlapping writes are serialised; the common case has none in flight.
    let done: Promise<void>;
    if (++this.#writes === 1) {
      const sent = this.#send(chunk);
      if (sent === WRITTEN) {
        // The runtime took every byte at once: the write is complete now,
        // and nothing can be in flight behind it (#writeTail is settled).
        this.#writes--;
        this.lastActiveAt = Date.now();
        return sent;
      }
      done = sent.then(this.#wrote, this.#writeFailed);
    } else {
      done = this.#writeTail.then(() => this.#send(chunk)).then(this.#wrote, this.#writeFailed);
    }
    this.#writeTail = done.catch(ignore);
    return done;
  }

  // A transport that throws instead of rejecting must not leave the write
  // count stuck: every failure goes through the promise.
  #send(chunk: Uint8Array): Promise<void> {
    try {
      return this.transport.write(chunk);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  // Bound once per socket: no closures are allocated per write or read.
  #wrote = (): void => {
    this.#writes--;
    this.lastActiveAt = Date.now();
  };

  #writeFailed = (cause: unknown): never => {
    this.#writes--;
    throw this.#fail(cause, "write");
  };

  #onChunk = (chunk: Uint8Array | null): void => {
    // The common case first, without wrapping the chunk: a holder's read waits for it.
    const reader = this.#reader;
    const phase = this.phase;
    if (
      chunk !== null && reader !== null && phase !== "closed" && phase !== "idle" &&
      phase !== "reserved"
    ) {
      this.#reading = false;
      this.#reader = null;
      this.received += chunk.length;
      this.lastActiveAt = Date.now();
      reader.resolve(chunk);
      this.#ensureReading();
      return;
    }
    this.#arrive(chunk === null ? EOF : { chunk });
  };

  #onReadError = (error: unknown): void => {
    // Our own close() ends the pending read: that is no failure of the connection.
    if (this.phase === "closed") return;
    this.#arrive({ error: this.#fail(error, "read") });
  };

  closeWrite(): Promise<void> {
    this.reusable = false;
    return this.#writeTail.then(() => this.transport.closeWrite()).catch((cause) => {
      throw this.#fail(cause, "half-close");
    });
  }

  #ensureReading(): void {
    if (this.#reading || this.#ended || this.#failure !== undefined) return;
    if (this.#unread !== undefined) return;
    this.#reading = true;
    let pending: Promise<Uint8Array | null>;
    try {
      if (this.#readsTo) {
        (this.transport as unknown as ReadsTo).readTo(this.#onChunk, this.#onReadError);
        return;
      }
      pending = this.transport.read();
    } catch (error) {
      pending = Promise.reject(error);
    }
    pending.then(this.#onChunk, this.#onReadError);
  }

  #arrive(outcome: ReadOutcome): void {
    this.#reading = false;
    if (this.phase === "closed") return;
    if ("eof" in outcome) {
      this.#ended = true;
      this.reusable = false;
    }
    if (this.phase === "idle" || this.phase === "reserved") {
      const reason: BreakReason = "chunk" in outcome
        ? "unsolicited-bytes"
        : "eof" in outcome
        ? "eof"
        : "error";
      this.#owner.onIdleBreak(this, reason);
      return;
    }
    if ("chunk" in outcome) {
      this.received += outcome.chunk.length;
      this.lastActiveAt = Date.now();
    }
    const reader = this.#reader;
    if (reader === null) {
      (this.#unread ??= []).push(outcome);
      return;
    }
    this.#reader = null;
    if ("chunk" in outcome) {
      reader.resolve(outcome.chunk);
      this.#ensureReading();
    } else if ("eof" in outcome) reader.resolve(null);
    else reader.reject(outcome.error);
  }

  /** The oldest unread outcome, if any; the queue is dropped once empty. */
  #takeUnread(): ReadOutcome | undefined {
    const unread = this.#unread;
    if (unread === undefined) return undefined;
    const outcome = unread.shift();
    if (unread.length === 0) this.#unread = undefined;
    return outcome;
  }

  #settle(outcome: ReadOutcome): Promise<Uint8Array | null> {
    if ("chunk" in outcome) return Promise.resolve(outcome.chunk);
    if ("eof" in outcome) return Promise.resolve(null);
    return Promise.reject(outcome.error);
  }

  /** Records the connection's first failure and returns the error for `during`. */
  #fail(cause: unknown, during: string): PoolError {
    this.reusable = false;
    if (cause instanceof PoolError) return cause;
    this.#failure ??= { cause, during };
    return this.#error(during);
  }

  /** The error for an operation on a failed connection, naming both. */
  #error(operation: string): PoolError {
    const { cause, during } = this.#failure!;
    const detail = cause instanceof Error ? cause.message : String(cause);
    const when = during === operation ? "" : ` (it failed earlier, during ${during})`;
    return new PoolError(
      "CONNECTION_LOST",
      `Cannot ${operation} the connection to "${this.address.key}": ${detail}${when}`,
      {
        address: this.address.key,
        cause,
        operation,
        reused: this.uses > 1,
        received: this.received,
      },
    );
  }
}

const EOF: ReadOutcome = { eof: true };

function ignore(): void {}
