// Who gets which connection. Matches waiters with supply (an idle
// connection after its settle turn, a finished connect and setup, a freed
// slot) within maxPerHost and maxTotal, oldest waiter first; starts the
// connects that waiters and the minIdle upkeep need. It asks the lifecycle
// to move connections and never edits the collections itself. An acquire
// with nobody ahead of it takes the fast path (fast_path.ts); what the idle
// limits allow is idle_limits.ts, the waiting acquires' keep-alive and
// deadlines waiting.ts.
import { Lease, type LeaseOwner } from "./connection.ts";
import type { Connector } from "./connector.ts";
import { FastPath, type Line, type Ticket } from "./fast_path.ts";
import { closedError, PoolError } from "./errors.ts";
import type { HostPool } from "./host_pool.ts";
import type { CloseReason, ExpireReason, Lifecycle, Observer } from "./lifecycle.ts";
import type { PoolPolicy } from "./options.ts";
import type { PooledSocket } from "./pooled_socket.ts";
import { runSetup, runValidate } from "./hooks.ts";
import { IdleLimits, type IdleVerdict } from "./idle_limits.ts";
import { type Handout, SettleTurns } from "./settle_turns.ts";
import type { TransportConnection } from "./transports/transport.ts";
import { Upkeep } from "./upkeep.ts";
import { Waiter } from "./wait_queue.ts";
import { Waiting } from "./waiting.ts";

/** Whoever asked for a connect directly (`add`), told how it ended. */
export interface Requester {
  resolve(): void;
  reject(error: unknown): void;
}

export class Scheduler implements Line {
  readonly #life: Lifecycle;
  readonly #policy: PoolPolicy;
  readonly #connector: Connector;
  readonly #owner: LeaseOwner;
  readonly #observer: Observer;
  readonly #turns: SettleTurns;
  readonly #upkeep: Upkeep;
  readonly #limits: IdleLimits;
  readonly #waiting: Waiting;
  readonly #fastPath: FastPath;
  /** Waiters taken out of line while validate checks a connection for them (close() rejects them). */
  readonly #validatingFor: Map<PooledSocket, Waiter> = new Map();
  /** Addresses whose waiters maxTotal holds back. */
  readonly #blocked: Set<HostPool> = new Set();
  /** Aborted by close(): ends the budget of every hook still running. */
  readonly #closing: AbortController = new AbortController();
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
    this.#limits = new IdleLimits(life, policy, (host) => this.slotFreed(host));
    this.#waiting = new Waiting(life, policy);
    this.#fastPath = new FastPath(
      life,
      policy,
      connector,
      owner,
      observer,
      this.#waiting,
      this.#limits,
      this,
    );
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
    if (!fresh && this.#fastPath.applies(host, arrived)) {
      return this.#fastPath.take(host, signal, ticket);
    }
    return this.#enqueue(host, signal, fresh, ticket);
  }

  /** Whether close() was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** An acquire the fast path could not serve joins the line of its address. */
  enqueue(host: HostPool, signal: AbortSignal | undefined, ticket: Ticket): Promise<Lease> {
    return this.#enqueue(host, signal, false, ticket);
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
      this.#waiting.lined(waiter);
      if (signal !== undefined) {
        const onAbort = (): void => this.#waiting.leave(waiter, signal.reason);
        signal.addEventListener("abort", onAbort, { once: true });
        waiter.onDone(() => signal.removeEventListener("abort", onAbort));
      }
      this.dispatch(host);
    });
  }

  /** Opens a connection for `add`: it goes to a waiter or the idle list. */
  add(host: HostPool, requester: Requester): void {
    this.#limits.makeRoom(host);
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
    return this.#life.size < this.#policy.maxTotal || this.#limits.evictable(host) !== undefined;
  }

  /** Matches the address's waiters with idle sockets (after a settle turn) and starts the connects the rest need. */
  dispatch(host: HostPool): void {
    if (this.#closed) return;
    const waiters = host.waiters.size;
    if (waiters > 0 && host.idle.length > 0) this.#turns.schedule(host, this.#life.stamps);
    // Idle connections serve waiters in line; fresh waiters only take new ones.
    let needed = Math.max(0, waiters - host.idle.length) + host.freshWaiters.size - host.coming;
    if (needed > 0 && host.freshWaiters.size > 0) this.#limits.closeForFresh(host);
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
    const verdict = reason === undefined
      ? this.#limits.verdict(host, socket, idleTimeout)
      : undefined;
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
    this.#waiting.stopDeadlines();
    this.#blocked.clear();
    this.#turns.clear();
    for (const host of [...this.#life.hosts.values()]) {
      for (const waiter of [...host.waiters.drain(), ...host.freshWaiters.drain()]) {
        this.#waiting.settle(waiter).reject(closedError(host.address.key));
      }
      const warmers = host.warmers;
      host.warmers = [];
      for (const warmer of warmers) warmer.reject(closedError(host.address.key));
      for (const socket of host.validating) {
        const waiter = this.#validatingFor.get(socket);
        if (waiter === undefined || waiter.done) continue;
        waiter.validating = false;
        host.waitersValidating--;
        this.#waiting.settle(waiter).reject(closedError(host.address.key));
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
    this.#waiting.close();
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
      if (host.waiters.size === 0) this.#limits.trim(host);
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
          if (this.#closed) this.#waiting.settle(waiter).reject(closedError(host.address.key));
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
    this.#waiting.settle(waiter).resolve(lease);
  }

  #countWait(ms: number): void {
    const totals = this.#life.totals;
    totals.waited++;
    totals.waitedMs += ms;
    if (ms > totals.maxWaitMs) totals.maxWaitMs = ms;
  }

  /** Puts a socket in the idle list, or closes it if policy says so. */
  #makeIdle(
    host: HostPool,
    socket: PooledSocket,
    idleTimeout: number,
    verdict: IdleVerdict = this.#limits.verdict(host, socket, idleTimeout),
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
      this.#limits.close(victim, this.#life.hosts.get(victim.address.key)!, "max-idle");
    }
    this.#upkeep.warmed(host);
    if (host.waiters.size > 0) this.#turns.schedule(host, this.#life.stamps);
    return true;
  }

  // ---- connects ---------------------------------------------------------------

  // Whether a connect may start now for this address: within maxPerHost and
  // maxTotal (closing an idle connection elsewhere to make room), and only
  // one at a time while the address has not connected lately.
  #mayConnect(host: HostPool): boolean {
    if (!host.healthy && host.coming > 0) return false;
    if (host.size >= host.policy.maxPerHost) return false;
    if (this.#life.size < this.#policy.maxTotal) return true;
    if (this.#limits.makeRoom(host)) return true;
    if (host.waiting > 0) this.#blocked.add(host);
    return false;
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
      if (waiter !== undefined) this.#waiting.settle(waiter).reject(error);
      else this.#observer.emit({ type: "connect-error", address: host.address.key, error });
    }
    if (this.#closed) {
      this.#life.forgetIfEmpty(host);
      return;
    }
    this.#upkeep.failed(host);
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
    if (
      this.#life.size >= this.#policy.maxTotal && this.#limits.evictable(undefined) === undefined
    ) {
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
}

function oldestSeq(host: HostPool): number {
  return Math.min(
    host.waiters.peek()?.seq ?? Infinity,
    host.freshWaiters.peek()?.seq ?? Infinity,
  );
}
