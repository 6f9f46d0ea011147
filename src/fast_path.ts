// The fast path, for an acquire that finds an idle connection and nobody
// in line: no waiter, no queue, no deadline. The idle socket is
// reserved now and lent once a settle turn asked for now is over (that
// turn vouches for it and for this acquire). If it broke meanwhile, the
// acquire joins the line in the place its arrival gave it.
import { Lease, type LeaseOwner } from "./connection.ts";
import type { Connector } from "./connector.ts";
import { closedError } from "./errors.ts";
import type { HostPool } from "./host_pool.ts";
import type { IdleLimits } from "./idle_limits.ts";
import type { Lifecycle, Observer } from "./lifecycle.ts";
import type { PoolPolicy } from "./options.ts";
import type { PooledSocket } from "./pooled_socket.ts";
import type { Waiting } from "./waiting.ts";

/** An acquire's place: its order of arrival, when (Date.now()), and where it was called. */
export interface Ticket {
  readonly seq: number;
  readonly arrived: number;
  readonly stack: string;
}

/** What the fast path needs of the scheduler: the line, for an acquire that falls back to it. */
export interface Line {
  readonly closed: boolean;
  /** Joins the line of its address, in the place its ticket gives it. */
  enqueue(host: HostPool, signal: AbortSignal | undefined, ticket: Ticket): Promise<Lease>;
  dispatch(host: HostPool): void;
  slotFreed(host: HostPool): void;
}

export class FastPath {
  readonly #life: Lifecycle;
  readonly #policy: PoolPolicy;
  readonly #connector: Connector;
  readonly #owner: LeaseOwner;
  readonly #observer: Observer;
  readonly #waiting: Waiting;
  readonly #limits: IdleLimits;
  readonly #line: Line;

  constructor(
    life: Lifecycle,
    policy: PoolPolicy,
    connector: Connector,
    owner: LeaseOwner,
    observer: Observer,
    waiting: Waiting,
    limits: IdleLimits,
    line: Line,
  ) {
    this.#life = life;
    this.#policy = policy;
    this.#connector = connector;
    this.#owner = owner;
    this.#observer = observer;
    this.#waiting = waiting;
    this.#limits = limits;
    this.#line = line;
  }

  /** Whether an acquire may take the fast path: nobody in line, an idle socket that needs no validation. */
  applies(host: HostPool, arrived: number): boolean {
    return host.waiters.size === 0 && host.idle.length > 0 &&
      (host.policy.validate === undefined ||
        // The socket take() will pick: the newest idle one, or the oldest for "fifo".
        arrived - host.idle[this.#policy.order === "lifo" ? host.idle.length - 1 : 0]!.idleSince <
          host.policy.validateAfter);
  }

  /** Reserves the idle socket for this acquire now and lends it after a settle turn asked for now. */
  take(host: HostPool, signal: AbortSignal | undefined, ticket: Ticket): Promise<Lease> {
    const socket = host.pickIdle(this.#policy.order, Infinity)!;
    this.#life.toReserved(socket, host, ticket.seq);
    const arrivedAt = this.#observer.observes("handed-out") ? performance.now() : -1;
    this.#waiting.add(1);
    const turn = this.#connector.settle();
    if (signal === undefined) {
      return turn.then(() => this.#afterTurn(host, socket, undefined, ticket, arrivedAt));
    }
    // An abort leaves at once, as it does from the line: the socket is idle again.
    return new Promise<Lease>((resolve, reject) => {
      let done = false;
      const onAbort = (): void => {
        if (done) return;
        done = true;
        this.#waiting.add(-1);
        // Still its own: an earlier acquire may have taken it over, and a later one reserved it again.
        if (socket.phase === "reserved" && socket.reservedBy === ticket.seq) {
          this.#life.unreserve(socket, host);
          // Connections retained meanwhile found it gone from the idle list:
          // with it back, the idle limits may be exceeded.
          if (host.waiters.size === 0) this.#limits.trim(host);
          this.#line.dispatch(host);
        }
        reject(signal.reason);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      turn.then(() => {
        signal.removeEventListener("abort", onAbort);
        if (done) return;
        done = true;
        // Settled in this callback, not one hop later: acquires served by one
        // turn resolve in the order they arrived.
        try {
          resolve(this.#afterTurn(host, socket, signal, ticket, arrivedAt));
        } catch (error) {
          reject(error);
        }
      });
    });
  }

  #afterTurn(
    host: HostPool,
    reserved: PooledSocket,
    signal: AbortSignal | undefined,
    ticket: Ticket,
    arrivedAt: number,
  ): Lease | Promise<Lease> {
    this.#waiting.add(-1);
    let socket = reserved;
    if (socket.phase !== "reserved" || socket.reservedBy !== ticket.seq) {
      // It broke during the turn (and was closed), the pool was closed, or an
      // earlier acquire took it over (it may be reserved again, by a later one).
      if (this.#line.closed) throw closedError(host.address.key);
      // First come, first served: a socket reserved by a later acquire is
      // this one's if this turn vouches for it too (idle before this acquire
      // arrived); that acquire then takes its place in line.
      const spare = laterReservation(host, ticket.seq);
      // Closing it may have left the address empty and forgotten.
      if (spare === undefined) {
        return this.#line.enqueue(this.#life.host(host.address), signal, ticket);
      }
      socket = spare;
    }
    if (this.#line.closed) {
      this.#life.close(socket, host, "pool-closed");
      throw closedError(host.address.key);
    }
    const now = Date.now();
    const idleMs = now - socket.idleSince;
    if (socket.expiresAt <= now || idleMs >= socket.idleTimeout) {
      const expiry = socket.expiresAt <= now ? "max-lifetime" : "idle-timeout";
      this.#life.close(socket, host, "expired", expiry);
      this.#line.slotFreed(host);
      return this.#line.enqueue(this.#life.host(host.address), signal, ticket);
    }
    const reused = socket.uses > 0;
    if (reused) this.#life.totals.reused++;
    const lease = new Lease(this.#owner, socket, !reused, idleMs, ticket.stack);
    const waitMs = arrivedAt < 0 ? -1 : performance.now() - arrivedAt;
    this.#life.toBorrowed(socket, host, lease, waitMs);
    // The minIdle upkeep replaces it, and acquires that came meanwhile are served;
    // with neither, dispatch would find nothing to do. (Fresh waiters need
    // no look: this hand-out freed no slot and started no connect.)
    if (host.minIdle > 0 || host.waiters.size > 0) {
      this.#line.dispatch(host);
    }
    return lease;
  }
}

/** A socket reserved by an acquire after `seq` that was idle before `seq` arrived. */
function laterReservation(host: HostPool, seq: number): PooledSocket | undefined {
  if (host.reservedCount === 0) return undefined;
  for (const socket of host.reserved) {
    if (socket.reservedBy > seq && socket.idleStamp < seq) return socket;
  }
  return undefined;
}
