/**
 * The pool of pools: idle connections kept per upstream address, handed out
 * by `acquire`, taken back by `retain`, closed by `release`.
 *
 * @module
 */
import { type Address, resolveAddress, type ResolvedAddress } from "./address.ts";
import { type Acquired, Lease, type LeaseOwner, type UpstreamConnection } from "./connection.ts";
import { connectError, PoolError } from "./errors.ts";
import { HostPool } from "./host_pool.ts";
import { type BreakReason, PooledSocket, type SocketOwner } from "./pooled_socket.ts";
import type { PoolCounts, PoolStats, PoolTotals } from "./stats.ts";
import { detectTransport } from "./transports/detect.ts";
import type { Transport, TransportConnection } from "./transports/transport.ts";

/**
 * Options for {@linkcode ConnectionPool}.
 *
 * @example Choose the transport explicitly
 * ```ts
 * import { ConnectionPool, type ConnectionPoolOptions } from "@upstream/pool";
 * import { MemoryTransport } from "@upstream/pool/memory";
 * const options: ConnectionPoolOptions = { transport: new MemoryTransport() };
 * const pool = new ConnectionPool(options);
 * await pool.close();
 * ```
 */
export interface ConnectionPoolOptions {
  /**
   * Opens the connections. Pass `denoTransport`, `bunTransport`,
   * `nodeTransport` or a `MemoryTransport` to choose explicitly.
   *
   * @default {the transport of the runtime the pool runs on, detected at the first connect}
   */
  transport?: Transport;
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
  /** Aborts the acquire; it then rejects with a `PoolError` of code `ABORTED`. */
  signal?: AbortSignal;
}

/**
 * A pool of reusable connections to upstream servers, one pool per address.
 *
 * - `acquire` hands out an idle connection to the address if it has a
 *   healthy one (most recently retained first), or opens a new one, and
 *   says which (`created`).
 * - `retain` takes a borrowed connection back for reuse; `release` closes it.
 * - While a connection is idle the pool keeps reading it: EOF, a reset or
 *   any byte nobody asked for means it is broken, and it is closed and
 *   forgotten at once. Before an idle connection is handed out, the pool
 *   lets the runtime deliver whatever already reached it, so a connection
 *   with stray bytes or a FIN in its receive buffer is never handed out.
 * - Idle connections do not keep the process alive.
 *
 * @example Request and reply over a pooled connection
 * ```ts ignore
 * import { ConnectionPool } from "@upstream/pool";
 *
 * const pool = new ConnectionPool();
 * const { created, connection } = await pool.acquire({ hostname: "127.0.0.1", port: 6379 });
 * await connection.write(new TextEncoder().encode("PING\r\n"));
 * console.log(new TextDecoder().decode((await connection.read())!), { created });
 * pool.retain(connection); // the exchange is complete: keep it for the next acquire
 * await pool.close();
 * ```
 */
export class ConnectionPool implements AsyncDisposable {
  #transport: Transport | undefined;
  #hosts: Map<string, HostPool> = new Map();
  #closed = false;
  // One controller per connect in progress, so that close() can abort them
  // without every connect listening on one long-lived signal.
  #connectAborts: Set<AbortController> = new Set();
  #connects: Set<Promise<unknown>> = new Set();
  #totals: PoolTotals = { created: 0, reused: 0, failed: 0, broken: 0, dropped: 0, released: 0 };
  // Callbacks for sockets and leases, kept off the public surface.
  #owner: SocketOwner & LeaseOwner = {
    onIdleBreak: (socket, reason) => this.#onIdleBreak(socket, reason),
    releaseIfBorrowed: (lease) => {
      if (lease.active) this.release(lease);
    },
  };

  /**
   * Creates an empty pool; nothing is opened until the first `acquire` or `add`.
   *
   * @param options How to open connections.
   * @throws {TypeError} If `options.transport` is not a transport.
   */
  constructor(options: ConnectionPoolOptions = {}) {
    if (options === null || typeof options !== "object") {
      throw new TypeError(`Invalid pool options: expected an object, got ${typeof options}`);
    }
    const { transport } = options;
    if (transport !== undefined) {
      if (
        transport === null || typeof transport !== "object" ||
        typeof transport.connect !== "function" || typeof transport.settle !== "function"
      ) {
        throw new TypeError(
          "Invalid pool option transport: expected an object with connect() and settle()",
        );
      }
      this.#transport = transport;
    }
  }

  /** True once {@linkcode ConnectionPool.close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Borrows a connection to `address`: a healthy idle one if the pool has
   * one (the most recently retained), otherwise a new one.
   *
   * @param address The upstream.
   * @param options An abort signal.
   * @returns The connection and whether it was `created`. Give it back with
   * `retain` (reusable) or `release` (close), or let `await using` release it.
   * @throws {TypeError} If `address` or `options` are malformed.
   * @throws {RangeError} If the port is out of range.
   * @throws {PoolError} `POOL_CLOSED`, `ABORTED`, `CONNECT_REFUSED`,
   * `HOST_NOT_FOUND` or `CONNECT_FAILED` (with the runtime's error as `cause`).
   *
   * @example
   * ```ts ignore
   * const { created, connection } = await pool.acquire(
   *   { hostname: "cache.internal", port: 11211 },
   *   { signal: AbortSignal.timeout(1000) },
   * );
   * ```
   */
  async acquire(address: Address, options: AcquireOptions = {}): Promise<Acquired> {
    const resolved = resolveAddress(address);
    const signal = checkSignal(options);
    this.#throwIfUnusable(resolved, signal);
    if ((this.#hosts.get(resolved.key)?.idle.length ?? 0) > 0) {
      // Bytes or a FIN may already sit in an idle connection's receive
      // buffer without JavaScript having seen them: let the runtime deliver
      // them (the idle watch then evicts that connection) before choosing.
      await this.#transport!.settle();
      this.#throwIfUnusable(resolved, signal);
      const socket = this.#hosts.get(resolved.key)?.idle.pop();
      if (socket !== undefined) {
        this.#totals.reused++;
        return this.#lend(socket, false);
      }
    }
    return this.#lend(await this.#open(resolved, signal), true);
  }

  /**
   * Opens one more connection to `address` and keeps it idle in the pool,
   * so that a later `acquire` finds it ready (a pre-warm). Use `acquire` to
   * borrow it.
   *
   * @param address The upstream.
   * @throws {TypeError} If `address` is malformed.
   * @throws {RangeError} If the port is out of range.
   * @throws {PoolError} As for a connect in `acquire`.
   *
   * @example
   * ```ts ignore
   * await Promise.all([1, 2, 3].map(() => pool.add({ hostname: "127.0.0.1", port: 5432 })));
   * console.log(pool.stats().idle); // 3
   * ```
   */
  async add(address: Address): Promise<void> {
    const resolved = resolveAddress(address);
    this.#throwIfUnusable(resolved, undefined);
    const socket = await this.#open(resolved, undefined);
    this.#hosts.get(resolved.key)!.idle.push(socket);
    socket.watchIdle();
  }

  /**
   * Takes a borrowed connection back for reuse: the exchange on it is
   * complete. The handle is dead afterwards (a read it still had pending
   * rejects with `LEASE_ENDED`). The connection is closed instead of pooled
   * if it is no longer clean: the upstream closed it or it failed, bytes
   * arrived that were not read, a write is still in progress, it was
   * half-closed, or the pool is closed.
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
    const lease = this.#borrowedLease(connection, "retain");
    const socket = lease.socket;
    const host = this.#hosts.get(socket.address.key)!;
    host.borrowed.delete(socket);
    socket.abandonRead(leaseEnded(socket.address));
    if (this.#closed || !socket.reusable || socket.hasUnread || socket.writing) {
      socket.close();
      this.#totals.dropped++;
      this.#forgetIfEmpty(host);
      return false;
    }
    host.idle.push(socket);
    socket.watchIdle();
    return true;
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
    const lease = this.#borrowedLease(connection, "release");
    const socket = lease.socket;
    const host = this.#hosts.get(socket.address.key)!;
    host.borrowed.delete(socket);
    socket.close();
    this.#totals.released++;
    this.#forgetIfEmpty(host);
  }

  /**
   * Counts connections by state, in total and per address key, plus
   * counters since the pool was created. The counts are exact at any moment.
   *
   * @returns A fresh snapshot.
   *
   * @example
   * ```ts
   * import { ConnectionPool } from "@upstream/pool";
   * const pool = new ConnectionPool();
   * console.log(pool.stats()); // { idle: 0, borrowed: 0, connecting: 0, byAddress: {}, ... }
   * ```
   */
  stats(): PoolStats {
    const byAddress: Record<string, PoolCounts> = {};
    let idle = 0;
    let borrowed = 0;
    let connecting = 0;
    for (const [key, host] of this.#hosts) {
      const counts = {
        idle: host.idle.length,
        borrowed: host.borrowed.size,
        connecting: host.connecting,
      };
      byAddress[key] = counts;
      idle += counts.idle;
      borrowed += counts.borrowed;
      connecting += counts.connecting;
    }
    return {
      idle,
      borrowed,
      connecting,
      byAddress,
      totals: { ...this.#totals },
      closed: this.#closed,
    };
  }

  /**
   * Closes the pool: idle connections at once, connects in progress as
   * they finish (they are aborted), borrowed connections when they are given
   * back. Later acquires reject with `POOL_CLOSED`. Resolves once nothing
   * but borrowed connections is left open. Calling it again is harmless.
   *
   * @example
   * ```ts ignore
   * process.on("SIGTERM", () => pool.close());
   * ```
   */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      const reason = new PoolError("POOL_CLOSED", "The pool was closed");
      for (const controller of this.#connectAborts) controller.abort(reason);
      for (const host of [...this.#hosts.values()]) {
        for (const socket of host.idle.splice(0)) socket.close();
        this.#forgetIfEmpty(host);
      }
    }
    await Promise.allSettled(this.#connects);
  }

  /**
   * Same as {@linkcode ConnectionPool.close}, for `await using pool = new ConnectionPool()`.
   *
   * @example
   * ```ts ignore
   * await using pool = new ConnectionPool();
   * ```
   */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #lend(socket: PooledSocket, created: boolean): Lease {
    this.#hosts.get(socket.address.key)!.borrowed.add(socket);
    socket.lend();
    return new Lease(this.#owner, socket, created);
  }

  // Opens a connection and counts it as connecting meanwhile. The caller
  // puts the socket in a collection in the same turn as this resolves.
  #open(address: ResolvedAddress, signal: AbortSignal | undefined): Promise<PooledSocket> {
    let host = this.#hosts.get(address.key);
    if (host === undefined) {
      host = new HostPool(address);
      this.#hosts.set(address.key, host);
    }
    host.connecting++;
    const opening = this.#connect(host, address, signal);
    this.#connects.add(opening);
    const forget = (): void => {
      this.#connects.delete(opening);
    };
    opening.then(forget, forget);
    return opening;
  }

  async #connect(
    host: HostPool,
    address: ResolvedAddress,
    signal: AbortSignal | undefined,
  ): Promise<PooledSocket> {
    const abort = new AbortController();
    const onAbort = (): void => abort.abort(signal!.reason);
    this.#connectAborts.add(abort);
    signal?.addEventListener("abort", onAbort, { once: true });
    let connection: TransportConnection | undefined;
    let failure: unknown;
    try {
      const transport = this.#transport ??= await detectTransport();
      connection = await transport.connect(address, { signal: abort.signal });
    } catch (cause) {
      failure = cause;
    }
    this.#connectAborts.delete(abort);
    signal?.removeEventListener("abort", onAbort);
    host.connecting--;
    if (connection === undefined) {
      this.#totals.failed++;
      this.#forgetIfEmpty(host);
      if (this.#closed) throw closedError(address, failure);
      if (signal?.aborted) throw abortedError(address, signal);
      throw connectError(address.key, failure);
    }
    this.#totals.created++;
    const socket = new PooledSocket(address, connection, this.#owner);
    if (this.#closed) {
      socket.close();
      this.#forgetIfEmpty(host);
      throw closedError(address, undefined);
    }
    return socket;
  }

  #onIdleBreak(socket: PooledSocket, _reason: BreakReason): void {
    const host = this.#hosts.get(socket.address.key);
    if (host === undefined || !host.removeIdle(socket)) return;
    socket.close();
    this.#totals.broken++;
    this.#forgetIfEmpty(host);
  }

  #forgetIfEmpty(host: HostPool): void {
    if (host.empty && this.#hosts.get(host.address.key) === host) {
      this.#hosts.delete(host.address.key);
    }
  }

  #throwIfUnusable(address: ResolvedAddress, signal: AbortSignal | undefined): void {
    if (this.#closed) throw closedError(address, undefined);
    if (signal?.aborted) throw abortedError(address, signal);
  }

  #borrowedLease(connection: UpstreamConnection, verb: string): Lease {
    if (connection === null || typeof connection !== "object") {
      throw new TypeError(
        `Cannot ${verb}: expected a connection from acquire(), got ${typeof connection}`,
      );
    }
    if (!(connection instanceof Lease) || connection.owner !== this.#owner) {
      throw new PoolError(
        "NOT_BORROWED",
        `Cannot ${verb}: this connection was not handed out by this pool`,
      );
    }
    if (!connection.active) {
      throw new PoolError(
        "NOT_BORROWED",
        `Cannot ${verb} the connection to "${connection.address.key}": it was already given back`,
        { address: connection.address.key },
      );
    }
    return connection;
  }
}

function checkSignal(options: AcquireOptions): AbortSignal | undefined {
  if (options === null || typeof options !== "object") {
    throw new TypeError(`Invalid acquire options: expected an object, got ${typeof options}`);
  }
  const { signal } = options;
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new TypeError("Invalid acquire option signal: expected an AbortSignal");
  }
  return signal;
}

function closedError(address: ResolvedAddress, cause: unknown): PoolError {
  return new PoolError(
    "POOL_CLOSED",
    `Cannot acquire a connection to "${address.key}": the pool is closed`,
    cause === undefined ? { address: address.key } : { address: address.key, cause },
  );
}

function abortedError(address: ResolvedAddress, signal: AbortSignal): PoolError {
  return new PoolError("ABORTED", `Acquiring a connection to "${address.key}" was aborted`, {
    address: address.key,
    cause: signal.reason,
  });
}

function leaseEnded(address: ResolvedAddress): PoolError {
  return new PoolError(
    "LEASE_ENDED",
    `The read on the connection to "${address.key}" was cut short: the connection was given back`,
    { address: address.key },
  );
}
