// Timers the pool owns. Each runtime unrefs a timer its own way: Node's and
// Bun's timers are objects with unref(), Deno's are numbers for
// Deno.unrefTimer().

export type TimerHandle = ReturnType<typeof setTimeout>;

/**
 * The longest delay every runtime's setTimeout honours, 2^31-1 ms (about
 * 24.8 days). Above it Deno, Bun and Node fire after 1 ms instead (Node and
 * Bun print a TimeoutOverflowWarning each time).
 */
export const MAX_TIMER_DELAY = 2 ** 31 - 1;

/**
 * Calls `callback` once after `ms` milliseconds, for any `ms` up to
 * `Infinity` (never). The timer keeps the process alive, as setTimeout's do.
 * Cancel it with clearTimeout.
 *
 * A delay above {@linkcode MAX_TIMER_DELAY} runs as an interval of equal
 * steps no longer than that (two steps of about 12.4 days for 2^31 ms), and
 * `Infinity` as an interval that never calls back: an interval keeps one
 * handle for its whole life, so clearTimeout cancels it at every step
 * (timeouts and intervals share one list of handles on every runtime).
 */
export function longTimeout(callback: () => void, ms: number): TimerHandle {
  if (!(ms > MAX_TIMER_DELAY)) return setTimeout(callback, ms);
  if (ms === Infinity) return setInterval(() => {}, MAX_TIMER_DELAY);
  const steps = Math.ceil(ms / MAX_TIMER_DELAY);
  let left = steps;
  const handle = setInterval(() => {
    if (--left > 0) return;
    clearInterval(handle);
    callback();
  }, Math.min(MAX_TIMER_DELAY, Math.ceil(ms / steps)));
  return handle;
}

/** A {@linkcode longTimeout} that does not keep the process alive. */
export function unrefTimeout(callback: () => void, ms: number): TimerHandle {
  const handle = longTimeout(callback, ms);
  setRef(handle, false);
  return handle;
}

/**
 * Keeps the process alive while something waits, by ref'ing one long-lived
 * interval instead of creating a timer each time: toggling a ref is far
 * cheaper than a setInterval/clearInterval pair per acquire. Still, a ref
 * and an unref per acquire cost as much as all the rest of one on Bun
 * (native calls), and another acquire usually follows: so `release` lets
 * the interval go only if nothing held it again within RELEASE_DELAY_MS
 * (an unref'd timer checks). The process may thus outlive its last wait by
 * that long; it is kept alive during every wait, as before.
 */
export class KeepAlive {
  #handle: ReturnType<typeof setInterval> | undefined;
  #held = false;
  /** Whether the interval is ref'd now (held, or released and not yet let go). */
  #refed = false;
  #releaseTimer: TimerHandle | undefined;
  #closed = false;

  hold(): void {
    // Closed is final: acquires still settling after the pool closed must
    // not start an interval that nothing would clear.
    if (this.#held || this.#closed) return;
    this.#held = true;
    if (this.#refed) return;
    this.#refed = true;
    if (this.#handle === undefined) this.#handle = setInterval(() => {}, 1 << 30);
    else setRef(this.#handle, true);
  }

  release(): void {
    if (!this.#held) return;
    this.#held = false;
    this.#releaseTimer ??= unrefTimeout(this.#letGo, RELEASE_DELAY_MS);
  }

  close(): void {
    if (this.#handle !== undefined) clearInterval(this.#handle);
    clearTimeout(this.#releaseTimer);
    this.#handle = this.#releaseTimer = undefined;
    this.#held = this.#refed = false;
    this.#closed = true;
  }

  // Bound once: no closure per release.
  #letGo = (): void => {
    this.#releaseTimer = undefined;
    if (this.#held || !this.#refed || this.#handle === undefined) return;
    this.#refed = false;
    setRef(this.#handle, false);
  };
}

/** How long a released KeepAlive stays ref'd in case it is held again. */
const RELEASE_DELAY_MS = 25;

function setRef(handle: unknown, ref: boolean): void {
  if (typeof handle === "object" && handle !== null && "ref" in handle) {
    const timer = handle as { ref(): void; unref(): void };
    if (ref) timer.ref();
    else timer.unref();
  } else {
    const deno = (globalThis as {
      Deno?: { refTimer?(id: unknown): void; unrefTimer?(id: unknown): void };
    }).Deno;
    if (ref) deno?.refTimer?.(handle);
    else deno?.unrefTimer?.(handle);
  }
}
