/**
 * The pool of pools: idle connections kept per upstream address, handed out
 * by `acquire`, taken back by `retain`, closed by `release`; limits, a fair
 * wait queue, timeouts and lifetimes around them.
 *
 * @module
 */
import { type Address, resolveAddress, type ResolvedAddress } from "./address.ts";
import type {
  Acquired,
  ConnectionState,
  Lease,
  LeaseOwner,
  UpstreamConnection,
} from "./connection.ts";
import { Connector } from "./connector.ts";
import { closedError, PoolError } from "./errors.ts";
import type { PoolEvent } from "./events.ts";
import { exchange, type ExchangeOptions, type ExchangePool } from "./exchange.ts";
import { Lifecycle, type Observer } from "./lifecycle.ts";
import { type PoolPolicy, type PoolPolicyOptions, resolvePolicy } from "./options.ts";
import type { SocketOwner } from "./pooled_socket.ts";
import { Scheduler } from "./scheduler.ts";
import { countsOf } from "./stats.ts";
import type { PoolStats } from "./stats.ts";
import type { Transport } from "./transports/transport.ts";
import { longTimeout } from "./_timers.ts";
import {
  checkBorrowed,
  checkCloseTimeout,
  checkExchange,
  checkPoolHooks,
  checkRetainOptions,
  checkSignal,
} from "./_argument_checks.ts";
import { diagnostics } from "./diagnostics.ts";

/**
 * Options for {@linkcode ConnectionPool}: how to connect, the policy, and
 * the event hook.
 *
 * @example Choose the transport explicitly
 * ```ts
 * import { ConnectionPool, type ConnectionPoolOptions } from "@upstream/pool";
 * import { MemoryTransport } from "@upstream/pool/memory";
 * const options: ConnectionPoolOptions = { transport: new MemoryTransport(), maxPerHost: 4 };
 * const pool = new ConnectionPool(options);
 * await pool.close();
 * ```
 */
export interface ConnectionPoolOptions<State = ConnectionState> extends PoolPolicyOptions<State> {
  /**
   * Opens the connections. Pass `denoTransport`, `bunTransport`,
   * `nodeTransport` or a `MemoryTransport` to choose explicitly.
   *
   * @default {the transport of the runtime the pool runs on, detected at the first connect}
   */
  transport?: Transport;
  /**
   * Receives what no caller would otherwise hear about: leaks, failed
   * background connects, connections closed by policy. It must not throw
   * (an exception is rethrown in a microtask, outside the pool).
   */
  onEvent?: (event: PoolEvent) => void;
}

/**
 * Options for {@linkcode ConnectionPool.acquire}.
 *
 * @example Give up after 500 ms
 * ```ts ignore
 * const options: AcquireOptions = { signal: AbortSignal.timeout(500) };
 * const { connection } = await pool.acquire(address, options);
 * ```
 */
export interface AcquireOptions {
  /**
   * Aborts the acquire: it leaves the line at once and rejects with the
   * signal's reason. A connect already started for it still completes and
   * its connection joins the pool.
   */
  signal?: AbortSignal;
}

/**
 * Options for {@linkcode ConnectionPool.retain}.
 *
 * @example The server said `Keep-Alive: timeout=5`: keep it 4 s at most
 * ```ts ignore
 * pool.retain(connection, { idleTimeout: 5_000 - 1_000 });
 * ```
 */
export interface RetainOptions {
  /**
   * Milliseconds this connection may stay idle this time, if less than the
   * pool's `idleTimeout`: for a protocol layer that learned the server's own
   * limit (HTTP's `Keep-Alive: timeout=N`, a database's session timeout) and
   * subtracted a safety margin (see the README for how large). Past it the
   * connection is closed and never handed out; 0 closes it at once.
   */
  idleTimeout?: number;
}

/**
 * Options for {@linkcode ConnectionPool.close}.
 *
 * @example Give borrowers five seconds
 * ```ts ignore
 * await pool.close({ timeout: 5000 });
 * ```
 */
export interface CloseOptions {
  /**
   * Milliseconds to wait for borrowed connections to come back; those still
   * out then are closed. Without it, `close` does not wait for them: they
   * are closed when they come back.
   */
  timeout?: number;
}

/**
 * A pool of reusable connections to upstream servers, one pool per address.
 *
 * - `acquire` hands out an idle connection to the address if it has a
 *   healthy one (most recently retained first, or `order: "fifo"`), or opens
 *   a new one, and says which (`created`). When a limit is reached it waits
 *   in line: first come, first served.
 * - `retain` takes a borrowed connection back for reuse (straight to the
 *   oldest waiter, if any); `release` closes it.
 * - While a connection is idle the pool keeps reading it: EOF, a reset or
 *   any byte nobody asked for means it is broken, and it is closed and
 *   forgotten at once. Before an idle connection is handed out, the pool
 *   lets the runtime deliver whatever already reached it, so a connection
 *   with stray bytes or a FIN in its receive buffer is never handed out.
 * - Idle connections and the pool's timers do not keep the process alive;
 *   borrowed connections and waiting acquires do.
 *
 * @example Request and reply over a pooled connection
 * ```ts ignore
 * import { ConnectionPool } from "@upstream/pool";
 *
 * const pool = new ConnectionPool({ maxPerHost: 16 });
 * const { created, connection } = await pool.acquire({ hostname: "127.0.0.1", port: 6379 });
 * await connection.write(new TextEncoder().encode("PING\r\n"));
 * console.log(new TextDecoder().decode((await connection.read())!), { created });
 * pool.retain(connection); // the exchange is complete: keep it for the next acquire
 * await pool.close();
 * ```
 */
export class ConnectionPool<State = ConnectionState> implements AsyncDisposable {
  readonly #connector: Connector;
  readonly #policy: PoolPolicy;
  readonly #onEvent: ((event: PoolEvent) => void) | undefined;
  readonly #life: Lifecycle;
  readonly #scheduler: Scheduler;
  #closed = false;
  /** Each close({ timeout }) call waiting for the last borrowed connection. */
  readonly #allReturned: Set<() => void> = new Set();
  // Callbacks for sockets, leases and the lifecycle, kept off the public surface.
  readonly #owner: SocketOwner & LeaseOwner = {
    onIdleBreak: (socket) => this.#scheduler.idleBroke(socket),
    releaseIfBorrowed: (lease) => {
      if (lease.active && lease.socket.phase === "borrowed") this.release(lease);
    },
  };
  readonly #observer: Observer;

  /**
   * Creates an empty pool; nothing is opened until the first `acquire`,
   * `add` or `warm`.
   *
   * @param options How to open connections, the policy, the hooks, the event hook.
   * @throws {TypeError} If an option has the wrong type.
   * @throws {RangeError} If an option is out of range; the message names it.
   */
  constructor(options: ConnectionPoolOptions<State> = {}) {
    const { transport, onEvent, policy } = checkPoolHooks(options);
    this.#connector = new Connector(transport);
    this.#onEvent = onEvent;
    this.#policy = resolvePolicy(policy);
    this.#observer = {
      observes: (type) => onEvent !== undefined || diagnostics.subscribed(type),
      emit: (event) => this.#emit(event),
    };
    this.#life = new Lifecycle(
      this.#policy,
      this.#owner,
      this.#observer,
      (socket, reason) => this.#scheduler.expired(socket, reason),
      () => this.#closed,
    );
    this.#scheduler = new Scheduler(
      this.#life,
      this.#policy,
      this.#connector,
      this.#owner,
      this.#observer,
    );
  }

  /** True once {@linkcode ConnectionPool.close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Borrows a connection to `address`: a healthy idle one if the pool has
   * one (checked with `validate` if it sat idle for `validateAfter`),
   * otherwise a new one (after `setup`). When a limit is reached, waits in
   * line for the address (first come, first served) until a connection is
   * retained, a slot frees up, `acquireTimeout` passes or `signal` aborts.
   *
   * @param address The upstream.
   * @param options An abort signal.
   * @returns The connection, whether this is its first hand-out (`created`)
   * and how long it sat idle (`idleMs`). Give it back with `retain`
   * (reusable) or `release` (close), or let `await using` release it.
   * @throws {TypeError} If `address` or `options` are malformed.
   * @throws {RangeError} If the port is out of range.
   * @throws {PoolError} `POOL_CLOSED`, `QUEUE_FULL`, `ACQUIRE_TIMEOUT`,
   * `CONNECT_TIMEOUT`, `CONNECT_REFUSED`, `HOST_NOT_FOUND`, `SETUP_FAILED`,
   * a TLS code, or `CONNECT_FAILED` (with the runtime's error as `cause`).
   * @throws {unknown} The signal's reason, if `signal` aborts it.
   *
   * @example
   * ```ts ignore
   * const { created, idleMs, connection } = await pool.acquire(
   *   { hostname: "cache.internal", port: 11211 },
   *   { signal: AbortSignal.timeout(1000) },
   * );
   * ```
   */
  acquire(address: Address, options?: AcquireOptions): Promise<Acquired<State>> {
    try {
      // No options (the common call) need no checking.
      const resolved = resolveAddress(address);
      return this.#acquire(
        resolved,
        options === undefined ? undefined : checkSignal(options),
        false,
      );
    } catch (error) {
      return Promise.reject(error);
    }
  }

  #acquire(
    resolved: ResolvedAddress,
    signal: AbortSignal | undefined,
    fresh: boolean,
  ): Promise<Lease> {
    if (this.#closed) throw closedError(resolved.key);
    signal?.throwIfAborted();
    const host = this.#life.host(resolved);
    if (
      host.waiters.size >= host.idle.length + host.policy.maxWaiting &&
      !this.#scheduler.hasRoom(host)
    ) {
      this.#life.forgetIfEmpty(host);
      throw new PoolError(
        "QUEUE_FULL",
        `Cannot acquire a connection to "${resolved.key}": ${host.waiters.size} acquires already wait for it (maxWaiting)`,
        { address: resolved.key, operation: "acquire" },
      );
    }
    const stack = this.#policy.leakTimeout === Infinity
      ? ""
      : new Error("acquired here").stack ?? "";
    return this.#scheduler.acquire(host, signal, fresh, stack);
  }

  /**
   * Runs one request and reply on a pooled connection: acquires, calls
   * `run` with the connection, then retains it if `run` returned (closed
   * instead if it left bytes unread or the connection ended) or releases it
   * if `run` threw; `run` may also release it itself (for `Connection:
   * close`, or a tunnel). With `idempotent: true`, a failed attempt is run
   * once more, on a newly opened connection, exactly when it ran on a
   * reused connection that ended or failed (EOF, reset, failed write) before
   * a single byte came back, whatever error `run` made of that: the
   * upstream closed it at the keep-alive edge, so the request had no
   * effect. Never otherwise (Go's and undici's rule).
   *
   * @param address The upstream.
   * @param run The exchange: write the request, read the whole reply.
   * @param options `idempotent`, an abort signal for the acquire, the idle
   * deadline to retain the connection with.
   * @returns What `run` returned.
   * @throws {unknown} What `run` threw (the retry's error, if it was retried),
   * or what `acquire` throws.
   *
   * @example A Redis PING, replayed if the server had closed the connection
   * ```ts ignore
   * const reply = await pool.exchange(redis, async (connection) => {
   *   await connection.write(new TextEncoder().encode("PING\r\n"));
   *   const chunk = await connection.read();
   *   if (chunk === null) throw new Error("closed before the reply");
   *   return new TextDecoder().decode(chunk);
   * }, { idempotent: true });
   * ```
   */
  exchange<T>(
    address: Address,
    run: (connection: UpstreamConnection<State>) => Promise<T> | T,
    options: ExchangeOptions = {},
  ): Promise<T> {
    try {
      const resolved = resolveAddress(address);
      const checked = checkExchange(run, options);
      const pool: ExchangePool = {
        acquire: (signal, fresh) => this.#acquire(resolved, signal, fresh),
        retain: (lease, idleTimeout) =>
          this.retain(lease, idleTimeout === undefined ? undefined : { idleTimeout }),
        release: (lease) => this.release(lease),
        retried: (lease, error) => {
          this.#life.totals.retried++;
          this.#emit({ type: "retry", address: resolved.key, id: lease.id, error });
        },
      };
      return exchange(pool, run, checked);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Opens one more connection to `address` and keeps it in the pool (it
   * goes to the oldest waiter, if any, else idle): a pre-warm. `setup` runs
   * on it first. Use `acquire` to borrow it.
   *
   * @param address The upstream.
   * @throws {TypeError} If `address` is malformed.
   * @throws {RangeError} If the port is out of range.
   * @throws {PoolError} `LIMIT_REACHED` at `maxPerHost` or `maxTotal`, or as
   * for a connect in `acquire`.
   *
   * @example
   * ```ts ignore
   * await Promise.all([1, 2, 3].map(() => pool.add({ hostname: "127.0.0.1", port: 5432 })));
   * console.log(pool.stats().idle); // 3
   * ```
   */
  add(address: Address): Promise<void> {
    try {
      const resolved = resolveAddress(address);
      if (this.#closed) throw closedError(resolved.key);
      const host = this.#life.host(resolved);
      if (!this.#scheduler.hasRoom(host)) {
        this.#life.forgetIfEmpty(host);
        throw new PoolError(
          "LIMIT_REACHED",
          `Cannot add a connection to "${resolved.key}": the pool is at its connection limit`,
          { address: resolved.key, operation: "add" },
        );
      }
      return new Promise((resolve, reject) => this.#scheduler.add(host, { resolve, reject }));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Keeps `count` idle connections to `address` ready from now on, refilled
   * after evictions (with back-off while connects fail, paused after
   * several failures in a row until the next acquire), and opens them, each
   * set up by `setup`. Resolves once `count` are idle; rejects if a connect
   * for it fails (the refill goes on in the background).
   *
   * @param address The upstream.
   * @param count How many idle connections to keep; 0 stops keeping any.
   * @throws {TypeError} If `address` or `count` is malformed.
   * @throws {RangeError} If `count` is negative, fractional or above `maxPerHost`.
   * @throws {PoolError} `POOL_CLOSED`, `LIMIT_REACHED`, or as for a connect.
   *
   * @example
   * ```ts ignore
   * await pool.warm({ hostname: "127.0.0.1", port: 6379 }, 4);
   * ```
   */
  warm(address: Address, count: number): Promise<void> {
    try {
      const resolved = resolveAddress(address);
      if (typeof count !== "number") {
        throw new TypeError(`Invalid warm count: expected a number, got ${typeof count}`);
      }
      if (this.#closed) throw closedError(resolved.key);
      const host = this.#life.host(resolved);
      const most = Math.min(
        host.policy.maxPerHost,
        host.policy.maxIdlePerHost,
        this.#policy.maxIdle,
      );
      if (!Number.isInteger(count) || count < 0 || count > most) {
        this.#life.forgetIfEmpty(host);
        throw new RangeError(
          `Invalid warm count: expected an integer from 0 to ${most} (maxPerHost, maxIdlePerHost, maxIdle), got ${count}`,
        );
      }
      return this.#scheduler.warm(host, count);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Takes a borrowed connection back for reuse: the exchange on it is
   * complete. It goes to the oldest acquire waiting for its address, if
   * any, else it stays idle. The handle is dead afterwards (a read it still
   * had pending rejects with `LEASE_ENDED`). The connection is closed instead
   * of pooled if it is no longer clean (the upstream closed it or it failed,
   * bytes arrived or were put back that were not read, a write is still in
   * progress, a read was abandoned, it was half-closed), if it was handed
   * out `maxUses` times, was drained, outlived `maxLifetime`, if keeping it
   * would exceed an idle limit, or if the pool is closed.
   *
   * @param connection A connection this pool handed out.
   * @param options This idle period's deadline, if shorter than `idleTimeout`.
   * @returns `true` if the connection was pooled, `false` if it was closed.
   * @throws {PoolError} `NOT_BORROWED` if this pool did not hand it out or it
   * was already given back; nothing changes then.
   * @throws {TypeError} If `options` is malformed.
   * @throws {RangeError} If `idleTimeout` is negative or NaN.
   *
   * @example
   * ```ts ignore
   * const { connection } = await pool.acquire(address);
   * await exchange(connection);
   * const kept = pool.retain(connection, { idleTimeout: 4_000 });
   * ```
   */
  retain(connection: UpstreamConnection<State>, options?: RetainOptions): boolean {
    const asked = options === undefined ? undefined : checkRetainOptions(options);
    const lease = checkBorrowed(connection, this.#owner, "retain");
    const socket = lease.socket;
    const host = this.#life.hosts.get(socket.address.key)!;
    socket.abandonRead("retain");
    const idleTimeout = asked === undefined
      ? host.policy.idleTimeout
      : Math.min(asked, host.policy.idleTimeout);
    const pooled = this.#scheduler.giveBack(socket, host, lease, idleTimeout);
    this.#checkAllReturned();
    return pooled;
  }

  /**
   * Shuts down and closes a borrowed connection, and forgets it. Use it when
   * the exchange did not complete, or the connection was used for something
   * that must never be shared (a tunnel, an upgraded protocol).
   *
   * @param connection A connection this pool handed out.
   * @throws {PoolError} `NOT_BORROWED` if this pool did not hand it out or it
   * was already given back; nothing changes then.
   *
   * @example
   * ```ts ignore
   * try {
   *   await exchange(connection);
   *   pool.retain(connection);
   * } catch (error) {
   *   pool.release(connection);
   *   throw error;
   * }
   * ```
   */
  release(connection: UpstreamConnection<State>): void {
    const lease = checkBorrowed(connection, this.#owner, "release");
    const socket = lease.socket;
    socket.abandonRead("release");
    this.#scheduler.release(socket, this.#life.hosts.get(socket.address.key)!, lease);
    this.#checkAllReturned();
  }

  /**
   * Closes the idle connections to `address` now, and its borrowed ones
   * when they come back (retained or not); connections being set up or
   * validated are closed when that finishes (their acquires get another).
   * Connections opened from now on are kept as usual. For an upstream that moved or whose credentials
   * changed.
   *
   * @param address The upstream.
   * @throws {TypeError} If `address` is malformed.
   *
   * @example
   * ```ts ignore
   * pool.drain({ hostname: "db.internal", port: 5432 }); // after a failover
   * ```
   */
  drain(address: Address): void {
    const host = this.#life.hosts.get(resolveAddress(address).key);
    if (host !== undefined && !this.#closed) this.#scheduler.drain(host);
  }

  /**
   * Counts connections by phase and waiting acquires, in total and per
   * address key, plus counters since the pool was created (close reasons,
   * waits, retries). The counts are exact at any moment.
   *
   * @returns A fresh snapshot.
   *
   * @example
   * ```ts
   * import { ConnectionPool } from "@upstream/pool";
   * const pool = new ConnectionPool();
   * console.log(pool.stats()); // { idle: 0, borrowed: 0, connecting: 0, waiting: 0, byAddress: {}, ... }
   * ```
   */
  stats(): PoolStats {
    return countsOf(this.#life.hosts.values(), this.#life.totals, this.#closed);
  }

  /**
   * Closes the pool: waiting acquires reject with `POOL_CLOSED`, idle
   * connections close at once, connects in progress are aborted. Borrowed
   * connections are closed when they come back; with `timeout`, `close`
   * waits that long for them and then closes those still out. Later
   * acquires reject with `POOL_CLOSED`. Calling it again is harmless.
   *
   * @param options How long to wait for borrowed connections.
   * @throws {TypeError} If `options` or `timeout` has the wrong type.
   * @throws {RangeError} If `timeout` is negative or NaN.
   *
   * @example
   * ```ts ignore
   * process.on("SIGTERM", () => pool.close({ timeout: 10_000 }));
   * ```
   */
  async close(options: CloseOptions = {}): Promise<void> {
    const timeout = checkCloseTimeout(options);
    if (!this.#closed) {
      this.#closed = true;
      this.#connector.close(new PoolError("POOL_CLOSED", "The pool was closed"));
      this.#life.closeLeakWatch();
      this.#scheduler.close();
    }
    this.#connector.forgetTlsSessions();
    await this.#connector.allSettled();
    if (timeout === undefined || this.#life.size === 0) return;
    // One entry per call: a second close({ timeout }) must not take the
    // first one's place (it would never settle, nor clear its timer).
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#allReturned.delete(done);
        resolve();
      };
      const timer = longTimeout(done, timeout);
      this.#allReturned.add(done);
    });
    // Whoever has not given their connection back by now loses it.
    for (const host of [...this.#life.hosts.values()]) {
      for (const socket of [...host.borrowed, ...host.settingUp, ...host.validating]) {
        this.#life.close(socket, host, "pool-closed");
      }
      this.#life.forgetIfEmpty(host);
    }
    this.#checkAllReturned(); // other close({ timeout }) calls need not wait any longer
  }

  /**
   * Same as {@linkcode ConnectionPool.close} without a timeout, for
   * `await using pool = new ConnectionPool()`.
   *
   * @example
   * ```ts ignore
   * await using pool = new ConnectionPool();
   * ```
   */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #checkAllReturned(): void {
    if (this.#closed && this.#life.size === 0) {
      for (const done of [...this.#allReturned]) {
        done();
      }
    }
  }

  #emit(event: PoolEvent): void {
    diagnostics.publish(event);
    const hook = this.#onEvent;
    if (hook === undefined) return;
    try {
      hook(event);
    } catch (error) {
      queueMicrotask(() => {
        throw error;
      });
    }
  }
}
