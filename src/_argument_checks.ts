// Checks of the arguments ConnectionPool's methods take, other than policy
// (options.ts checks that): wrong shapes are TypeErrors, values out of range
// RangeErrors, and a connection the pool did not lend is NOT_BORROWED. All
// throw before the pool changes anything.
import { Lease, type LeaseOwner, type UpstreamConnection } from "./connection.ts";
import { PoolError } from "./errors.ts";
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

/**
 * Checks a connection given back to `retain` or `release` (the `verb`): it
 * must be a lease of `owner`'s that is still out.
 */
export function checkBorrowed<State>(
  connection: UpstreamConnection<State>,
  owner: LeaseOwner,
  verb: string,
): Lease {
  if (connection === null || typeof connection !== "object") {
    throw new TypeError(
      `Cannot ${verb}: expected a connection from acquire(), got ${typeof connection}`,
    );
  }
  if (!(connection instanceof Lease) || connection.owner !== owner) {
    throw new PoolError(
      "NOT_BORROWED",
      `Cannot ${verb}: this connection was not handed out by this pool`,
    );
  }
  if (!connection.active || connection.socket.phase !== "borrowed") {
    throw new PoolError(
      "NOT_BORROWED",
      `Cannot ${verb} the connection to "${connection.address.key}": it was already given back`,
      { address: connection.address.key },
    );
  }
  return connection;
}

/** Checks exchange()'s function and options. */
export function checkExchange(
  run: unknown,
  options: { idempotent?: boolean; signal?: AbortSignal; idleTimeout?: number },
): { idempotent: boolean; signal: AbortSignal | undefined; idleTimeout: number | undefined } {
  if (typeof run !== "function") {
    throw new TypeError(`Invalid exchange: expected a function, got ${show(run)}`);
  }
  if (options === null || typeof options !== "object") {
    throw new TypeError(`Invalid exchange options: expected an object, got ${show(options)}`);
  }
  const { idempotent = false } = options;
  if (typeof idempotent !== "boolean") {
    throw new TypeError(
      `Invalid exchange option idempotent: expected a boolean, got ${show(idempotent)}`,
    );
  }
  return {
    idempotent,
    signal: checkSignal(options),
    idleTimeout: checkRetainOptions(options, "exchange"),
  };
}

/** Checks retain()'s options and returns the idle deadline asked for, if any. */
export function checkRetainOptions(
  options: { idleTimeout?: number },
  what = "retain",
): number | undefined {
  if (options === null || typeof options !== "object") {
    throw new TypeError(`Invalid ${what} options: expected an object, got ${show(options)}`);
  }
  const { idleTimeout } = options;
  if (idleTimeout === undefined) return undefined;
  if (typeof idleTimeout !== "number") {
    throw new TypeError(
      `Invalid ${what} option idleTimeout: expected a number, got ${show(idleTimeout)}`,
    );
  }
  if (Number.isNaN(idleTimeout) || idleTimeout < 0) {
    throw new RangeError(
      `Invalid ${what} option idleTimeout: expected milliseconds >= 0, got ${idleTimeout}`,
    );
  }
  return idleTimeout;
}
