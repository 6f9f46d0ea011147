/**
 * The shape of `ConnectionPool.stats()`.
 *
 * @module
 */

/**
 * How many connections are in each state right now.
 *
 * @example
 * ```ts
 * import { ConnectionPool } from "@upstream/pool";
 * const { idle, borrowed, connecting, waiting } = new ConnectionPool().stats();
 * console.log(idle + borrowed + connecting, waiting); // 0 0
 * ```
 */
export interface PoolCounts {
  /** Open, unused, watched for EOF and stray bytes, ready to be reused. */
  idle: number;
  /** Handed out by `acquire` and not yet given back. */
  borrowed: number;
  /** Connects in progress (from `acquire`, `add`, `warm` or a refill). */
  connecting: number;
  /** Acquires waiting in line. */
  waiting: number;
}

/**
 * Events counted since the pool was created.
 *
 * @example
 * ```ts
 * import { ConnectionPool } from "@upstream/pool";
 * const { created, reused } = new ConnectionPool().stats().totals;
 * console.log(`${reused} of ${created + reused} acquires reused a connection`);
 * ```
 */
export interface PoolTotals {
  /** Connections opened. */
  created: number;
  /** Acquires served by an idle connection. */
  reused: number;
  /** Connect attempts that failed. */
  failed: number;
  /** Idle connections closed because the upstream closed, reset or wrote to them. */
  broken: number;
  /** Retained connections that were closed instead of pooled (EOF seen, unread bytes, write in progress, half-closed). */
  dropped: number;
  /** Borrowed connections closed by `release` (or by leaving an `await using` scope). */
  released: number;
  /** Idle connections closed by policy: idle timeout, lifetime, idle limits. */
  expired: number;
  /** Acquires that failed with `ACQUIRE_TIMEOUT`. */
  timedOut: number;
}

/**
 * A snapshot of the pool: counts in total and per address key.
 *
 * @example
 * ```ts
 * import { ConnectionPool } from "@upstream/pool";
 * const stats = new ConnectionPool().stats();
 * for (const [key, counts] of Object.entries(stats.byAddress)) console.log(key, counts.idle);
 * ```
 */
export interface PoolStats extends PoolCounts {
  /** Counts per address key (such as `"127.0.0.1:6379"`), for addresses with any connection. */
  byAddress: Record<string, PoolCounts>;
  /** Counters since the pool was created. */
  totals: PoolTotals;
  /** True once `close()` was called. */
  closed: boolean;
}
