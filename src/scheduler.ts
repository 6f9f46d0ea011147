// Who gets which connection. Matches waiters with supply (an idle
// connection after its settle turn, a finished connect and setup, a freed
// slot) within maxPerHost and maxTotal, oldest waiter first; starts the
// connects that waiters and the minIdle upkeep need. It asks the lifecycle
// to move connections and never edits the collections itself.
import { Lease, type LeaseOwner } from "./connection.ts";
import { AcquireDeadlines } from "./deadlines.ts";
import type { Connector } from "./connector.ts";
import { closedError, PoolError } from "./errors.ts";
import type { HostPool } from "./host_pool.ts";
import type { CloseReason, ExpireReason, Lifecycle, Observer } from "./lifecycle.ts";
import type { PoolPolicy } from "./options.ts";
import type { PooledSocket } from "./pooled_socket.ts";
import { runSetup, runValidate } from "./hooks.ts";
import { type Handout, SettleTurns } from "./settle_turns.ts";
import type { TransportConnection } from "./transports/transport.ts";
import { Upkeep } from "./upkeep.ts";
import { KeepAlive } from "./_timers.ts";
import { Waiter } from "./wait_queue.ts";

/** An acquire's place: its order of arrival, when (Date.now()), and where it was called. */
interface Ticket {
  readonly seq: number;
  readonly arrived: number;
  readonly stack: string;
}

/** Whoever asked for a connect directly (`add`), told how it ended. */
export interface Requester {
  resolve(): void;
  reject(error: unknown): void;
}

export class Scheduler {
  readonly #life: Lifecycle;
  readonly #policy: PoolPolicy;
  readonly #connector: Connector;
  readonly #owner: LeaseOwner;
  readonly #observer: Observer;
  readonly #turns: SettleTurns;
  readonly #upkeep: Upkeep;
  readonly #deadlines: AcquireDeadlines = new AcquireDeadlines((waiter) => this.#timeOut(waiter));
  /** Keeps the process alive while acquires wait. */
  readonly #keepAlive: KeepAlive = new KeepAlive();
  /** Waiters taken out of line while validate checks a connection for them (close() rejects them). */
  readonly #validatingFor: Map<PooledSocket, Waiter> = new Map();
  /** Addresses whose waiters maxTotal holds back. */
  readonly #blocked: Set<HostPool> = new Set();
  /** Aborted by close(): ends the budget of every hook still running. */
  readonly #closing: AbortController = new AbortController();
  /** Acquires not yet settled, all addresses. */
  #waiting = 0;
  #closed = false;

  constructor(
    life: Lifecycle,
    policy: PoolPolicy,
    connector: Connector,
    owner: LeaseOwner,
    observer: Observer,
  ) {
    this.#life = life;
    this.#policy = policy;
    this.#connector = connector;
    this.#owner = owner;
    this.#observer = observer;
    this.#turns = new SettleTurns(connector, (handout) => this.#handOut(handout));
    this.#upkeep = new Upkeep(life, (host) => this.dispatch(host));
  }

  /**
   * An acquire: straight to an idle connection when nobody is in line (it
   * then waits only for its settle turn), else in line for its address.
   */
  acquire(
    host: HostPool,
    signal: AbortSignal | undefined,
    fresh: boolean,
    stack: string,
  ): Promise<Lease> {
    const arrived = host.lastAcquired = Date.now();
    this.#upkeep.acquired(host);
    const ticket: Ticket = { seq: ++this.#life.stamps, arrived, stack };
    if (
      !fresh && host.waiters.size === 0 && host.idle.length > 0 &&
      (host.policy.validate === undefined ||
        // The socket #takeAtOnce will pick: the newest idle one, or the oldest for "fifo".
        arrived - host.idle[this.#policy.order === "lifo" ? host.idle.length - 1 : 0]!.idleSince <
          host.policy.validateAfter)
    ) {
      return this.#takeAtOnce(host, signal, ticket);
    }
    return this.#enqueue(host, signal, fresh, ticket);
  }

  // The fast path: no waiter, no queue, no deadline. The idle socket is
  // reserved now and lent once a settle turn asked for now is over (that
  // turn vouches for it and for this acquire). If it broke meanwhile, the
  // acquire joins the line in the place its arrival gave it.
  #takeAtOnce(host: HostPool, signal: AbortSignal | undefined, ticket: Ticket): Promise<Lease> {
    const socket = host.pickIdle(this.#policy.order, Infinity)!;
    this.#life.toReserved(socket, host, ticket.seq);
    const arrivedAt = this.#observer.observes("handed-out") ? performance.now() : -1;
    this.#countWaiting(1);
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
        this.#countWaiting(-1);
        // Still its own: an earlier acquire may have taken it over, and a later one reserved it again.
        if (socket.phase === "reserved" && socket.reservedBy === ticket.seq) {
          this.#life.unreserve(socket, host);
          // Connections retained meanwhile found it gone from the idle list:
          // with it back, the idle limits may be exceeded.
          if (host.waiters.size === 0) this.#trimIdle(host);
          this.dispatch(host);
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
    this.#countWaiting(-1);
    let socket = reserved;
    if (socket.phase !== "reserved" || socket.reservedBy !== ticket.seq) {
      // It broke during the turn (and was closed), the pool was closed, or an
      // earlier acquire took it over (it may be reserved again, by a later one).
      if (this.#closed) throw closedError(host.address.key);
      // First come, first served: a socket reserved by a later acquire is
      // this one's if this turn vouches for it too (idle before this acquire
      // arrived); that acquire then takes its place in line.
      const spare = laterReservation(host, ticket.seq);
      // Closing it may have left the address empty and forgotten.
      if (spare === undefined) {
        return this.#enqueue(this.#life.host(host.address), signal, false, ticket);
      }
      socket = spare;
    }
    if (this.#closed) {
      this.#life.close(socket, host, "pool-closed");
      throw closedError(host.address.key);
    }
    const now = Date.now();
    const idleMs = now - socket.idleSince;
    if (socket.expiresAt <= now || idleMs >= socket.idleTimeout) {
      const expiry = socket.expiresAt <= now ? "max-lifetime" : "idle-timeout";
      this.#life.close(socket, host, "expired", expiry);
      this.slotFreed(host);
      return this.#enqueue(this.#life.host(host.address), signal, false, ticket);
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
      this.dispatch(host);
    }
    return lease;
  }

  /** An acquire joins the line of its address; resolves with its lease. */
  #enqueue(
    host: HostPool,
    signal: AbortSignal | undefined,
    fresh: boolean,
    { seq, arrived, stack }: Ticket,
  ): Promise<Lease> {
    if (this.#closed) return Promise.reject(closedError(host.address.key));
    if (signal?.aborted) return Promise.reject(signal.reason);
    const deadline = this.#policy.acquireTimeout === Infinity
      ? Infinity
      : arrived + this.#policy.acquireTimeout;
    return new Promise<Lease>((resolve, reject) => {
      const waiter = new Waiter(
        seq,
        host.address.key,
        deadline,
        stack,
        fresh,
        resolve,
        reject,
      );
      if (this.#observer.observes("handed-out")) waiter.arrivedAt = performance.now();
      (fresh ? host.freshWaiters : host.waiters).insert(waiter);
      this.#countWaiting(1);
      if (signal !== undefined) {
        const onAbort = (): void => this.#leave(waiter, signal.reason);
        signal.addEventListener("abort", onAbort, { once: true });
        waiter.onDone(() => signal.removeEventListener("abort", onAbort));
      }
      this.#deadlines.add(waiter);
      this.dispatch(host);
    });
  }

  /** Opens a connection for `add`: it goes to a waiter or the idle list. */
  add(host: HostPool, requester: Requester): void {
    this.#makeRoom(host);
    this.#connect(host, requester);
  }

  /** warm(): keeps `count` idle connections ready; resolves once they are. */
  warm(host: HostPool, count: number): Promise<void> {
    this.#upkeep.asked(host, count);
    if (host.idle.length >= count) {
      this.#life.forgetIfEmpty(host);
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      host.warmers = [...host.warmers, { target: count, resolve, reject }];
      this.dispatch(host);
      if (host.coming === 0 && host.backoffTimer === undefined) {
        host.warmers = host.warmers.filter((warmer) => warmer.resolve !== resolve);
        reject(
          new PoolError(
            "LIMIT_REACHED",
            `Cannot warm "${host.address.key}": the pool is at its connection limit`,
            { address: host.address.key, operation: "warm" },
          ),
        );
      }
    });
  }

  /** Whether a new connection to `host` fits the limits now (closing an unneeded idle one elsewhere). */
  hasRoom(host: HostPool): boolean {
    if (host.size >= host.policy.maxPerHost) return false;
    return this.#life.size < this.#policy.maxTotal || this.#evictable(host) !== undefined;
  }

  /** Matches the address's waiters with idle sockets (after a settle turn) and starts the connects the rest need. */
  dispatch(host: HostPool): void {
    if (this.#closed) return;
    const waiters = host.waiters.size;
    if (waiters > 0 && host.idle.length > 0) this.#turns.schedule(host, this.#life.stamps);
    // Idle connections serve waiters in line; fresh waiters only take new ones.
    let needed = Math.max(0, waiters - host.idle.length) + host.freshWaiters.size - host.coming;
    if (needed > 0 && host.freshWaiters.size > 0) this.#closeIdleForFresh(host);
    while (needed > 0 && this.#mayConnect(host)) {
      this.#connect(host, undefined);
      needed--;
    }
    if (needed > 0) host.waiters.markWaiting(needed, performance.now());
    if (host.minIdle > 0) {
      this.#upkeep.refill(host, (count) => {
        let started = 0;
        while (started < count && this.#mayConnect(host)) {
          this.#connect(host, undefined);
          started++;
        }
        return started;
      });
    }
    this.#life.forgetIfEmpty(host);
  }

  /** Takes back a borrowed socket: idle (to the next waiter) or closed. */
  giveBack(socket: PooledSocket, host: HostPool, lease: Lease, idleTimeout: number): boolean {
    let reason: CloseReason | undefined;
    if (this.#closed) reason = "pool-closed";
    else if (!socket.clean) reason = "dropped";
    else if (socket.uses >= host.policy.maxUses) reason = "max-uses";
    // Decided before the return is reported, so that the event says what happens to it.
    const verdict = reason === undefined ? this.#idleVerdict(host, socket, idleTimeout) : undefined;
    this.#life.returned(socket, host, lease, verdict?.close === undefined && reason === undefined);
    if (reason !== undefined) {
      this.#life.close(socket, host, reason);
      this.slotFreed(host);
      return false;
    }
    const pooled = this.#makeIdle(host, socket, idleTimeout, verdict);
    if (pooled) this.#serveBlocked();
    else this.slotFreed(host);
    return pooled;
  }

  /** Closes a borrowed socket for `release`. */
  release(socket: PooledSocket, host: HostPool, lease: Lease): void {
    this.#life.returned(socket, host, lease, false);
    this.#life.close(socket, host, "released");
    this.slotFreed(host);
  }

  /** Closes idle connections now; the others are closed when they come back. */
  drain(host: HostPool): void {
    host.epoch++;
    // Idle ones reserved for an acquire's settle turn too: it gets another.
    // One being set up or validated is closed when that is over.
    for (const socket of [...host.idle, ...host.reserved]) {
      this.#life.close(socket, host, "drained");
    }
    this.slotFreed(host);
  }

  /** An idle socket broke (EOF, reset, stray bytes): it is gone. */
  idleBroke(socket: PooledSocket): void {
    const host = this.#life.hosts.get(socket.address.key);
    if (host === undefined || (socket.phase !== "idle" && socket.phase !== "reserved")) return;
    this.#life.close(socket, host, "broken");
    this.slotFreed(host);
  }

  /** An idle socket expired by policy (the expiry timer). */
  expired(socket: PooledSocket, reason: ExpireReason): void {
    const host = this.#life.hosts.get(socket.address.key);
    if (host === undefined || socket.phase !== "idle") return;
    this.#life.close(socket, host, "expired", reason);
    this.slotFreed(host);
  }

  /** Stops everything: waiters reject with POOL_CLOSED, idle sockets close. */
  close(): void {
    this.#closed = true;
    this.#deadlines.close();
    this.#blocked.clear();
    this.#turns.clear();
    for (const host of [...this.#life.hosts.values()]) {
      for (const waiter of [...host.waiters.drain(), ...host.freshWaiters.drain()]) {
        this.#settleWaiter(waiter).reject(closedError(host.address.key));
      }
      const warmers = host.warmers;
      host.warmers = [];
      for (const warmer of warmers) warmer.reject(closedError(host.address.key));
      for (const socket of host.validating) {
        const waiter = this.#validatingFor.get(socket);
        if (waiter === undefined || waiter.done) continue;
        waiter.validating = false;
        host.waitersValidating--;
        this.#settleWaiter(waiter).reject(closedError(host.address.key));
      }
      // Hooks still running on a connection see it closed and give up.
      for (
        const socket of [...host.idle, ...host.reserved, ...host.settingUp, ...host.validating]
      ) {
        this.#life.close(socket, host, "pool-closed");
      }
      this.#life.stopTimers(host);
      this.#upkeep.stop(host);
      this.#life.forgetIfEmpty(host);
    }
    // Hooks that hang give up now, not at the end of their budget: an
    // acquire waiting for a validation then rejects, and no timer is left.
    this.#closing.abort(new PoolError("POOL_CLOSED", "The pool was closed"));
    // Last: rejecting the waiters above releases the keep-alive once more.
    this.#keepAlive.close();
  }

  // ---- hand-outs -------------------------------------------------------------

  // Serves the waiters of a settle turn's hosts with the idle sockets it vouches for.
  #handOut(handout: Handout): void {
    for (const host of handout.hosts) {
      let now = 0;
      while (!this.#closed && host.waiters.size > 0 && host.idle.length > 0) {
        // Only waiters and sockets this turn vouches for: the oldest waiter
        // first (if it is too new, all are); the rest wait for their turn.
        if (host.waiters.peek()!.seq > handout.covers) break;
        const socket = host.pickIdle(this.#policy.order, handout.covers);
        if (socket === undefined) break;
        now ||= Date.now();
        // However late the expiry timer runs, an expired connection is never handed out.
        const expiry = socket.expiresAt <= now
          ? "max-lifetime"
          : now - socket.idleSince >= socket.idleTimeout
          ? "idle-timeout"
          : undefined;
        if (expiry !== undefined) {
          this.#life.close(socket, host, "expired", expiry);
          this.#serveBlocked();
          continue;
        }
        const waiter = this.#takeWaiter(host.waiters);
        const idleMs = now - socket.idleSince;
        if (host.policy.validate !== undefined && idleMs >= host.policy.validateAfter) {
          this.#validate(host, socket, waiter, idleMs);
          continue;
        }
        this.#lend(host, socket, waiter, idleMs);
      }
      // Sockets retained for waiters skipped the idle limits; with the line
      // served (or gone), what is left over must fit them again.
      if (host.waiters.size === 0) this.#trimIdle(host);
      this.dispatch(host);
    }
    this.#serveBlocked();
  }

  #validate(host: HostPool, socket: PooledSocket, waiter: Waiter, idleMs: number): void {
    const check = new Lease(this.#owner, socket, false, idleMs, "");
    this.#life.toValidating(socket, host, check);
    host.waitersValidating++;
    waiter.validating = true;
    this.#validatingFor.set(socket, waiter);
    runValidate(host.policy, check, socket, this.#closing.signal).then((ok) => {
      this.#validatingFor.delete(socket);
      if (waiter.validating) {
        waiter.validating = false;
        host.waitersValidating--;
      }
      const drained = socket.epoch < host.epoch;
      if (socket.phase !== "validating" || !ok || drained) {
        // Closed meanwhile (the pool was closed, say), failed, or drain()
        // was called meanwhile: the waiter goes back to its place in line
        // (by arrival: the head, unless an older one came back too) for the
        // next idle or new one.
        if (socket.phase === "validating") {
          this.#life.close(socket, host, ok ? "drained" : "validation-failed");
        }
        if (!waiter.done) {
          if (this.#closed) this.#settleWaiter(waiter).reject(closedError(host.address.key));
          else host.waiters.insert(waiter);
        }
        this.slotFreed(host);
        return;
      }
      if (!waiter.done) {
        this.#lend(host, socket, waiter, idleMs);
      } else if (!this.#makeIdle(host, socket, socket.idleTimeout)) this.slotFreed(host);
      this.dispatch(host);
    });
  }

  #lend(host: HostPool, socket: PooledSocket, waiter: Waiter, idleMs: number): void {
    const reused = socket.uses > 0;
    if (reused) this.#life.totals.reused++;
    const lease = new Lease(this.#owner, socket, !reused, idleMs, waiter.stack);
    // The clock is read only if something needs it: a wait to count, or an event.
    let waitMs = -1;
    if (waiter.waitingSince >= 0 || waiter.arrivedAt >= 0) {
      const now = performance.now();
      // Counted as a wait only if it waited for lack of supply, not just for its turn.
      if (waiter.waitingSince >= 0) this.#countWait(now - waiter.waitingSince);
      if (waiter.arrivedAt >= 0) waitMs = now - waiter.arrivedAt;
    }
    this.#life.toBorrowed(socket, host, lease, waitMs);
    this.#settleWaiter(waiter).resolve(lease);
  }

  #countWait(ms: number): void {
    const totals = this.#life.totals;
    totals.waited++;
    totals.waitedMs += ms;
    if (ms > totals.maxWaitMs) totals.maxWaitMs = ms;
  }

  #trimIdle(host: HostPool): void {
    while (host.idle.length > host.policy.maxIdlePerHost) {
      this.#closeIdle(host.idle[0]!, host, "max-idle");
    }
    while (this.#life.idleLru.size > this.#policy.maxIdle) {
      const victim = this.#evictable(undefined);
      if (victim === undefined) break;
      this.#closeIdle(victim, this.#life.hosts.get(victim.address.key)!, "max-idle");
    }
  }

  /** Puts a socket in the idle list, or closes it if policy says so. */
  #makeIdle(
    host: HostPool,
    socket: PooledSocket,
    idleTimeout: number,
    verdict: IdleVerdict = this.#idleVerdict(host, socket, idleTimeout),
  ): boolean {
    if (verdict.close !== undefined) {
      this.#life.close(socket, host, verdict.close, verdict.expiry);
      return false;
    }
    const victim = verdict.victim;
    // In the list before the victim goes, so that closing the victim can
    // never find this address empty and forget it.
    this.#life.toIdle(socket, host, idleTimeout);
    if (victim !== undefined) {
      this.#closeIdle(victim, this.#life.hosts.get(victim.address.key)!, "max-idle");
    }
    this.#upkeep.warmed(host);
    if (host.waiters.size > 0) this.#turns.schedule(host, this.#life.stamps);
    return true;
  }

  // What policy says of a socket about to go idle: close it (drained, or
  // expired by a limit), or keep it, evicting `victim` to stay within maxIdle.
  #idleVerdict(host: HostPool, socket: PooledSocket, idleTimeout: number): IdleVerdict {
    if (socket.epoch < host.epoch) return { close: "drained" };
    let victim: PooledSocket | undefined;
    let expiry: ExpireReason | undefined;
    if (idleTimeout <= 0) expiry = "idle-timeout";
    else if (host.waiters.size === 0) {
      if (socket.expiresAt !== Infinity && socket.expiresAt <= Date.now()) expiry = "max-lifetime";
      else if (host.idle.length >= host.policy.maxIdlePerHost) expiry = "max-idle";
      else if (this.#life.idleLru.size >= this.#policy.maxIdle) {
        victim = this.#policy.maxIdle === 0 ? undefined : this.#evictable(undefined);
        if (victim === undefined) expiry = "max-idle";
      }
    }
    if (expiry !== undefined) return { close: "expired", expiry };
    return victim === undefined ? KEEP : { victim };
  }

  // ---- connects ---------------------------------------------------------------

  // Whether a connect may start now for this address: within maxPerHost and
  // maxTotal (closing an idle connection elsewhere to make room), and only
  // one at a time while the address has not connected lately.
  #mayConnect(host: HostPool): boolean {
    if (!host.healthy && host.coming > 0) return false;
    if (host.size >= host.policy.maxPerHost) return false;
    if (this.#life.size < this.#policy.maxTotal) return true;
    if (this.#makeRoom(host)) return true;
    if (host.waiting > 0) this.#blocked.add(host);
    return false;
  }

  /** At maxPerHost, a retry waiting for a new connection gets the slot of an idle one. */
  #closeIdleForFresh(host: HostPool): void {
    if (host.size < host.policy.maxPerHost || host.idle.length <= host.waiters.size) return;
    this.#closeIdle(host.idle[0]!, host, "max-idle");
  }

  /** Closes the least recently used idle socket of another, unneeded address, if at maxTotal. */
  #makeRoom(host: HostPool): boolean {
    if (this.#life.size < this.#policy.maxTotal) return true;
    const victim = this.#evictable(host);
    if (victim === undefined) return false;
    // The freed slot is the caller's: nobody else may be dispatched into it.
    const owner = this.#life.hosts.get(victim.address.key)!;
    this.#life.close(victim, owner, "expired", "max-idle");
    this.#life.forgetIfEmpty(owner);
    return true;
  }

  /** The least recently used idle socket whose address does not need it. */
  #evictable(except: HostPool | undefined): PooledSocket | undefined {
    return this.#life.idleLru.find((socket) => {
      const owner = this.#life.hosts.get(socket.address.key)!;
      return owner !== except && owner.waiters.size === 0;
    });
  }

  #connect(host: HostPool, requester: Requester | undefined): void {
    this.#life.connecting(host);
    const started = Date.now();
    this.#connector.open(host.address, {
      timeout: host.policy.connectTimeout,
      keepAlive: host.policy.keepAlive,
    }, (result) => {
      if (result instanceof PoolError) this.#connectFailed(host, result, requester);
      else this.#connected(host, result, requester, started);
    }, () => {
      // A failed connect counts as connecting until its socket is really gone.
      this.#life.connectEnded(host);
      if (this.#closed) this.#life.forgetIfEmpty(host);
      else this.slotFreed(host);
    });
  }

  #connected(
    host: HostPool,
    connection: TransportConnection,
    requester: Requester | undefined,
    started: number,
  ): void {
    const socket = this.#life.opened(host, connection);
    if (this.#closed) {
      this.#life.close(socket, host, "pool-closed");
      requester?.reject(closedError(host.address.key));
      this.#life.forgetIfEmpty(host);
      return;
    }
    if (host.policy.setup === undefined) {
      this.#life.setUp(socket, host, 0);
      this.#ready(host, socket, requester);
      return;
    }
    const remaining = host.policy.connectTimeout - (Date.now() - started);
    const holder = new Lease(this.#owner, socket, true, 0, "");
    socket.lend("setting-up", holder);
    const setupStarted = Date.now();
    runSetup(host.policy, holder, socket, remaining, this.#closing.signal).then((failure) => {
      if (failure === undefined && socket.phase === "setting-up") {
        this.#life.setUp(socket, host, Date.now() - setupStarted);
        this.#ready(host, socket, requester);
        return;
      }
      const closed = socket.phase === "closed";
      if (!closed) this.#life.close(socket, host, "setup-failed");
      this.#connectFailed(
        host,
        this.#closed ? closedError(host.address.key, failure) : failure!,
        requester,
      );
    });
  }

  /** A new connection, set up: to a retry first, then the oldest waiter, else idle. */
  #ready(host: HostPool, socket: PooledSocket, requester: Requester | undefined): void {
    if (this.#closed) {
      this.#life.close(socket, host, "pool-closed");
      requester?.reject(closedError(host.address.key));
      this.#life.forgetIfEmpty(host);
      return;
    }
    host.healthy = true;
    this.#upkeep.succeeded(host);
    if (socket.epoch < host.epoch) {
      // drain() was called while it was set up: it was opened before.
      this.#life.close(socket, host, "drained");
      requester?.resolve();
      this.slotFreed(host);
      return;
    }
    // A waiter that an idle connection will serve after its settle turn must
    // not take this one: it goes idle (the refill or add opened it).
    const waiter = host.freshWaiters.size > 0
      ? this.#takeWaiter(host.freshWaiters)
      : host.waiters.size > host.idle.length
      ? this.#takeWaiter(host.waiters)
      : undefined;
    if (waiter !== undefined) this.#lend(host, socket, waiter, 0);
    else if (!this.#makeIdle(host, socket, host.policy.idleTimeout)) this.slotFreed(host);
    else this.#serveBlocked();
    requester?.resolve();
    this.dispatch(host);
  }

  // A failed connect's error goes to the requester (add), else to the
  // oldest waiter: callers get connect errors, nothing is retried silently.
  // With nobody to tell, it is reported as an event; refills back off.
  #connectFailed(host: HostPool, error: PoolError, requester: Requester | undefined): void {
    this.#life.totals.failed++;
    host.healthy = false;
    host.lastError = error;
    const warmers = host.warmers;
    host.warmers = [];
    for (const warmer of warmers) warmer.reject(error);
    if (requester !== undefined) requester.reject(error);
    else if (!this.#closed) {
      const line = host.freshWaiters.size > 0 ? host.freshWaiters : host.waiters;
      const waiter = this.#takeWaiter(line);
      if (waiter !== undefined) this.#settleWaiter(waiter).reject(error);
      else this.#observer.emit({ type: "connect-error", address: host.address.key, error });
    }
    if (this.#closed) {
      this.#life.forgetIfEmpty(host);
      return;
    }
    this.#upkeep.failed(host);
    this.slotFreed(host);
  }

  /** Closes an idle socket by policy and frees its slot. */
  #closeIdle(socket: PooledSocket, host: HostPool, reason: ExpireReason): void {
    if (socket.phase !== "idle") return;
    this.#life.close(socket, host, "expired", reason);
    this.slotFreed(host);
  }

  // A connection is gone: its address may connect again for its waiters,
  // and so may addresses that maxTotal held back, oldest waiter first.
  slotFreed(host: HostPool): void {
    // With others held back by maxTotal, the oldest waiter anywhere gets
    // the slot, not necessarily one of this address.
    if (this.#blocked.size > 0 && host.waiting > 0) this.#blocked.add(host);
    this.#serveBlocked();
    this.dispatch(host);
  }

  // Addresses that maxTotal held back get their chance, oldest waiter
  // first: at a free slot, or where an idle socket can make room.
  #serveBlocked(): void {
    if (this.#blocked.size === 0) return;
    if (this.#life.size >= this.#policy.maxTotal && this.#evictable(undefined) === undefined) {
      return;
    }
    const blocked = [...this.#blocked]
      .map((candidate) => ({ candidate, oldest: oldestSeq(candidate) }))
      .sort((a, b) => a.oldest - b.oldest);
    this.#blocked.clear();
    for (const { candidate, oldest } of blocked) {
      if (oldest !== Infinity) this.dispatch(candidate);
    }
  }

  // ---- waiters ----------------------------------------------------------------

  #takeWaiter(line: HostPool["waiters"]): Waiter {
    return line.shift()!;
  }

  /** A waiter is about to be resolved or rejected: it stops counting as waiting. */
  #settleWaiter(waiter: Waiter): Waiter {
    this.#countWaiting(-1);
    return waiter;
  }

  /** A waiter gives up (aborted, timed out): it leaves the line at once. */
  #leave(waiter: Waiter, error: unknown): void {
    if (waiter.done) return;
    const host = this.#life.hosts.get(waiter.key)!;
    (waiter.fresh ? host.freshWaiters : host.waiters).leave(waiter);
    if (waiter.validating) {
      waiter.validating = false;
      host.waitersValidating--;
    }
    this.#settleWaiter(waiter).reject(error);
    this.#life.forgetIfEmpty(host);
  }

  #timeOut(waiter: Waiter): void {
    const host = this.#life.hosts.get(waiter.key);
    this.#life.totals.timedOut++;
    const options = { address: waiter.key, operation: "acquire" };
    this.#leave(
      waiter,
      new PoolError(
        "ACQUIRE_TIMEOUT",
        `Cannot acquire a connection to "${waiter.key}" within ${this.#policy.acquireTimeout} ms`,
        host?.lastError === undefined ? options : { ...options, cause: host.lastError },
      ),
    );
  }

  #countWaiting(delta: number): void {
    this.#waiting += delta;
    if (this.#waiting > 0) this.#keepAlive.hold();
    else this.#keepAlive.release();
  }
}

/** Whether a socket may go idle: why not, or which idle socket it evicts. */
interface IdleVerdict {
  close?: CloseReason;
  expiry?: ExpireReason;
  victim?: PooledSocket;
}

/** The common verdict, shared: it goes idle and evicts nothing. */
const KEEP: IdleVerdict = Object.freeze({});

/** A socket reserved by an acquire after `seq` that was idle before `seq` arrived. */
function laterReservation(host: HostPool, seq: number): PooledSocket | undefined {
  if (host.reservedCount === 0) return undefined;
  for (const socket of host.reserved) {
    if (socket.reservedBy > seq && socket.idleStamp < seq) return socket;
  }
  return undefined;
}

function oldestSeq(host: HostPool): number {
  return Math.min(
    host.waiters.peek()?.seq ?? Infinity,
    host.freshWaiters.peek()?.seq ?? Infinity,
  );
}
