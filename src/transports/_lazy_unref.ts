// A connection's ref()/unref() for the Node, Bun and Deno transports, with
// the unref deferred. The pool unrefs a connection each time it goes idle
// and refs it again at each hand-out; natively, each call on a socket
// whose memory is cold (one of thousands of idle ones) measured about
// 0.15-0.2 µs on Node and Bun and 0.8 µs on Deno, a large part of an
// acquire among 1,000 addresses (bench/scale.ts). An idle connection is
// usually borrowed again soon, so unref() only marks it, and a sweep that
// an unref'd timer runs every SWEEP_MS unrefs, natively, the connections
// still marked that were already marked at the sweep before. ref() of a
// connection still marked only unmarks it. A connection that goes idle may
// thus keep the process alive for up to 2 × SWEEP_MS longer than the call
// says; one borrowed or otherwise ref'd is ref'd natively at once, always.
import { unrefTimeout } from "../_timers.ts";

/** How often marked connections are swept; the longest they stay ref'd is twice this. */
export const SWEEP_MS = 25;

let marked: LazyRef[] = [];
/** Connections in `marked` still open: with none, the sweep timer is cleared at once. */
let markedOpen = 0;
let sweeps = 0;
let sweepTimer: ReturnType<typeof setTimeout> | undefined;

/**
 * The base of a transport connection: its ref() and unref(), and what the
 * socket natively is. A base class rather than a field, so that an acquire
 * touches one object of the connection's, not two.
 */
export abstract class LazyRef {
  /** What the last call asked for. */
  #wanted = true;
  /** What the socket natively is (a new socket is ref'd). */
  #refed = true;
  #refsStopped = false;
  /** In `marked`, and since which sweep. */
  #queued = false;
  #since = 0;

  /** Refs (`true`) or unrefs the socket natively. */
  protected abstract nativeRef(refed: boolean): void;

  ref(): void {
    this.#wanted = true;
    if (this.#refed || this.#refsStopped) return;
    this.#refed = true;
    this.nativeRef(true);
  }

  unref(): void {
    this.#wanted = false;
    if (!this.#refed || this.#refsStopped) return;
    this.#since = sweeps;
    if (this.#queued) return;
    this.#queued = true;
    markedOpen++;
    marked.push(this);
    sweepTimer ??= unrefTimeout(sweep, SWEEP_MS);
  }

  /** The socket is closed (or closing): nothing is called on it any more. */
  protected stopRefs(): void {
    this.#refsStopped = true;
    if (!this.#queued) return;
    this.#queued = false;
    // The last open one marked: no timer is left behind a closed pool.
    if (--markedOpen > 0) return;
    clearTimeout(sweepTimer);
    sweepTimer = undefined;
    marked = [];
  }

  /** Called by the sweep: true if it stays marked until the next one. */
  sweepUnref(): boolean {
    if (!this.#queued) return false; // closed meanwhile
    if (!this.#wanted && this.#since === sweeps) return true; // marked since the last sweep: not yet
    this.#queued = false;
    markedOpen--;
    if (this.#wanted) return false;
    this.#refed = false;
    try {
      this.nativeRef(false);
    } catch {
      // A socket the runtime already let go of: nothing to unref.
    }
    return false;
  }
}

function sweep(): void {
  sweepTimer = undefined;
  const due = marked;
  marked = [];
  for (const connection of due) if (connection.sweepUnref()) marked.push(connection);
  sweeps++;
  if (marked.length > 0) sweepTimer = unrefTimeout(sweep, SWEEP_MS);
}
