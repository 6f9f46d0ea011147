// The global timer functions, for tests that watch every timer the pool
// sets (the model and property tests): the real ones, kept before any test
// replaces them, and the globals to replace.

export type TimerCallback = (...args: unknown[]) => void;
export type SetTimer = (callback: TimerCallback, ms?: number, ...args: unknown[]) => unknown;
export type ClearTimer = (handle: unknown) => void;
export interface TimerGlobals {
  setTimeout: SetTimer;
  clearTimeout: ClearTimer;
  setInterval: SetTimer;
  clearInterval: ClearTimer;
}

/** `globalThis` as the place the timer functions live (replace them here). */
export const timerGlobals = globalThis as unknown as TimerGlobals;

/** The runtime's own timer functions, as they were when this module loaded. */
export const real: TimerGlobals = {
  setTimeout: timerGlobals.setTimeout,
  clearTimeout: timerGlobals.clearTimeout,
  setInterval: timerGlobals.setInterval,
  clearInterval: timerGlobals.clearInterval,
};
