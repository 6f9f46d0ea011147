/**
 * What the pool reports through its `onEvent` hook (and on
 * `node:diagnostics_channel`): every change in a connection's life, and
 * things no caller would otherwise hear about.
 *
 * @module
 */
import type { PoolError } from "./errors.ts";

/**
 * A connection was opened (its TCP, TLS or Unix connect succeeded); `setup`
 * runs next, if the pool has one.
 */
export interface OpenedEvent {
  /** Always `"opened"`. */
  type: "opened";
  /** The address key, such as `"127.0.0.1:6379"`. */
  address: string;
  /** The connection's id (`connection.id`). */
  id: number;
}

/** The `setup` hook finished on a new connection; it is ready for use. */
export interface SetUpEvent {
  /** Always `"set-up"`. */
  type: "set-up";
  /** The address key. */
  address: string;
  /** The connection's id. */
  id: number;
  /** How long `setup` took, in ms (0 without a hook). */
  ms: number;
}

/** An acquire got a connection. */
export interface HandedOutEvent {
  /** Always `"handed-out"`. */
  type: "handed-out";
  /** The address key. */
  address: string;
  /** The connection's id. */
  id: number;
  /** Whether this is the connection's first hand-out. */
  created: boolean;
  /** How long the connection was idle before, in ms (0 if opened for this acquire). */
  idleMs: number;
  /** How long the acquire waited for it, in ms. */
  waitMs: number;
}

/** A borrowed connection came back: `retained` (pooled) or not (closed). */
export interface ReturnedEvent {
  /** Always `"returned"`. */
  type: "returned";
  /** The address key. */
  address: string;
  /** The connection's id. */
  id: number;
  /** True if `retain` kept it for reuse; false if it was closed. */
  retained: boolean;
}

/**
 * A connection was closed. `reason` says why: the upstream closed or wrote
 * to it while idle (`broken`), it was given back unclean (`dropped`),
 * `release` (`released`), policy (`expired`, with `detail`), `validate` said
 * no (`validation-failed`), `maxUses` (`max-uses`), `drain` (`drained`),
 * `close` (`pool-closed`), or `setup` failed (`setup-failed`).
 */
export interface ClosedEvent {
  /** Always `"closed"`. */
  type: "closed";
  /** The address key. */
  address: string;
  /** The connection's id. */
  id: number;
  /** Why it was closed. */
  reason: CloseReason;
  /** For `expired`: which limit. */
  detail: ExpireEvent["reason"] | undefined;
}

/**
 * Why a connection was closed; each has its own counter in `stats().totals`.
 *
 * @example
 * ```ts
 * import type { CloseReason } from "@upstream/pool";
 * const unhealthy: CloseReason[] = ["broken", "validation-failed"];
 * ```
 */
export type CloseReason =
  | "broken"
  | "dropped"
  | "released"
  | "expired"
  | "validation-failed"
  | "max-uses"
  | "drained"
  | "pool-closed"
  | "setup-failed";

/**
 * `exchange` ran its function again on a new connection, because the
 * attempt on a reused connection failed before any byte was received.
 */
export interface RetryEvent {
  /** Always `"retry"`. */
  type: "retry";
  /** The address key. */
  address: string;
  /** The id of the connection the first attempt failed on. */
  id: number;
  /** The first attempt's error. */
  error: unknown;
}

/**
 * A connection was borrowed for longer than `leakTimeout`. It is not closed;
 * `stack` is where the `acquire` that took it was called.
 */
export interface LeakEvent {
  /** Always `"leak"`. */
  type: "leak";
  /** The address key, such as `"127.0.0.1:6379"`. */
  address: string;
  /** The connection's id. */
  id: number;
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
export type PoolEvent =
  | OpenedEvent
  | SetUpEvent
  | HandedOutEvent
  | ReturnedEvent
  | ClosedEvent
  | RetryEvent
  | LeakEvent
  | ConnectErrorEvent
  | ExpireEvent;
