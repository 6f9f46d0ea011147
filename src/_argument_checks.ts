// Checks of the arguments ConnectionPool's methods take, other than policy
// (options.ts checks that): wrong shapes are TypeErrors, values out of range
// RangeErrors, and a connection the pool did not lend is NOT_BORROWED. All
// throw before the pool changes anything.
import { Lease, type LeaseOwner, type UpstreamConnection } from "./connection.ts";
import { PoolError } from "./errors.ts";
import type { PoolEvent } from "./events.ts";
import type { PoolPolicyOptions, Snapshot } from "./options.ts";
import {
  ACQUIRE_OPTION_KEYS,
  checkKnownKeys,
  CLOSE_OPTION_KEYS,
  EXCHANGE_OPTION_KEYS,
  POOL_OPTION_KEYS,
  RETAIN_OPTION_KEYS,
} from "./_known_keys.ts";
import { show } from "./_show.ts";
import type { Transport } from "./transports/transport.ts";

/** The constructor options that are not policy: how to connect and whom to tell. */
export interface PoolHooks {
  transport?: Transport;
  onEvent?: (event: PoolEvent) => void;
}

/**
 * Checks the constructor's options object: a plain object with known keys
 * only, read once. Returns the transport and event hook, checked, and the
 * snapshot for `resolvePolicy` to check the policy from.
 */
export function checkPoolHooks(
  // deno-lint-ignore no-explicit-any -- the connections' state type does not matter here
  options: PoolHooks & PoolPolicyOptions<any>,
  // deno-lint-ignore no-explicit-any -- likewise
): PoolHooks & { policy: Snapshot<PoolPolicyOptions<any>> } {
  const snapshot = checkKnownKeys(options, POOL_OPTION_KEYS, "pool options");
  const transport = snapshot.transport as Transport | undefined;
  const onEvent = snapshot.onEvent;
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
  return { transport, onEvent: onEvent as PoolHooks["onEvent"], policy: snapshot };
}

/** Checks acquire()'s options and returns its abort signal, if any. */
export function checkSignal(options: { signal?: AbortSignal }): AbortSignal | undefined {
  const { signal } = checkKnownKeys(options, ACQUIRE_OPTION_KEYS, "acquire options");
  return signalOption(signal, "acquire");
}

function signalOption(signal: unknown, what: string): AbortSignal | undefined {
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new TypeError(
      `Invalid ${what} option signal: expected an AbortSignal, got ${show(signal)}`,
    );
  }
  return signal;
}

/** Checks close()'s options and returns its timeout in ms, if any. */
export function checkCloseTimeout(options: { timeout?: number }): number | undefined {
  const { timeout } = checkKnownKeys(options, CLOSE_OPTION_KEYS, "close options");
  if (timeout === undefined) return undefined;
  if (typeof timeout !== "number") {
    throw new TypeError(`Invalid close option timeout: expected a number, got ${show(timeout)}`);
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
      `Cannot ${verb}: expected a connection from acquire(), got ${show(connection)}`,
    );
  }
  if (!(connection instanceof Lease) || connection.owner !== owner) {
    throw new PoolError(
      "NOT_BORROWED",
      `Cannot ${verb}: this connection was not handed out by this pool`,
      { operation: verb },
    );
  }
  if (!connection.active || connection.socket.phase !== "borrowed") {
    throw new PoolError(
      "NOT_BORROWED",
      `Cannot ${verb} the connection to "${connection.address.key}": it was already given back`,
      { address: connection.address.key, operation: verb },
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
  const snapshot = checkKnownKeys(options, EXCHANGE_OPTION_KEYS, "exchange options");
  const { idempotent = false } = snapshot;
  if (typeof idempotent !== "boolean") {
    throw new TypeError(
      `Invalid exchange option idempotent: expected a boolean, got ${show(idempotent)}`,
    );
  }
  return {
    idempotent,
    signal: signalOption(snapshot.signal, "exchange"),
    idleTimeout: idleTimeoutOption(snapshot.idleTimeout, "exchange"),
  };
}

/** Checks retain()'s options and returns the idle deadline asked for, if any. */
export function checkRetainOptions(options: { idleTimeout?: number }): number | undefined {
  const { idleTimeout } = checkKnownKeys(options, RETAIN_OPTION_KEYS, "retain options");
  return idleTimeoutOption(idleTimeout, "retain");
}

function idleTimeoutOption(idleTimeout: unknown, what: string): number | undefined {
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
