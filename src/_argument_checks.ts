// Checks of the arguments ConnectionPool's methods take that are not policy
// (options.ts checks those): wrong shapes are TypeErrors and values out of
// range RangeErrors, thrown before the pool changes anything.
import type { PoolEvent } from "./events.ts";
import { show } from "./options.ts";
import type { Transport } from "./transports/transport.ts";

/** The constructor options that are not policy: how to connect and whom to tell. */
export interface PoolHooks {
  transport?: Transport;
  onEvent?: (event: PoolEvent) => void;
}

/** Checks the constructor's options object and its transport and event hook. */
export function checkPoolHooks(options: PoolHooks): PoolHooks {
  if (options === null || typeof options !== "object") {
    throw new TypeError(`Invalid pool options: expected an object, got ${typeof options}`);
  }
  const { transport, onEvent } = options;
  if (transport !== undefined) {
    if (
      transport === null || typeof transport !== "object" ||
      typeof transport.connect !== "function" || typeof transport.settle !== "function"
    ) {
      throw new TypeError(
        "Invalid pool option transport: expected an object with connect() and settle()",
      );
    }
  }
  if (onEvent !== undefined && typeof onEvent !== "function") {
    throw new TypeError(`Invalid pool option onEvent: expected a function, got ${show(onEvent)}`);
  }
  return { transport, onEvent };
}

/** Checks acquire()'s options and returns its abort signal, if any. */
export function checkSignal(options: { signal?: AbortSignal }): AbortSignal | undefined {
  if (options === null || typeof options !== "object") {
    throw new TypeError(`Invalid acquire options: expected an object, got ${typeof options}`);
  }
  const { signal } = options;
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new TypeError("Invalid acquire option signal: expected an AbortSignal");
  }
  return signal;
}

/** Checks close()'s options and returns its timeout in ms, if any. */
export function checkCloseTimeout(options: { timeout?: number }): number | undefined {
  if (options === null || typeof options !== "object") {
    throw new TypeError(`Invalid close options: expected an object, got ${typeof options}`);
  }
  const { timeout } = options;
  if (timeout === undefined) return undefined;
  if (typeof timeout !== "number") {
    throw new TypeError(`Invalid close option timeout: expected a number, got ${typeof timeout}`);
  }
  if (Number.isNaN(timeout) || timeout < 0) {
    throw new RangeError(
      `Invalid close option timeout: expected milliseconds >= 0, got ${timeout}`,
    );
  }
  return timeout;
}
