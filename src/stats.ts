/**
 * The shape of `ConnectionPool.stats()`.
 *
 * @module
 */
import type { HostPool } from "./host_pool.ts";

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
  /** New connections the `setup` hook is working on. */
  settingUp: number;
  /** Idle connections the `validate` hook is checking before a hand-out. */
  validating: number;
  /** Acquires waiting in line. */
  waiting: number;
}

/**
 * The counts of one address, and what the pool keeps doing for it.
 *
 * @example
 * ```ts
 * import { ConnectionPool } from "@upstream/pool";
 * for (const [key, counts] of Object.entries(new ConnectionPool().stats().byAddress)) {
 *   if (counts.failing) console.log(`${key}: connects fail, ${counts.minIdle} idle wanted`);
 * }
 * ```
 */
export interface AddressCounts extends PoolCounts {
  /** Idle connections the pool keeps ready for this address (`minIdlePerHost`, `warm`). */
  minIdle: number;
  /** True while connects to this address fail (the last one did). */
  failing: boolean;
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
  /** Acquires served by a connection handed out before (`created` false). */
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
  /** Idle connections closed because `validate` returned false or threw. */
  validationFailed: number;
  /** Connections closed on return after `maxUses` hand-outs. */
  maxUses: number;
  /** Connections closed by `drain`. */
  drained: number;
  /** Idle and returning connections closed because the pool was closed. */
  poolClosed: number;
  /** New connections closed because `setup` failed (also counted in `failed`). */
  setupFailed: number;
  /** Acquires that failed with `ACQUIRE_TIMEOUT`. */
  timedOut: number;
  /** Times `exchange` ran its function again on a new connection. */
  retried: number;
  /**
   * Acquires that had to wait: no idle connection and no room for a new one
   * when they arrived (Go's `DBStats.WaitCount`).
   */
  waited: number;
  /** Milliseconds those acquires waited in all (Go's `WaitDuration`). */
  waitedMs: number;
  /** The longest such wait, in ms. */
  maxWaitMs: number;
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
  /**
   * Counts per address key (such as `"127.0.0.1:6379"`), for every address
   * the pool is still working on: with a connection or a waiter, or whose
   * idle connections it keeps topping up.
   */
  byAddress: Record<string, AddressCounts>;
  /** Counters since the pool was created. */
  totals: PoolTotals;
  /** True once `close()` was called. */
  closed: boolean;
}

/** Reads a snapshot off the addresses' collections. */
export function countsOf(
  hosts: Iterable<HostPool>,
  totals: PoolTotals,
  closed: boolean,
): PoolStats {
  const byAddress: Record<string, AddressCounts> = {};
  const sum: PoolCounts = {
    idle: 0,
    borrowed: 0,
    connecting: 0,
    settingUp: 0,
    validating: 0,
    waiting: 0,
  };
  for (const host of hosts) {
    if (host.empty) continue;
    const counts: AddressCounts = {
      idle: host.idle.length + host.reservedCount, // reserved ones are idle until handed out
      borrowed: host.borrowedCount,
      connecting: host.connecting,
      settingUp: host.settingUp.size,
      validating: host.validating.size,
      waiting: host.waiting,
      minIdle: host.upkeepPaused ? 0 : host.minIdle,
      failing: !host.healthy && host.lastError !== undefined,
    };
    byAddress[host.address.key] = counts;
    for (const field of Object.keys(sum) as (keyof PoolCounts)[]) sum[field] += counts[field];
  }
  return { ...sum, byAddress, totals: { ...totals }, closed };
}
