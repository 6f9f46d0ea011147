/**
 * The pool's policy options: limits, timeouts, lifetimes, order. Each is
 * checked once, when the pool is created, with an error that names it.
 *
 * @module
 */
import { type Address, resolveAddress } from "./address.ts";
import { checkKnownKeys, PER_ADDRESS_KEYS } from "./_known_keys.ts";
import { show } from "./_show.ts";

/**
 * Options that can differ per upstream address (see
 * {@linkcode PoolPolicyOptions.perAddress}).
 *
 * @example A small pool for one slow upstream
 * ```ts
 * import type { AddressPolicyOptions } from "@upstream/pool";
 * const slow: AddressPolicyOptions = { maxPerHost: 2, connectTimeout: 30_000 };
 * ```
 */
export interface AddressPolicyOptions {
  /**
   * Connections to one address at most, counting connecting, borrowed and
   * idle ones (Go's `MaxConnsPerHost`). Acquires past it wait in line.
   *
   * @default {Infinity}
   */
  maxPerHost?: number;
  /**
   * Idle connections kept per address at most (Go's `MaxIdleConnsPerHost`,
   * Node's `maxFreeSockets`); a connection retained past it is closed.
   *
   * @default {Infinity}
   */
  maxIdlePerHost?: number;
  /**
   * Idle connections to keep ready per address once it has been used, or
   * after `warm()`; they are refilled after evictions, backing off while
   * connects fail (HikariCP's `minimumIdle`). `idleTimeout` never closes
   * connections below this count.
   *
   * @default {0}
   */
  minIdlePerHost?: number;
  /**
   * Milliseconds a connection may stay idle before it is closed (Go's
   * `IdleConnTimeout`, HikariCP's `idleTimeout`).
   *
   * @default {60000}
   */
  idleTimeout?: number;
  /**
   * Milliseconds a connection may live. An older one is closed when it next
   * becomes idle, or while it is idle; never while borrowed. Each
   * connection's lifetime is shortened by a random jitter of up to 2.5%, so
   * a pool opened at once does not expire at once (HikariCP's `maxLifetime`).
   *
   * @default {Infinity}
   */
  maxLifetime?: number;
  /**
   * Milliseconds a connect may take; then it fails with `CONNECT_TIMEOUT`
   * and a socket that opens later is closed (undici's `connect.timeout`).
   *
   * @default {10000}
   */
  connectTimeout?: number;
  /**
   * Acquires that may wait in line per address; past it `acquire` rejects
   * at once with `QUEUE_FULL`, so a flood cannot exhaust memory
   * (generic-pool's `maxWaitingClients`).
   *
   * @default {Infinity}
   */
  maxWaiting?: number;
}

/** An address with options of its own. */
export interface PerAddressOptions extends AddressPolicyOptions {
  /** The upstream these options apply to. */
  address: Address;
}

/**
 * Pool-wide policy. Every {@linkcode AddressPolicyOptions} field here is the
 * default for addresses without an override in `perAddress`.
 *
 * @example
 * ```ts
 * import { ConnectionPool } from "@upstream/pool";
 * const pool = new ConnectionPool({
 *   maxPerHost: 8,
 *   maxTotal: 64,
 *   idleTimeout: 30_000,
 *   acquireTimeout: 5_000,
 *   perAddress: [{ address: { hostname: "10.0.0.9", port: 6379 }, maxPerHost: 2 }],
 * });
 * await pool.close();
 * ```
 */
export interface PoolPolicyOptions extends AddressPolicyOptions {
  /**
   * Connections across all addresses at most (Node's `maxTotalSockets`).
   * When it is reached, the least recently used idle connection of an
   * address nobody waits for is closed to make room.
   *
   * @default {Infinity}
   */
  maxTotal?: number;
  /**
   * Idle connections across all addresses at most (Go's `MaxIdleConns`);
   * past it the least recently used idle connection anywhere is closed.
   *
   * @default {Infinity}
   */
  maxIdle?: number;
  /**
   * Milliseconds an `acquire` may take in all, waiting in line and
   * connecting included; then it fails with `ACQUIRE_TIMEOUT` (HikariCP's
   * `connectionTimeout`, generic-pool's `acquireTimeoutMillis`).
   *
   * @default {30000}
   */
  acquireTimeout?: number;
  /**
   * Which idle connection `acquire` hands out: the most recently retained
   * (`"lifo"`, as Go and Node do: fewer connections stay warm) or the least
   * (`"fifo"`: load spread over all of them).
   *
   * @default {"lifo"}
   */
  order?: "lifo" | "fifo";
  /**
   * Milliseconds a connection may stay borrowed before the pool reports it
   * as a probable leak, with the stack of the `acquire` that took it,
   * through `onEvent` (HikariCP's `leakDetectionThreshold`). It is not
   * closed. Capturing stacks costs a little on every acquire, so it is off
   * by default.
   *
   * @default {Infinity}
   */
  leakTimeout?: number;
  /** Options of particular addresses, overriding the defaults above. */
  perAddress?: readonly PerAddressOptions[];
}

/** Per-address policy after defaults and overrides, all fields set. */
export interface AddressPolicy {
  maxPerHost: number;
  maxIdlePerHost: number;
  minIdlePerHost: number;
  idleTimeout: number;
  maxLifetime: number;
  connectTimeout: number;
  maxWaiting: number;
}

/** Pool-wide policy after defaults, all fields set. */
export interface PoolPolicy {
  maxTotal: number;
  maxIdle: number;
  acquireTimeout: number;
  order: "lifo" | "fifo";
  leakTimeout: number;
  defaults: AddressPolicy;
  perAddress: Map<string, AddressPolicy>;
}

const ADDRESS_DEFAULTS: AddressPolicy = {
  maxPerHost: Infinity,
  maxIdlePerHost: Infinity,
  minIdlePerHost: 0,
  idleTimeout: 60_000,
  maxLifetime: Infinity,
  connectTimeout: 10_000,
  maxWaiting: Infinity,
};

type Kind = "count>=1" | "count>=0" | "ms";

const ADDRESS_FIELDS: Record<keyof AddressPolicy, Kind> = {
  maxPerHost: "count>=1",
  maxIdlePerHost: "count>=0",
  minIdlePerHost: "count>=0",
  idleTimeout: "ms",
  maxLifetime: "ms",
  connectTimeout: "ms",
  maxWaiting: "count>=0",
};

function checkNumber(option: string, value: unknown, kind: Kind): number {
  if (typeof value !== "number") {
    throw new TypeError(`Invalid pool option ${option}: expected a number, got ${show(value)}`);
  }
  const count = kind !== "ms";
  const min = kind === "count>=1" ? 1 : 0;
  if (
    Number.isNaN(value) || value < min ||
    (count && value !== Infinity && !Number.isInteger(value)) ||
    (kind === "ms" && value === 0)
  ) {
    const expected = count
      ? `an integer of at least ${min}, or Infinity`
      : "a positive number of milliseconds, or Infinity";
    throw new RangeError(`Invalid pool option ${option}: expected ${expected}, got ${show(value)}`);
  }
  return value;
}

/** Options as read once from the caller's object: own properties only, values unchecked. */
export type Snapshot<T> = { [K in keyof T]?: unknown };

function resolveAddressPolicy(
  options: Snapshot<AddressPolicyOptions>,
  base: AddressPolicy,
  prefix: string,
): AddressPolicy {
  const policy = { ...base };
  for (const field of Object.keys(ADDRESS_FIELDS) as Array<keyof AddressPolicy>) {
    const value = options[field];
    if (value !== undefined) {
      policy[field] = checkNumber(prefix + field, value, ADDRESS_FIELDS[field]);
    }
  }
  for (const limit of ["maxPerHost", "maxIdlePerHost"] as const) {
    if (policy.minIdlePerHost > policy[limit]) {
      throw new RangeError(
        `Invalid pool option ${prefix}minIdlePerHost: ${policy.minIdlePerHost} exceeds ${limit} ${
          policy[limit]
        }`,
      );
    }
  }
  return policy;
}

/**
 * Checks the policy options and fills in the defaults. `options` is a
 * snapshot of the caller's object (see `checkKnownKeys`), whose names are
 * already known to be options.
 *
 * @throws {TypeError} If an option has the wrong type.
 * @throws {RangeError} If an option is out of range.
 */
export function resolvePolicy(options: Snapshot<PoolPolicyOptions>): PoolPolicy {
  const defaults = resolveAddressPolicy(options, ADDRESS_DEFAULTS, "");
  const order = options.order ?? "lifo";
  if (order !== "lifo" && order !== "fifo") {
    throw new TypeError(
      `Invalid pool option order: expected "lifo" or "fifo", got ${show(order)}`,
    );
  }
  const perAddress = new Map<string, AddressPolicy>();
  const given = options.perAddress ?? [];
  if (!Array.isArray(given)) {
    throw new TypeError(
      `Invalid pool option perAddress: expected an array of { address, ... }, got ${show(given)}`,
    );
  }
  for (const [i, entry] of [...given].entries()) {
    const override = checkKnownKeys(entry, PER_ADDRESS_KEYS, `pool option perAddress[${i}]`);
    let key: string;
    try {
      key = resolveAddress(override.address as Address).key;
    } catch (error) {
      const ErrorType = error instanceof RangeError ? RangeError : TypeError;
      throw new ErrorType(
        `Invalid pool option perAddress[${i}].address: ${(error as Error).message}`,
      );
    }
    perAddress.set(key, resolveAddressPolicy(override, defaults, `perAddress[${i}].`));
  }
  return {
    maxTotal: options.maxTotal === undefined
      ? Infinity
      : checkNumber("maxTotal", options.maxTotal, "count>=1"),
    maxIdle: options.maxIdle === undefined
      ? Infinity
      : checkNumber("maxIdle", options.maxIdle, "count>=0"),
    acquireTimeout: options.acquireTimeout === undefined
      ? 30_000
      : checkNumber("acquireTimeout", options.acquireTimeout, "ms"),
    order,
    leakTimeout: options.leakTimeout === undefined
      ? Infinity
      : checkNumber("leakTimeout", options.leakTimeout, "ms"),
    defaults,
    perAddress,
  };
}
