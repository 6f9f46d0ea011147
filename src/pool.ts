/**
 * The pool of pools: idle connections kept per upstream address, handed out
 * by `acquire`, taken back by `retain`, closed by `release`; limits, a fair
 * wait queue, timeouts and lifetimes around them.
 *
 * @module
 */
import { type Address, resolveAddress, type ResolvedAddress } from "./address.ts";
import { type Acquired, Lease, type LeaseOwner, type UpstreamConnection } from "./connection.ts";
import { AcquireDeadlines } from "./deadlines.ts";
import { Connector } from "./connector.ts";
import { closedError, leaseEnded, PoolError } from "./errors.ts";
import type { ExpireEvent, PoolEvent } from "./events.ts";
import { HostPool } from "./host_pool.ts";
import { IdleExpiry } from "./idle_expiry.ts";
import { LeakWatch } from "./leak_watch.ts";
import { type PoolPolicy, type PoolPolicyOptions, resolvePolicy } from "./options.ts";
import { type BreakReason, PooledSocket, type SocketOwner } from "./pooled_socket.ts";
import { type Handout, SettleTurns } from "./settle_turns.ts";
import type { PoolCounts, PoolStats, PoolTotals } from "./stats.ts";
import type { Transport, TransportConnection } from "./transports/transport.ts";
import { KeepAlive, unrefTimeout } from "./_timers.ts";
import {
  checkBorrowed,
  checkCloseTimeout,
  checkPoolHooks,
  checkSignal,
} from "./_argument_checks.ts";
import { Waiter } from "./wait_queue.ts";

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
export interface ConnectionPoolOptions extends PoolPolicyOptions {
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
export class ConnectionPool implements AsyncDisposable {
  #connector: Connector;
  #policy: PoolPolicy;
  #onEvent: ((event: PoolEvent) => void) | undefined;
  #hosts: Map<string, HostPool> = new Map();
  #closed = false;
  #totals: PoolTotals = {
    created: 0,
    reused: 0,
    failed: 0,
    broken: 0,
    dropped: 0,
    released: 0,
    expired: 0,
    timedOut: 0,
  };
  /** Connections in every state, all addresses (checked against maxTotal). */
  #size = 0;
  /** Every idle socket, least recently idle first (for maxIdle and maxTotal). */
  #idleLru: Set<PooledSocket> = new Set();
  #waiting = 0;
  /**
   * Orders waiters' arrivals and sockets becoming idle, so that a settle
   * turn knows which of them it vouches for.
   */
  #stamps = 0;
  #deadlines: AcquireDeadlines = new AcquireDeadlines((waiter) => this.#timeOut(waiter));
  #leaks: LeakWatch | undefined;
  /** Addresses whose waiters maxTotal holds back. */
  #blocked: Set<HostPool> = new Set();
  #turns: SettleTurns;
  #expiry: IdleExpiry = new IdleExpiry(
    (socket, reason) => this.#closeIdle(socket, reason),
    () => this.#closed,
  );
  /** Keeps the process alive while acquires wait. */
  #keepAlive: KeepAlive = new KeepAlive();
  /** close({ timeout }) waiting for the last borrowed connection. */
  #allReturned: (() => void) | undefined;
  // Callbacks for sockets and leases, kept off the public surface.
  #owner: SocketOwner & LeaseOwner = {
    onIdleBreak: (socket, reason) => this.#onIdleBreak(socket, reason),
    releaseIfBorrowed: (lease) => {
      if (lease.active) this.release(lease);
    },
  };

  /**
   * Creates an empty pool; nothing is opened until the first `acquire`,
   * `add` or `warm`.
   *
   * @param options How to open connections, the policy, the event hook.
   * @throws {TypeError} If an option has the wrong type.
   * @throws {RangeError} If an option is out of range; the message names it.
   */
  constructor(options: ConnectionPoolOptions = {}) {
    const { transport, onEvent } = checkPoolHooks(options);
    this.#connector = new Connector(transport);
    this.#turns = new SettleTurns(this.#connector, (handout) => this.#handOut(handout));
    this.#onEvent = onEvent;
    this.#policy = resolvePolicy(options);
    if (this.#policy.leakTimeout !== Infinity) {
      this.#leaks = new LeakWatch(
        this.#policy.leakTimeout,
        (lease, borrowedMs) =>
          this.#emit({ type: "leak", address: lease.address.key, borrowedMs, stack: lease.stack }),
      );
    }
  }

  /** True once {@linkcode ConnectionPool.close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Borrows a connection to `address`: a healthy idle one if the pool has
   * one, otherwise a new one. When a limit is reached, waits in line for
   * the address (first come, first served) until a connection is retained,
   * a slot frees up, `acquireTimeout` passes or `signal` aborts.
   *
   * @param address The upstream.
   * @param options An abort signal.
   * @returns The connection and whether it was `created`. Give it back with
   * `retain` (reusable) or `release` (close), or let `await using` release it.
   * @throws {TypeError} If `address` or `options` are malformed.
   * @throws {RangeError} If the port is out of range.
   * @throws {PoolError} `POOL_CLOSED`, `QUEUE_FULL`, `ACQUIRE_TIMEOUT`,
   * `CONNECT_TIMEOUT`, `CONNECT_REFUSED`, `HOST_NOT_FOUND` or
   * `CONNECT_FAILED` (with the runtime's error as `cause`).
   * @throws {unknown} The signal's reason, if `signal` aborts it.
   *
   * @example
   * ```ts ignore
   * const { created, connection } = await pool.acquire(
   *   { hostname: "cache.internal", port: 11211 },
   *   { signal: AbortSignal.timeout(1000) },
   * );
   * ```
   */
  acquire(address: Address, options: AcquireOptions = {}): Promise<Acquired> {
    try {
      return this.#enqueue(resolveAddress(address), checkSignal(options));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  #enqueue(resolved: ResolvedAddress, signal: AbortSignal | undefined): Promise<Acquired> {
    if (this.#closed) throw closedError(resolved.key);
    signal?.throwIfAborted();
    const host = this.#host(resolved);
    if (
      host.waiters.size >= host.idle.length + host.policy.maxWaiting && !this.#hasRoom(host)
    ) {
      throw new PoolError(
        "QUEUE_FULL",
        `Cannot acquire a connection to "${resolved.key}": ${host.waiters.size} acquires already wait for it (maxWaiting)`,
        { address: resolved.key },
      );
    }
    const stack = this.#leaks === undefined ? "" : new Error("acquired here").stack ?? "";
    const deadline = Date.now() + this.#policy.acquireTimeout;
    return new Promise<Lease>((resolve, reject) => {
      const waiter = new Waiter(++this.#stamps, resolved.key, deadline, stack, resolve, reject);
      host.waiters.push(waiter);
      this.#countWaiting(1);
      if (signal !== undefined) {
        const onAbort = (): void => this.#leave(waiter, signal.reason);
        signal.addEventListener("abort", onAbort, { once: true });
        waiter.onDone(() => signal.removeEventListener("abort", onAbort));
      }
      this.#deadlines.add(waiter);
      this.#dispatch(host);
    });
  }

  /**
   * Opens one more connection to `address` and keeps it in the pool (it
   * goes to the oldest waiter, if any, else idle): a pre-warm. Use
   * `acquire` to borrow it.
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
      const host = this.#host(resolved);
      if (!this.#hasRoom(host)) {
        this.#forgetIfEmpty(host);
        throw new PoolError(
          "LIMIT_REACHED",
          `Cannot add a connection to "${resolved.key}": the pool is at its connection limit`,
          { address: resolved.key },
        );
      }
      this.#makeRoom(host);
      return new Promise((resolve, reject) => this.#connect(host, { resolve, reject }));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Keeps `count` idle connections to `address` ready from now on, refilled
   * after evictions (with back-off while connects fail), and opens them.
   * Resolves once `count` are idle; rejects if a connect for it fails (the
   * refill goes on in the background).
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
      const host = this.#host(resolved);
      const most = Math.min(
        host.policy.maxPerHost,
        host.policy.maxIdlePerHost,
        this.#policy.maxIdle,
      );
      if (!Number.isInteger(count) || count < 0 || count > most) {
        this.#forgetIfEmpty(host);
        throw new RangeError(
          `Invalid warm count: expected an integer from 0 to ${most} (maxPerHost, maxIdlePerHost, maxIdle), got ${count}`,
        );
      }
      host.minIdle = count;
      if (host.idle.length >= count) {
        this.#forgetIfEmpty(host);
        return Promise.resolve();
      }
      return new Promise((resolve, reject) => {
        host.warmers.push({ target: count, resolve, reject });
        this.#dispatch(host);
        if (host.connecting === 0 && host.backoffTimer === undefined) {
          host.warmers = host.warmers.filter((warmer) => warmer.resolve !== resolve);
          reject(
            new PoolError(
              "LIMIT_REACHED",
              `Cannot warm "${resolved.key}": the pool is at its connection limit`,
              { address: resolved.key },
            ),
          );
        }
      });
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
   * bytes arrived that were not read, a write is still in progress, it was
   * half-closed), if it outlived `maxLifetime`, if keeping it would exceed
   * an idle limit, or if the pool is closed.
   *
   * @param connection A connection this pool handed out.
   * @returns `true` if the connection was pooled, `false` if it was closed.
   * @throws {PoolError} `NOT_BORROWED` if this pool did not hand it out or it
   * was already given back; nothing changes then.
   *
   * @example
   * ```ts ignore
   * const { connection } = await pool.acquire(address);
   * await exchange(connection);
   * const kept = pool.retain(connection);
   * ```
   */
  retain(connection: UpstreamConnection): boolean {
    const { socket, host } = this.#takeBack(connection, "retain");
    socket.abandonRead(leaseEnded);
    let pooled = false;
    if (this.#closed || !socket.reusable || socket.hasUnread || socket.writing) {
      this.#discard(socket);
      this.#totals.dropped++;
    } else {
      pooled = this.#makeIdle(host, socket);
    }
    if (!pooled) this.#slotFreed(host);
    else this.#serveBlocked();
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
  release(connection: UpstreamConnection): void {
    const { socket, host } = this.#takeBack(connection, "release");
    this.#discard(socket);
    this.#totals.released++;
    this.#slotFreed(host);
    this.#checkAllReturned();
  }

  /**
   * Counts connections by state and waiting acquires, in total and per
   * address key, plus counters since the pool was created. The counts are
   * exact at any moment.
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
    const byAddress: Record<string, PoolCounts> = {};
    const sum: PoolCounts = { idle: 0, borrowed: 0, connecting: 0, waiting: 0 };
    for (const [key, host] of this.#hosts) {
      const counts = {
        idle: host.idle.length,
        borrowed: host.borrowed.size,
        connecting: host.connecting,
        waiting: host.waiters.size,
      };
      if (counts.idle + counts.borrowed + counts.connecting + counts.waiting === 0) continue;
      byAddress[key] = counts;
      sum.idle += counts.idle;
      sum.borrowed += counts.borrowed;
      sum.connecting += counts.connecting;
      sum.waiting += counts.waiting;
    }
    return { ...sum, byAddress, totals: { ...this.#totals }, closed: this.#closed };
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
    if (!this.#closed) this.#shutDown();
    this.#connector.forgetTlsSessions();
    await this.#connector.allSettled();
    if (timeout === undefined || this.#size === 0) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.#allReturned = undefined;
        resolve();
      }, timeout);
      this.#allReturned = () => {
        clearTimeout(timer);
        this.#allReturned = undefined;
        resolve();
      };
    });
    // Whoever has not given their connection back by now loses it.
    for (const host of [...this.#hosts.values()]) {
      for (const socket of host.borrowed) this.#discard(socket);
      host.borrowed.clear();
      this.#forgetIfEmpty(host);
    }
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

  #shutDown(): void {
    this.#closed = true;
    this.#connector.close(new PoolError("POOL_CLOSED", "The pool was closed"));
    this.#deadlines.close();
    this.#leaks?.close();
    this.#blocked.clear();
    this.#turns.clear();
    for (const host of [...this.#hosts.values()]) {
      for (const waiter of host.waiters.drain()) {
        this.#countWaiting(-1);
        waiter.reject(closedError(host.address.key));
      }
      for (const warmer of host.warmers.splice(0)) warmer.reject(closedError(host.address.key));
      for (const socket of host.idle.splice(0)) {
        this.#idleLru.delete(socket);
        this.#discard(socket);
      }
      this.#expiry.stop(host);
      clearTimeout(host.backoffTimer);
      host.backoffTimer = undefined;
      host.minIdle = 0;
      this.#forgetIfEmpty(host);
    }
    // Last: rejecting the waiters above releases the keep-alive once more.
    this.#keepAlive.close();
  }

  #host(address: ResolvedAddress): HostPool {
    let host = this.#hosts.get(address.key);
    if (host === undefined) {
      const policy = this.#policy.perAddress.get(address.key) ?? this.#policy.defaults;
      host = new HostPool(address, policy);
      this.#hosts.set(address.key, host);
    }
    return host;
  }

  // Matches waiters with idle sockets (after a settle turn) and starts the
  // connects that the rest need, within the limits; then tops up minIdle.
  #dispatch(host: HostPool): void {
    if (this.#closed) return;
    const waiting = host.waiters.size;
    if (waiting > 0 && host.idle.length > 0) this.#turns.schedule(host, this.#stamps);
    let needed = waiting - host.idle.length - host.connecting;
    while (needed > 0 && this.#mayConnect(host)) {
      this.#connect(host, undefined);
      needed--;
    }
    this.#refill(host);
    this.#forgetIfEmpty(host);
  }

  // Serves the waiters of a settle turn's hosts with the idle sockets it vouches for.
  #handOut(handout: Handout): void {
    for (const host of handout.hosts) {
      while (!this.#closed && host.waiters.size > 0 && host.idle.length > 0) {
        // Only waiters and sockets this turn vouches for: the oldest waiter
        // first (if it is too new, all are); the rest wait for their turn.
        if (host.waiters.peek()!.seq > handout.covers) break;
        const socket = host.takeIdle(this.#policy.order, handout.covers);
        if (socket === undefined) break;
        this.#idleLru.delete(socket);
        if (expired(socket)) {
          this.#expire(socket, "max-lifetime");
          this.#serveBlocked();
          continue;
        }
        this.#totals.reused++;
        this.#lend(host, socket, this.#takeWaiter(host)!, false);
      }
      // Sockets retained for waiters skipped the idle limits; with the line
      // served (or gone), what is left over must fit them again.
      if (host.waiters.size === 0) this.#trimIdle(host);
      this.#dispatch(host);
    }
    this.#serveBlocked();
  }

  #trimIdle(host: HostPool): void {
    while (host.idle.length > host.policy.maxIdlePerHost) {
      this.#closeIdle(host.idle[0]!, "max-idle");
    }
    while (this.#idleLru.size > this.#policy.maxIdle) {
      const victim = this.#evictable(undefined);
      if (victim === undefined) break;
      this.#closeIdle(victim, "max-idle");
    }
  }

  #lend(host: HostPool, socket: PooledSocket, waiter: Waiter, created: boolean): void {
    host.borrowed.add(socket);
    socket.lend();
    const lease = new Lease(this.#owner, socket, created, waiter.stack);
    this.#leaks?.add(lease);
    waiter.resolve(lease);
  }

  #hasRoom(host: HostPool): boolean {
    if (host.size >= host.policy.maxPerHost) return false;
    return this.#size < this.#policy.maxTotal || this.#evictable(host) !== undefined;
  }

  // Whether a connect may start now for this address: within maxPerHost and
  // maxTotal (closing an idle connection elsewhere to make room), and only
  // one at a time while the address has not connected lately.
  #mayConnect(host: HostPool): boolean {
    if (!host.healthy && host.connecting > 0) return false;
    if (host.size >= host.policy.maxPerHost) return false;
    if (this.#size < this.#policy.maxTotal) return true;
    if (this.#makeRoom(host)) return true;
    if (host.waiters.size > 0) this.#blocked.add(host);
    return false;
  }

  /** Closes the least recently used idle socket of another, unneeded address, if at maxTotal. */
  #makeRoom(host: HostPool): boolean {
    if (this.#size < this.#policy.maxTotal) return true;
    const victim = this.#evictable(host);
    if (victim === undefined) return false;
    // The freed slot is the caller's: nobody else may be dispatched into it.
    const owner = this.#hosts.get(victim.address.key)!;
    owner.removeIdle(victim);
    this.#idleLru.delete(victim);
    this.#expire(victim, "max-idle");
    this.#forgetIfEmpty(owner);
    return true;
  }

  /** The least recently used idle socket whose address does not need it. */
  #evictable(except: HostPool | undefined): PooledSocket | undefined {
    for (const socket of this.#idleLru) {
      const owner = this.#hosts.get(socket.address.key)!;
      if (owner !== except && owner.waiters.size === 0) return socket;
    }
    return undefined;
  }

  #connect(
    host: HostPool,
    requester: { resolve(): void; reject(error: unknown): void } | undefined,
  ): void {
    host.connecting++;
    this.#size++;
    this.#connector.open(host.address, host.policy.connectTimeout, (result) => {
      if (result instanceof PoolError) {
        this.#connectFailed(host, result, requester);
      } else {
        host.connecting--;
        this.#connected(host, result, requester);
      }
    }, () => {
      // A failed connect counts as connecting until its socket is really gone.
      host.connecting--;
      this.#size--;
      if (this.#closed) this.#forgetIfEmpty(host);
      else this.#slotFreed(host);
    });
  }

  #connected(
    host: HostPool,
    connection: TransportConnection,
    requester: { resolve(): void } | undefined,
  ): void {
    this.#totals.created++;
    host.healthy = true;
    host.backoff = 0;
    host.lastError = undefined;
    const socket = new PooledSocket(host.address, connection, this.#owner);
    const lifetime = host.policy.maxLifetime;
    if (lifetime !== Infinity) {
      socket.expiresAt = socket.createdAt + lifetime * (1 - 0.025 * Math.random());
    }
    if (this.#closed) {
      this.#discard(socket);
      this.#forgetIfEmpty(host);
      return;
    }
    const waiter = this.#takeWaiter(host);
    if (waiter !== undefined) this.#lend(host, socket, waiter, true);
    else if (!this.#makeIdle(host, socket)) this.#slotFreed(host);
    else this.#serveBlocked();
    requester?.resolve();
    this.#dispatch(host);
  }

  // A failed connect's error goes to the requester (add), else to the
  // oldest waiter: callers get connect errors, nothing is retried silently.
  // With nobody to tell, it is reported as an event; refills back off.
  #connectFailed(
    host: HostPool,
    error: PoolError,
    requester: { reject(error: unknown): void } | undefined,
  ): void {
    this.#totals.failed++;
    host.healthy = false;
    host.lastError = error;
    for (const warmer of host.warmers.splice(0)) warmer.reject(error);
    if (requester !== undefined) requester.reject(error);
    else if (!this.#closed) {
      const waiter = this.#takeWaiter(host);
      if (waiter !== undefined) waiter.reject(error);
      else this.#emit({ type: "connect-error", address: host.address.key, error });
    }
    if (this.#closed) {
      this.#forgetIfEmpty(host);
      return;
    }
    if (host.minIdle > 0 && host.backoffTimer === undefined) {
      host.backoff = Math.min(Math.max(host.backoff * 2, 50), 30_000);
      host.backoffTimer = unrefTimeout(() => {
        host.backoffTimer = undefined;
        this.#dispatch(host);
      }, host.backoff);
    }
    this.#slotFreed(host);
  }

  /** Puts a socket in the idle list, or closes it if policy says so. */
  #makeIdle(host: HostPool, socket: PooledSocket): boolean {
    let victim: PooledSocket | undefined;
    if (host.waiters.size === 0) {
      if (expired(socket)) {
        this.#expire(socket, "max-lifetime");
        return false;
      }
      if (host.idle.length >= host.policy.maxIdlePerHost) {
        this.#expire(socket, "max-idle");
        return false;
      }
      if (this.#idleLru.size >= this.#policy.maxIdle) {
        victim = this.#policy.maxIdle === 0 ? undefined : this.#evictable(undefined);
        if (victim === undefined) {
          this.#expire(socket, "max-idle");
          return false;
        }
      }
    }
    // In the list before the victim goes, so that closing the victim can
    // never find this address empty and forget it.
    socket.idleStamp = ++this.#stamps;
    host.idle.push(socket);
    this.#idleLru.add(socket);
    socket.watchIdle();
    if (victim !== undefined) this.#closeIdle(victim, "max-idle");
    this.#expiry.schedule(host, socket);
    if (host.warmers.length > 0) {
      host.warmers = host.warmers.filter((warmer) => {
        if (host.idle.length < warmer.target) return true;
        warmer.resolve();
        return false;
      });
    }
    if (host.waiters.size > 0) this.#turns.schedule(host, this.#stamps);
    return true;
  }

  // Opens connections until minIdle idle ones are there or on their way,
  // unless a back-off after a failed connect is running.
  #refill(host: HostPool): void {
    if (host.minIdle === 0 || host.backoffTimer !== undefined) return;
    // Only as many as the idle limits will keep: a connection opened just to
    // be closed again would start the refill over, endlessly.
    const target = Math.min(host.minIdle, host.policy.maxIdlePerHost);
    const room = this.#policy.maxIdle - this.#idleLru.size - host.connecting + host.waiters.size;
    let deficit = Math.min(target - host.idle.length - host.connecting + host.waiters.size, room);
    while (deficit > 0 && this.#mayConnect(host)) {
      this.#connect(host, undefined);
      deficit--;
    }
  }

  /** Closes an idle socket by policy and frees its slot. */
  #closeIdle(socket: PooledSocket, reason: ExpireEvent["reason"]): void {
    const host = this.#hosts.get(socket.address.key)!;
    // The expiry sweep walks a snapshot: making room for another address
    // may already have closed this one.
    if (!host.removeIdle(socket)) return;
    this.#idleLru.delete(socket);
    this.#expire(socket, reason);
    this.#slotFreed(host);
  }

  /** Closes a socket that is in no collection any more, as expired by policy. */
  #expire(socket: PooledSocket, reason: ExpireEvent["reason"]): void {
    this.#discard(socket);
    this.#totals.expired++;
    this.#emit({ type: "expire", address: socket.address.key, reason });
  }

  /** Closes a socket that is in no collection any more. */
  #discard(socket: PooledSocket): void {
    socket.close();
    this.#size--;
  }

  // A connection is gone: its address may connect again for its waiters,
  // and so may addresses that maxTotal held back, oldest waiter first.
  #slotFreed(host: HostPool): void {
    // With others held back by maxTotal, the oldest waiter anywhere gets
    // the slot, not necessarily one of this address.
    if (this.#blocked.size > 0 && host.waiters.size > 0) this.#blocked.add(host);
    this.#serveBlocked();
    this.#dispatch(host);
  }

  // Addresses that maxTotal held back get their chance, oldest waiter
  // first: at a free slot, or where an idle socket can make room.
  #serveBlocked(): void {
    if (this.#blocked.size === 0) return;
    if (this.#size >= this.#policy.maxTotal && this.#evictable(undefined) === undefined) return;
    const blocked = [...this.#blocked]
      .map((candidate) => ({ candidate, oldest: candidate.waiters.peek()?.seq ?? Infinity }))
      .sort((a, b) => a.oldest - b.oldest);
    this.#blocked.clear();
    for (const { candidate, oldest } of blocked) {
      if (oldest !== Infinity) this.#dispatch(candidate);
    }
  }

  #onIdleBreak(socket: PooledSocket, _reason: BreakReason): void {
    const host = this.#hosts.get(socket.address.key);
    if (host === undefined || !host.removeIdle(socket)) return;
    this.#idleLru.delete(socket);
    this.#discard(socket);
    this.#totals.broken++;
    this.#slotFreed(host);
  }

  #takeWaiter(host: HostPool): Waiter | undefined {
    const waiter = host.waiters.shift();
    if (waiter !== undefined) this.#countWaiting(-1);
    return waiter;
  }

  /** A waiter gives up (aborted, timed out): it leaves the line at once. */
  #leave(waiter: Waiter, error: unknown): void {
    if (waiter.done) return;
    const host = this.#hosts.get(waiter.key)!;
    host.waiters.leave(waiter);
    this.#countWaiting(-1);
    waiter.reject(error);
    this.#forgetIfEmpty(host);
  }

  #timeOut(waiter: Waiter): void {
    const host = this.#hosts.get(waiter.key);
    this.#totals.timedOut++;
    this.#leave(
      waiter,
      new PoolError(
        "ACQUIRE_TIMEOUT",
        `Cannot acquire a connection to "${waiter.key}" within ${this.#policy.acquireTimeout} ms`,
        host?.lastError === undefined
          ? { address: waiter.key }
          : { address: waiter.key, cause: host.lastError },
      ),
    );
  }

  #countWaiting(delta: number): void {
    this.#waiting += delta;
    if (this.#waiting > 0) this.#keepAlive.hold();
    else this.#keepAlive.release();
  }

  #checkAllReturned(): void {
    if (this.#closed && this.#size === 0) this.#allReturned?.();
  }

  #forgetIfEmpty(host: HostPool): void {
    if (!host.empty || this.#hosts.get(host.address.key) !== host) return;
    this.#expiry.stop(host);
    this.#hosts.delete(host.address.key);
    this.#blocked.delete(host);
  }

  #emit(event: PoolEvent): void {
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

  /** Checks a handle given back and takes its socket out of the borrowed set. */
  #takeBack(
    connection: UpstreamConnection,
    verb: string,
  ): { socket: PooledSocket; host: HostPool } {
    const lease = checkBorrowed(connection, this.#owner, verb);
    const socket = lease.socket;
    const host = this.#hosts.get(socket.address.key)!;
    host.borrowed.delete(socket);
    this.#leaks?.delete(lease);
    return { socket, host };
  }
}

/** Whether a socket has outlived maxLifetime; the clock is read only if it has one. */
function expired(socket: PooledSocket): boolean {
  return socket.expiresAt !== Infinity && socket.expiresAt <= Date.now();
}
