// Where each connection is. Every connection is in exactly one phase
// (connecting, setting up, idle, validating, borrowed) and only this module
// moves it: each move updates the address's collection, the pool-wide
// counts (size, the idle LRU), the timers that belong to the phase (idle
// expiry, leak watch) and the totals, and reports the transition. Who gets
// which connection is the scheduler's business (scheduler.ts).
import type { ResolvedAddress } from "./address.ts";
import type { Lease } from "./connection.ts";
import type { CloseReason, ExpireEvent, PoolEvent } from "./events.ts";
import { HostPool, IdleLru, type SharedLists, SocketList } from "./host_pool.ts";
import { IdleExpiry } from "./idle_expiry.ts";
import { LeakWatch } from "./leak_watch.ts";
import type { PoolPolicy } from "./options.ts";
import { PooledSocket, type SocketOwner } from "./pooled_socket.ts";
import type { PoolTotals } from "./stats.ts";
import type { TransportConnection } from "./transports/transport.ts";

export type { CloseReason };

/** The policy reasons behind an `expired` close. */
export type ExpireReason = ExpireEvent["reason"];

const TOTAL_OF: Record<CloseReason, keyof PoolTotals> = {
  "broken": "broken",
  "dropped": "dropped",
  "released": "released",
  "expired": "expired",
  "validation-failed": "validationFailed",
  "max-uses": "maxUses",
  "drained": "drained",
  "pool-closed": "poolClosed",
  "setup-failed": "setupFailed",
};

/** Who hears about transitions; an event nobody listens to is not even built. */
export interface Observer {
  observes(type: PoolEvent["type"]): boolean;
  emit(event: PoolEvent): void;
}

export function newTotals(): PoolTotals {
  return {
    created: 0,
    reused: 0,
    failed: 0,
    broken: 0,
    dropped: 0,
    released: 0,
    expired: 0,
    validationFailed: 0,
    maxUses: 0,
    drained: 0,
    poolClosed: 0,
    setupFailed: 0,
    timedOut: 0,
    retried: 0,
    waited: 0,
    waitedMs: 0,
    maxWaitMs: 0,
  };
}

export class Lifecycle {
  readonly hosts: Map<string, HostPool> = new Map();
  readonly totals: PoolTotals = newTotals();
  /** Connections in every phase, all addresses (checked against maxTotal). */
  size = 0;
  /** Every idle socket, least recently idle first (for maxIdle and maxTotal). */
  readonly idleLru: IdleLru = new IdleLru();
  /** Reserved and borrowed sockets, all addresses (each address counts its own). */
  readonly shared: SharedLists = { reserved: new SocketList(), borrowed: new SocketList() };
  /**
   * Orders waiters' arrivals and sockets becoming idle, so that a settle
   * turn knows which of them it vouches for.
   */
  stamps = 0;
  readonly #policy: PoolPolicy;
  readonly #owner: SocketOwner;
  readonly #observer: Observer;
  readonly #expiry: IdleExpiry;
  readonly #leaks: LeakWatch | undefined;
  #ids = 0;

  constructor(
    policy: PoolPolicy,
    owner: SocketOwner,
    observer: Observer,
    onExpired: (socket: PooledSocket, reason: ExpireReason) => void,
    closed: () => boolean,
  ) {
    this.#policy = policy;
    this.#owner = owner;
    this.#observer = observer;
    this.#expiry = new IdleExpiry(onExpired, closed);
    if (policy.leakTimeout !== Infinity) {
      this.#leaks = new LeakWatch(policy.leakTimeout, (lease, borrowedMs) =>
        observer.emit({
          type: "leak",
          address: lease.address.key,
          id: lease.socket.id,
          borrowedMs,
          stack: lease.stack,
        }));
    }
  }

  /** Idle connections across all addresses at most (maxIdle). */
  get policyMaxIdle(): number {
    return this.#policy.maxIdle;
  }

  /** The entry of an address, made on first use. */
  host(address: ResolvedAddress): HostPool {
    let host = this.hosts.get(address.key);
    if (host === undefined) {
      const own = this.#policy.perAddress.get(address.key);
      host = new HostPool(address, own ?? this.#policy.defaults, own !== undefined, this.shared);
      this.hosts.set(address.key, host);
    }
    return host;
  }

  /** Drops an address's entry once nothing is left in it. */
  forgetIfEmpty(host: HostPool): void {
    if (!host.empty || this.hosts.get(host.address.key) !== host) return;
    this.#expiry.stop(host);
    this.hosts.delete(host.address.key);
  }

  // ---- connecting ---------------------------------------------------------

  /** A connect starts: it counts against the limits from now on. */
  connecting(host: HostPool): void {
    host.connecting++;
    this.size++;
  }

  /** A connect failed or was abandoned: its slot is free. */
  connectEnded(host: HostPool): void {
    host.connecting--;
    this.size--;
  }

  /** A connect succeeded: the socket starts its life setting up. */
  opened(host: HostPool, transport: TransportConnection): PooledSocket {
    host.connecting--;
    const socket = new PooledSocket(++this.#ids, host.address, transport, this.#owner);
    socket.epoch = host.epoch;
    const lifetime = host.policy.maxLifetime;
    if (lifetime !== Infinity) {
      // Drawn once per connection, so that connections opened together do not
      // all expire together (recomputing it at each return would not jitter).
      socket.expiresAt = socket.createdAt + lifetime * (1 - 0.025 * Math.random());
    }
    host.settingUp.add(socket);
    this.totals.created++;
    if (this.#observer.observes("opened")) {
      this.#observer.emit({ type: "opened", address: host.address.key, id: socket.id });
    }
    return socket;
  }

  // ---- moves between phases -------------------------------------------------

  /** Setting up → ready: reported, then the caller moves it on (idle or borrowed). */
  setUp(socket: PooledSocket, host: HostPool, ms: number): void {
    if (this.#observer.observes("set-up")) {
      this.#observer.emit({ type: "set-up", address: host.address.key, id: socket.id, ms });
    }
  }

  /** Into the idle list, watched for EOF and stray bytes, with its expiry timer. */
  toIdle(socket: PooledSocket, host: HostPool, idleTimeout: number): void {
    this.#leave(socket, host);
    socket.idleStamp = ++this.stamps;
    socket.idleTimeout = idleTimeout;
    host.idle.push(socket);
    this.idleLru.add(socket);
    socket.watchIdle();
    this.#expiry.schedule(host, socket);
  }

  /** Idle → reserved for an acquire, until its settle turn is over; still watched. */
  toReserved(socket: PooledSocket, host: HostPool, by: number): void {
    this.#leave(socket, host);
    this.shared.reserved.add(socket);
    host.reservedCount++;
    socket.phase = "reserved";
    socket.reservedBy = by;
  }

  /** Reserved → idle again, in its old place (its acquire gave up). */
  unreserve(socket: PooledSocket, host: HostPool): void {
    this.#leave(socket, host);
    socket.phase = "idle";
    host.restoreIdle(socket);
    this.idleLru.add(socket);
    this.#expiry.schedule(host, socket);
  }

  /** Idle → validating: the validate hook holds it. */
  toValidating(socket: PooledSocket, host: HostPool, holder: Lease): void {
    this.#leave(socket, host);
    host.validating.add(socket);
    socket.lend("validating", holder);
  }

  /** To a borrower. `waitMs` is how long the acquire waited, or -1 if not measured. */
  toBorrowed(socket: PooledSocket, host: HostPool, lease: Lease, waitMs: number): void {
    this.#leave(socket, host);
    this.shared.borrowed.add(socket);
    host.borrowedCount++;
    socket.uses++;
    socket.lend("borrowed", lease);
    this.#leaks?.add(lease);
    if (this.#observer.observes("handed-out")) {
      this.#observer.emit({
        type: "handed-out",
        address: host.address.key,
        id: socket.id,
        created: lease.created,
        idleMs: lease.idleMs,
        waitMs,
      });
    }
  }

  /** A borrower gave it back; reported before it moves on (idle or closed). */
  returned(socket: PooledSocket, host: HostPool, lease: Lease, retained: boolean): void {
    this.#leaks?.delete(lease);
    if (this.#observer.observes("returned")) {
      this.#observer.emit({
        type: "returned",
        address: host.address.key,
        id: socket.id,
        retained,
      });
    }
  }

  /** Closes a socket in any phase, frees its slot, counts and reports why. */
  close(socket: PooledSocket, host: HostPool, reason: CloseReason, detail?: ExpireReason): void {
    if (socket.phase === "closed") return;
    this.#leave(socket, host);
    socket.close();
    this.size--;
    this.totals[TOTAL_OF[reason]]++;
    const address = host.address.key;
    if (detail !== undefined && this.#observer.observes("expire")) {
      this.#observer.emit({ type: "expire", address, reason: detail });
    }
    if (this.#observer.observes("closed")) {
      this.#observer.emit({ type: "closed", address, id: socket.id, reason, detail });
    }
  }

  /** Stops every timer (the pool is closing). */
  stopTimers(host: HostPool): void {
    this.#expiry.stop(host);
  }

  closeLeakWatch(): void {
    this.#leaks?.close();
  }

  // Takes the socket out of the collection of the phase it is in.
  #leave(socket: PooledSocket, host: HostPool): void {
    const phase = socket.phase;
    if (phase === "idle") {
      host.removeIdle(socket);
      this.idleLru.delete(socket);
      return;
    }
    if (phase === "reserved") host.reservedCount--;
    else if (phase === "borrowed") {
      host.borrowedCount--;
      if (socket.holder !== undefined) this.#leaks?.delete(socket.holder as Lease);
    }
    // The list of its phase: the address's, or pool-wide.
    socket.list?.delete(socket);
  }
}
