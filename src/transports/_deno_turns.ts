// The two ways the Deno settle turns wait besides their pings.

const RESOLVED: Promise<void> = Promise.resolve();

/**
 * The fallback without a socket pair: two timers in a row. A single timer
 * can fire before the reactor has run (the contract caught 1 miss in 300,
 * and 472 of 600 simultaneous EOFs left behind); two never missed.
 */
export function timerTurns(): Promise<void> {
  const timer = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 0));
  return timer().then(timer);
}

/**
 * Resolves in the check phase (setImmediate) of this turn of the event loop:
 * after the poll phase's callbacks, their process.nextTick callbacks and
 * every microtask they queued.
 */
export function nextCheckPhase(): Promise<void> {
  const schedule = (globalThis as unknown as { setImmediate?: (callback: () => void) => unknown })
    .setImmediate;
  if (schedule === undefined) return RESOLVED;
  return new Promise((resolve) => schedule(resolve));
}
