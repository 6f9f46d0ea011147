// The receive side that the Node and Bun transports share. Both runtimes
// push chunks through callbacks; the pool pulls them with read(). A chunk
// that arrives with no read pending is queued, and past HIGH_WATER_MARK the
// socket is paused (the kernel's buffer holds the rest). A pending read
// always has a resumed socket under it: a paused Bun socket does not see a
// FIN, and Node holds 'end' back behind data until the socket resumes.

/** What the queue needs of a socket to apply backpressure. */
export interface FlowControl {
  pause(): void;
  resume(): void;
}

const HIGH_WATER_MARK = 64 * 1024;
const RESOLVED_NULL: Promise<null> = Promise.resolve(null);

export class ReceiveQueue {
  readonly #flow: FlowControl;
  #chunks: Uint8Array[] = [];
  #bytes = 0;
  #paused = false;
  /** The peer's FIN was seen. */
  #ended = false;
  /** The socket closed, or was closed. */
  #closed = false;
  #error: Error | undefined;
  #resolve: ((chunk: Uint8Array | null) => void) | undefined;
  #reject: ((error: unknown) => void) | undefined;
  /** Set by readTo(): the pending read's outcome goes to these, not to a promise. */
  #sink = false;

  constructor(flow: FlowControl) {
    this.#flow = flow;
  }

  /** The first failure, if the connection failed. */
  get error(): Error | undefined {
    return this.#error;
  }

  /** Queued chunks first; then null after a FIN or close, or the failure. */
  read(): Promise<Uint8Array | null> {
    const chunk = this.#chunks.shift();
    if (chunk !== undefined) {
      this.#bytes -= chunk.length;
      if (this.#paused && this.#bytes < HIGH_WATER_MARK) this.#resume();
      return Promise.resolve(chunk);
    }
    if (this.#error !== undefined) return Promise.reject(this.#error);
    if (this.#ended || this.#closed) return Promise.resolve(null);
    if (this.#paused) this.#resume();
    return new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
  }

  /**
   * As read(), but the outcome goes to the callbacks: a chunk that arrives
   * later synchronously from the socket's event (no promise in between),
   * anything known now or an end or failure later through a promise turn,
   * so that neither is ever called during readTo() or close().
   */
  readTo(
    onChunk: (chunk: Uint8Array | null) => void,
    onError: (error: unknown) => void,
  ): void {
    if (
      this.#chunks.length > 0 || this.#error !== undefined || this.#ended || this.#closed
    ) {
      this.read().then(onChunk, onError);
      return;
    }
    if (this.#paused) this.#resume();
    this.#resolve = onChunk;
    this.#reject = onError;
    this.#sink = true;
  }

  /** Bytes arrived: to the pending read, else into the queue. */
  push(chunk: Uint8Array): void {
    if (this.#closed || chunk.length === 0) return;
    const resolve = this.#resolve;
    if (resolve !== undefined) {
      this.#resolve = this.#reject = undefined;
      this.#sink = false;
      resolve(chunk);
      return;
    }
    this.#chunks.push(chunk);
    this.#bytes += chunk.length;
    if (this.#bytes >= HIGH_WATER_MARK && !this.#paused) {
      this.#paused = true;
      this.#flow.pause();
    }
  }

  /** The peer's FIN: a pending read (so the queue is empty) gets null. */
  end(): void {
    this.#ended = true;
    this.#settle();
  }

  /** The connection failed: a pending read rejects, and so do reads after the queue. */
  fail(error: Error): void {
    this.#error ??= error;
    this.#settle();
  }

  /**
   * The socket is closed: a pending read settles (null, or the failure).
   * `discard` drops queued bytes too (a local close: nobody will read them).
   */
  close(discard: boolean): void {
    this.#closed = true;
    if (discard) {
      this.#chunks = [];
      this.#bytes = 0;
    }
    this.#settle();
  }

  #resume(): void {
    this.#paused = false;
    this.#flow.resume();
  }

  #settle(): void {
    const resolve = this.#resolve;
    const reject = this.#reject;
    if (resolve === undefined) return;
    if (this.#error === undefined && !this.#ended && !this.#closed) return;
    this.#resolve = this.#reject = undefined;
    if (this.#sink) {
      // Callbacks are called a turn later, as a promise's would be.
      this.#sink = false;
      const error = this.#error;
      if (error !== undefined) Promise.reject(error).then(undefined, reject);
      else RESOLVED_NULL.then(resolve);
      return;
    }
    if (this.#error !== undefined) reject!(this.#error);
    else resolve(null);
  }
}
