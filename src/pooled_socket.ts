// One transport connection as the pool sees it: where it is (idle, borrowed,
// closed) and where its bytes go.
//
// The socket keeps exactly one transport read pending for as long as it is
// open and has nothing unread. While the socket is idle, that read is the
// idle watch: whatever it yields (bytes, EOF, an error) means the connection
// is broken and it leaves the pool. When the socket is lent out, the same
// read carries on for the borrower; a chunk that arrives before the borrower
// asks waits here (one chunk of read-ahead, the rest stays in the transport),
// which is also how `retain` knows that bytes are left unread. Nothing is
// ever handed from one reader to another, so no chunk can be stranded.
import type { ResolvedAddress } from "./address.ts";
import { PoolError } from "./errors.ts";
import type { TransportConnection } from "./transports/transport.ts";

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

export type SocketState = "idle" | "borrowed" | "closed";

export class PooledSocket {
  readonly address: ResolvedAddress;
  readonly transport: TransportConnection;
  readonly createdAt: number;
  /** When the socket is to be closed for age (maxLifetime with jitter), or Infinity. */
  expiresAt = Infinity;
  /** When it last became idle. */
  idleSince = 0;
  /** How many settle turns the pool had started when it last became idle. */
  idleTurn = 0;
  state: SocketState = "borrowed";
  /** Bumped at every lend, so a stale handle can tell it is stale. */
  generation = 0;
  /** False once anything made the byte stream's position unknown or final. */
  reusable = true;

  #owner: SocketOwner;
  #reading = false;
  /** A read result that arrived while nobody was waiting for it. */
  #unread: ReadOutcome | null = null;
  #reader: PendingRead | null = null;
  #ended = false;
  #failure: unknown = undefined;
  #writes = 0;
  #writeTail: Promise<void> = Promise.resolve();

  constructor(address: ResolvedAddress, transport: TransportConnection, owner: SocketOwner) {
    this.address = address;
    this.transport = transport;
    this.#owner = owner;
    this.createdAt = Date.now();
  }

  /** True while bytes, EOF or an error wait in the socket unread. */
  get hasUnread(): boolean {
    return this.#unread !== null;
  }

  /** True while a write is still in progress. */
  get writing(): boolean {
    return this.#writes > 0;
  }

  /** Starts the idle watch: a read whose every outcome means "broken". */
  watchIdle(): void {
    this.state = "idle";
    this.idleSince = Date.now();
    this.transport.unref();
    this.#ensureReading();
  }

  /** Hands the socket to a borrower; the idle watch's read carries on for them. */
  lend(): void {
    this.#ensureReading();
    this.state = "borrowed";
    this.generation++;
    this.transport.ref();
  }

  close(): void {
    if (this.state === "closed") return;
    this.state = "closed";
    this.reusable = false;
    this.abandonRead(new PoolError("LEASE_ENDED", "The connection was closed"));
    this.transport.close();
  }

  /** Fails a borrower's read that is still waiting (the lease ended under it). */
  abandonRead(error: PoolError): void {
    const reader = this.#reader;
    if (reader === null) return;
    this.#reader = null;
    reader.reject(error);
  }

  /** The borrower's read: the next chunk, or null at EOF. */
  read(): Promise<Uint8Array | null> {
    if (this.#reader !== null) {
      return Promise.reject(
        new TypeError("Cannot read: another read on this connection is still pending"),
      );
    }
    const unread = this.#unread;
    if (unread !== null) {
      this.#unread = null;
      this.#ensureReading();
      return settleOutcome(unread);
    }
    if (this.#ended) return Promise.resolve(null);
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => {
      this.#reader = { resolve, reject };
      this.#ensureReading();
    });
  }

  /** Puts a chunk back in front, unread (a consumer went away before using it). */
  unshift(chunk: Uint8Array): void {
    this.#unread = { chunk };
  }

  write(chunk: Uint8Array): Promise<void> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    // Overlapping writes are serialised; the common case has none in flight.
    const done = ++this.#writes === 1
      ? this.transport.write(chunk).then(this.#wrote, this.#writeFailed)
      : this.#writeTail.then(() => this.transport.write(chunk)).then(
        this.#wrote,
        this.#writeFailed,
      );
    this.#writeTail = done;
    return done;
  }

  // Bound once per socket: no closures are allocated per write or read.
  #wrote = (): void => {
    this.#writes--;
  };

  #writeFailed = (cause: unknown): never => {
    this.#writes--;
    throw this.#fail(cause, "write");
  };

  #onChunk = (chunk: Uint8Array | null): void => {
    this.#arrive(chunk === null ? EOF : { chunk });
  };

  #onReadError = (error: unknown): void => {
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
    if (this.#unread !== null) return;
    this.#reading = true;
    this.transport.read().then(this.#onChunk, this.#onReadError);
  }

  #arrive(outcome: ReadOutcome): void {
    this.#reading = false;
    if ("eof" in outcome) {
      this.#ended = true;
      this.reusable = false;
    }
    if (this.state === "closed") return;
    if (this.state === "idle") {
      const reason: BreakReason = "chunk" in outcome
        ? "unsolicited-bytes"
        : "eof" in outcome
        ? "eof"
        : "error";
      this.#owner.onIdleBreak(this, reason);
      return;
    }
    const reader = this.#reader;
    if (reader === null) {
      this.#unread = outcome;
      return;
    }
    this.#reader = null;
    if ("chunk" in outcome) {
      reader.resolve(outcome.chunk);
      this.#ensureReading();
    } else if ("eof" in outcome) reader.resolve(null);
    else reader.reject(outcome.error);
  }

  #fail(cause: unknown, during: string): PoolError {
    this.reusable = false;
    if (this.#failure === undefined) {
      this.#failure = cause instanceof PoolError ? cause : new PoolError(
        "CONNECTION_LOST",
        `Connection to "${this.address.key}" failed during ${during}: ${
          cause instanceof Error ? cause.message : String(cause)
        }`,
        { address: this.address.key, cause },
      );
    }
    return this.#failure as PoolError;
  }
}

const EOF: ReadOutcome = { eof: true };

function settleOutcome(outcome: ReadOutcome): Promise<Uint8Array | null> {
  if ("chunk" in outcome) return Promise.resolve(outcome.chunk);
  if ("eof" in outcome) return Promise.resolve(null);
  return Promise.reject(outcome.error);
}
