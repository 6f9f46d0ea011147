/**
 * `ConnectionPool.exchange`: one request and its reply on a pooled
 * connection, sent again on a new connection only when that is safe.
 *
 * @module
 */
import type { Lease, UpstreamConnection } from "./connection.ts";

/**
 * Options for {@linkcode ConnectionPool.exchange}.
 *
 * @example A replayable request with a deadline
 * ```ts ignore
 * const options: ExchangeOptions = { idempotent: true, signal: AbortSignal.timeout(2000) };
 * ```
 */
export interface ExchangeOptions {
  /**
   * The request may be sent twice without harm (a read, a `GET`, a
   * `PING`). Only then is a failed attempt retried, and only when it ran on
   * a reused connection that the upstream had closed or reset before
   * sending a single byte back: the request cannot have had an effect.
   *
   * @default {false}
   */
  idempotent?: boolean;
  /** Aborts the acquire (the function is given no signal: use `read({ signal })`). */
  signal?: AbortSignal;
  /**
   * The idle deadline for the connection once it is retained, as
   * `retain(connection, { idleTimeout })` takes it.
   *
   * @default {the pool's idleTimeout}
   */
  idleTimeout?: number;
}

/** What `exchange` needs from the pool. */
export interface ExchangePool {
  acquire(signal: AbortSignal | undefined, fresh: boolean): Promise<Lease>;
  retain(lease: Lease, idleTimeout: number | undefined): void;
  release(lease: Lease): void;
  retried(lease: Lease, error: unknown): void;
}

/**
 * Runs `run` on a borrowed connection: retained after it returns (closed if
 * it left the connection unclean), released if it throws; once more on a
 * newly opened connection when the first attempt may be replayed.
 */
export async function exchange<T, State>(
  pool: ExchangePool,
  run: (connection: UpstreamConnection<State>) => Promise<T> | T,
  { idempotent, signal, idleTimeout }: {
    idempotent: boolean;
    signal: AbortSignal | undefined;
    idleTimeout: number | undefined;
  },
): Promise<T> {
  const first = await pool.acquire(signal, false);
  try {
    return await attempt(pool, first, run, idleTimeout);
  } catch (error) {
    if (!idempotent || !mayReplay(first)) throw error;
    pool.retried(first, error);
    return await attempt(pool, await pool.acquire(signal, true), run, idleTimeout);
  }
}

async function attempt<T, State>(
  pool: ExchangePool,
  lease: Lease,
  run: (connection: UpstreamConnection<State>) => Promise<T> | T,
  idleTimeout: number | undefined,
): Promise<T> {
  let value: T;
  try {
    value = await run(lease as UpstreamConnection<State>);
  } catch (error) {
    if (lease.active) pool.release(lease);
    throw error;
  }
  // The function may have given the connection back itself (`release` for
  // `Connection: close`, or a tunnel).
  if (lease.active) pool.retain(lease, idleTimeout);
  return value;
}

/**
 * Go's and undici's rule: the connection had been used before, the
 * upstream ended or failed it, and not one byte came back during the
 * attempt, so the upstream closed it before or without reading the
 * request. Whatever error the function made of that, a retry is safe.
 */
function mayReplay(lease: Lease): boolean {
  const socket = lease.socket;
  return !lease.created && socket.received === 0 && socket.ended;
}
