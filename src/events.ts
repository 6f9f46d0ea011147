/**
 * What the pool reports through its `onEvent` hook: things no caller would
 * otherwise hear about.
 *
 * @module
 */
import type { PoolError } from "./errors.ts";

/**
 * A connection was borrowed for longer than `leakTimeout`. It is not closed;
 * `stack` is where the `acquire` that took it was called.
 */
export interface LeakEvent {
  /** Always `"leak"`. */
  type: "leak";
  /** The address key, such as `"127.0.0.1:6379"`. */
  address: string;
  /** How long it had been borrowed when reported. */
  borrowedMs: number;
  /** The stack of the `acquire` call that borrowed it. */
  stack: string;
}

/** A connect that no caller was waiting for failed (a `warm` or a refill). */
export interface ConnectErrorEvent {
  /** Always `"connect-error"`. */
  type: "connect-error";
  /** The address key. */
  address: string;
  /** The failure, as an acquire would have received it. */
  error: PoolError;
}

/** The pool closed an idle connection by policy. */
export interface ExpireEvent {
  /** Always `"expire"`. */
  type: "expire";
  /** The address key. */
  address: string;
  /** Idle too long, too old, or over an idle limit (`maxIdle`, `maxIdlePerHost`, `maxTotal`). */
  reason: "idle-timeout" | "max-lifetime" | "max-idle";
}

/**
 * Everything `onEvent` can receive.
 *
 * @example Log leaks and failing background connects
 * ```ts
 * import { ConnectionPool, type PoolEvent } from "@upstream/pool";
 * const onEvent = (event: PoolEvent): void => {
 *   if (event.type === "leak") console.warn(`${event.address} borrowed ${event.borrowedMs} ms`, event.stack);
 *   if (event.type === "connect-error") console.warn(event.error.message);
 * };
 * const pool = new ConnectionPool({ leakTimeout: 10_000, onEvent });
 * await pool.close();
 * ```
 */
export type PoolEvent = LeakEvent | ConnectErrorEvent | ExpireEvent;
