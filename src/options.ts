/**
 * The pool's policy options: limits, timeouts, lifetimes, order. Each is
 * checked once, when the pool is created, with an error that names it.
 *
 * @module
 */
import { type Address, resolveAddress } from "./address.ts";
import { checkKnownKeys, PER_ADDRESS_KEYS } from "./_known_keys.ts";
import { show } from "./_show.ts";
import type { ConnectionState, UpstreamConnection } from "./connection.ts";
import { type ConnectionHooks, resolveHooks } from "./_hook_options.ts";

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
export interface AddressPolicyOptions<State = ConnectionState> {
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
  /**
   * Runs once on every newly opened connection before the pool counts it as
   * ready (before it goes to a waiter or joins the idle list), whoever opened
   * it: `acquire`, `add`, `warm` or `minIdlePerHost`. The place to
   * authenticate, select a database, and fill `connection.state`. It counts
   * against `connectTimeout`. If it throws, or leaves unread bytes or a
   * half-closed connection behind, the connection is closed and the connect
   * fails with `SETUP_FAILED` (the thrown error as `cause`), like any
   * connect error (pgx's `AfterConnect`, HikariCP's `connectionInitSql`).
   *
   * @default {undefined}
   */
  setup?: (connection: UpstreamConnection<State>) => void | Promise<void>;
  /**
   * Checks an idle connection before it is handed out, if it has been idle
   * for at least `validateAfter` ms: `true` keeps it, `false` or a throw
   * closes it and the acquire moves on to another idle connection or a new
   * one, without an error (pgx's `ShouldPing`, generic-pool's
   * `testOnBorrow`). It must leave nothing unread; it gets `connectTimeout`
   * ms, then it counts as `false`.
   *
   * @default {undefined}
   */
  validate?: (connection: UpstreamConnection<State>) => boolean | Promise<boolean>;
  /**
   * Milliseconds of idleness before `validate` runs at a hand-out; 0 runs it
   * every time. A connection used more recently was just seen working
   * (HikariCP skips validation within 500 ms of last use, pgx within 1 s).
   *
   * @default {1000}
   */
  validateAfter?: number;
  /**
   * TCP keepalive: milliseconds of idleness before the kernel starts probing
   * a connection, or `false` for none. It finds peers that vanished without
   * FIN or RST (a crashed host, a NAT or firewall that dropped the flow).
   * Node and Bun take the time (then probe every second, 10 times); Deno can
   * only switch keepalive on, with the kernel's times
   * (`net.ipv4.tcp_keepalive_time`, 7,200 s by default on Linux). Not for
   * Unix sockets. The default probes well inside the default `idleTimeout`
   * (Go dials with 15 s, ioredis 30 s, undici 60 s).
   *
   * @default {30000}
   */
  keepAlive?: number | false;
  /**
   * Hand-outs per connection; after the last one it is closed when it comes
   * back (undici's `maxRequestsPerClient`, pg-pool's `maxUses`), which
   * spreads connections again behind a load balancer.
   *
   * @default {Infinity}
   */
  maxUses?: number;
}

/** An address with options of its own. */
export interface PerAddressOptions<State = ConnectionState> extends AddressPolicyOptions<State> {
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
export interface PoolPolicyOptions<State = ConnectionState> extends AddressPolicyOptions<State> {
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
  perAddress?: readonly PerAddressOptions<State>[];
}

/** Per-address policy after defaults and overrides, all fields set. */
export interface AddressPolicy extends ConnectionHooks {
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
  setup: undefined,
  validate: undefined,
  validateAfter: 1_000,
  keepAlive: 30_000,
  maxUses: Infinity,
  maxPerHost: Infinity,
  maxIdlePerHost: Infinity,
  minIdlePerHost: 0,
  idleTimeout: 60_000,
  maxLifetime: Infinity,
  connectTimeout: 10_000,
  maxWaiting: Infinity,
};

export type Kind = "count>=1" | "count>=0" | "ms" | "ms>=0";

export { show }; // kept here for the modules that import it from options.ts

const ADDRESS_FIELDS: Record<Exclude<keyof AddressPolicy, keyof ConnectionHooks>, Kind> = {
  maxPerHost: "count>=1",
  maxIdlePerHost: "count>=0",
  minIdlePerHost: "count>=0",
  idleTimeout: "ms",
  maxLifetime: "ms",
  connectTimeout: "ms",
  maxWaiting: "count>=0",
};

export function checkNumber(option: string, value: unknown, kind: Kind): number {
  if (typeof value !== "number") {
    throw new TypeError(`Invalid pool option ${option}: expected a number, got ${show(value)}`);
  }
  const count = kind === "count>=1" || kind === "count>=0";
  const min = kind === "count>=1" ? 1 : 0;
  if (
    Number.isNaN(value) || value < min ||
    (count && value !== Infinity && !Number.isInteger(value)) ||
    (kind === "ms" && value === 0)
  ) {
    const expected = count
      ? `an integer of at least ${min}, or Infinity`
      : kind === "ms"
      ? "a positive number of milliseconds, or Infinity"
      : "a number of milliseconds >= 0, or Infinity";
    throw new RangeError(`Invalid pool option ${option}: expected ${expected}, got ${show(value)}`);
  }
  return value;
}

/** Options as read once from the caller's object: own properties only, values unchecked. */
export type Snapshot<T> = { [K in keyof T]?: unknown };

function resolveAddressPolicy(
  // deno-lint-ignore no-explicit-any -- the connections' state type does not matter here
  options: Snapshot<AddressPolicyOptions<any>>,
  base: AddressPolicy,
  prefix: string,
): AddressPolicy {
  const policy = { ...base, ...resolveHooks(options as Partial<ConnectionHooks>, base, prefix) };
  for (const field of Object.keys(ADDRESS_FIELDS) as Array<keyof typeof ADDRESS_FIELDS>) {
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
// deno-lint-ignore no-explicit-any -- the connections' state type does not matter here
export function resolvePolicy(options: Snapshot<PoolPolicyOptions<any>>): PoolPolicy {
  const defaults = resolveAddressPolicy(options, ADDRESS_DEFAULTS, "");
  // `=== undefined`, not `??`: null is a mistake here as for every other option.
  const order = options.order === undefined ? "lifo" : options.order;
  if (order !== "lifo" && order !== "fifo") {
    throw new TypeError(
      `Invalid pool option order: expected "lifo" or "fifo", got ${show(order)}`,
    );
  }
  const perAddress = new Map<string, AddressPolicy>();
  const given = options.perAddress === undefined ? [] : options.perAddress;
  if (!Array.isArray(given)) {
    throw new TypeError(
      `Invalid pool option perAddress: expected an array of { address, ... }, got ${show(given)}`,
    );
  }
  // By index, the length read once: spreading would run the array's own
  // iterator (which may never end) and copy every hole of a sparse array
  // (2^32-1 of them: a fatal out-of-memory) before the first is checked.
  const count = given.length;
  for (let i = 0; i < count; i++) {
    const entry: unknown = given[i];
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
