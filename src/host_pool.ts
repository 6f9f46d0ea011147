// The connections to one upstream address, by phase. A connection's phase
// is which collection holds it (setting up, idle, validating, borrowed) or,
// before its socket exists, the connecting count. Only the lifecycle moves
// sockets between them (lifecycle.ts); the scheduler reads them.
//
// The collections other than the idle list are intrusive lists: the links
// live on the socket itself (a socket is in one of them at a time), so a
// move between phases touches a few fields and allocates or hashes nothing.
// Reserved and borrowed sockets, the phases every acquire passes through,
// are in pool-wide lists (lifecycle.ts) and only counted here: an acquire
// among thousands of addresses then touches as few of this address's
// objects as it can, all of them cold.
import type { ResolvedAddress } from "./address.ts";
import type { AddressPolicy, PoolPolicy } from "./options.ts";
import type { PooledSocket } from "./pooled_socket.ts";
import type { TimerHandle } from "./_timers.ts";
import { WaitQueue } from "./wait_queue.ts";

/** A warm() call waiting for the idle count to reach its target. */
export interface Warmer {
  target: number;
  resolve(): void;
  reject(error: unknown): void;
}

const NO_WARMERS: readonly Warmer[] = Object.freeze([]);

export class HostPool {
  readonly address: ResolvedAddress;
  readonly policy: AddressPolicy;
  /** Idle sockets in the order they became idle (oldest first). */
  readonly idle: PooledSocket[] = [];
  readonly settingUp: SocketList = new SocketList();
  readonly validating: SocketList = new SocketList();
  /** Idle sockets promised to an acquire that waits for its settle turn (in `shared.reserved`). */
  reservedCount = 0;
  /** Sockets lent to borrowers (in `shared.borrowed`). */
  borrowedCount = 0;
  /** The pool-wide lists of reserved and borrowed sockets. */
  readonly shared: SharedLists;
  readonly waiters: WaitQueue = new WaitQueue();
  /** Acquires that want a newly opened connection (retries): only a connect serves them. */
  readonly freshWaiters: WaitQueue = new WaitQueue();
  /** Waiters taken out of line while `validate` checks the connection meant for them. */
  waitersValidating = 0;
  /** Connects under way: sockets the pool asked for that do not exist yet. */
  connecting = 0;
  /** Idle connections to keep ready (minIdlePerHost, or what warm() asked). */
  minIdle: number;
  /** True if minIdle came from warm() or a perAddress entry, not the pool-wide default. */
  minIdleAsked: boolean;
  /** When an acquire last asked for this address (Date.now()), for the minIdle upkeep. */
  lastAcquired = 0;
  /**
   * False until a connect succeeds and again after one fails: then only one
   * connect at a time is tried, so a burst of waiters against a dead
   * upstream does not start a connect each.
   */
  healthy = false;
  /** Connects that failed in a row. */
  failures = 0;
  /** The minIdle upkeep stopped after failures; the next acquire or warm() resumes it. */
  upkeepPaused = false;
  /** The last connect failure, as the cause of a later acquire timeout. */
  lastError: unknown = undefined;
  /** Back-off of background refills while connects fail, in ms (0: none). */
  backoff = 0;
  backoffTimer: TimerHandle | undefined;
  /** The expiry timer of the idle list, and when it fires. */
  expiryTimer: TimerHandle | undefined;
  expiryAt = Infinity;
  /** Bumped by drain(): sockets opened before are closed when they come back. */
  epoch = 0;
  /**
   * Replaced, never pushed to: at first the one shared empty array, so that
   * the check at every return (upkeep.ts) reads no object of this address's.
   */
  warmers: readonly Warmer[] = NO_WARMERS;

  constructor(
    address: ResolvedAddress,
    policy: AddressPolicy,
    minIdleAsked: boolean,
    shared: SharedLists,
  ) {
    this.address = address;
    this.shared = shared;
    this.policy = policy;
    this.minIdle = policy.minIdlePerHost;
    this.minIdleAsked = minIdleAsked && policy.minIdlePerHost > 0;
  }

  /** This address's reserved sockets (a snapshot, from the pool-wide list). */
  get reserved(): PooledSocket[] {
    return this.reservedCount === 0 ? [] : this.#mine(this.shared.reserved);
  }

  /** This address's borrowed sockets (a snapshot, from the pool-wide list). */
  get borrowed(): PooledSocket[] {
    return this.borrowedCount === 0 ? [] : this.#mine(this.shared.borrowed);
  }

  /** Connections to this address in every phase. */
  get size(): number {
    return this.idle.length + this.reservedCount + this.borrowedCount + this.connecting +
      this.settingUp.size + this.validating.size;
  }

  /**
   * Acquires waiting for this address: in line, during a validation, or for
   * the settle turn before an idle socket reserved for them.
   */
  get waiting(): number {
    return this.waiters.size + this.freshWaiters.size + this.waitersValidating +
      this.reservedCount;
  }

  /** Connections that will be ready for waiters without a new connect. */
  get coming(): number {
    return this.connecting + this.settingUp.size;
  }

  /** Nothing open, nothing pending, nothing to keep: the entry can go. */
  get empty(): boolean {
    return this.size === 0 && this.waiting === 0 && this.minIdle === 0 &&
      this.warmers.length === 0 && this.backoffTimer === undefined;
  }

  // A live socket in a pool-wide list belongs to the entry of its address's
  // key: an entry is forgotten only once it holds nothing.
  #mine(list: SocketList): PooledSocket[] {
    const key = this.address.key;
    const mine: PooledSocket[] = [];
    for (let socket = list.first; socket !== undefined; socket = socket.next) {
      if (socket.address.key === key) mine.push(socket);
    }
    return mine;
  }

  /**
   * The idle socket to hand out next (`order`: most or least recently idle
   * first) among those idle since `stamp` or before; it stays in the list.
   */
  pickIdle(order: PoolPolicy["order"], stamp: number): PooledSocket | undefined {
    const idle = this.idle; // oldest first, so the sockets idle since `stamp` are a prefix
    let at = 0;
    if (order === "lifo") {
      at = idle.length - 1;
      while (at >= 0 && idle[at]!.idleStamp > stamp) at--;
    }
    const socket = idle[at];
    return socket === undefined || socket.idleStamp > stamp ? undefined : socket;
  }

  /** Puts a socket back in the idle list, in its place by when it became idle. */
  restoreIdle(socket: PooledSocket): void {
    const idle = this.idle;
    let at = idle.length;
    while (at > 0 && idle[at - 1]!.idleStamp > socket.idleStamp) at--;
    idle.splice(at, 0, socket);
  }

  /** Takes an idle socket out, wherever it is in the list (the ends are the common case). */
  removeIdle(socket: PooledSocket): boolean {
    const idle = this.idle;
    const last = idle.length - 1;
    if (idle[last] === socket) {
      idle.pop();
      return true;
    }
    const at = idle[0] === socket ? 0 : idle.indexOf(socket);
    if (at === -1) return false;
    idle.splice(at, 1);
    return true;
  }
}

/** Lists of sockets in one phase, all addresses. */
export interface SharedLists {
  readonly reserved: SocketList;
  readonly borrowed: SocketList;
}

/**
 * Sockets in the order they were added, linked through their own `prev`,
 * `next` and `list` fields: adding and deleting are a few field writes. A
 * socket is in at most one list at a time.
 */
export class SocketList implements Iterable<PooledSocket> {
  size = 0;
  #head: PooledSocket | undefined = undefined;
  #tail: PooledSocket | undefined = undefined;

  /** The oldest socket added, if any. */
  get first(): PooledSocket | undefined {
    return this.#head;
  }

  /** Appends `socket`, which must be in no list. */
  add(socket: PooledSocket): void {
    const tail = this.#tail;
    socket.list = this;
    socket.prev = tail;
    socket.next = undefined;
    if (tail === undefined) this.#head = socket;
    else tail.next = socket;
    this.#tail = socket;
    this.size++;
  }

  has(socket: PooledSocket): boolean {
    return socket.list === this;
  }

  /** Takes `socket` out; false if it was not in this list. */
  delete(socket: PooledSocket): boolean {
    if (socket.list !== this) return false;
    const { prev, next } = socket;
    if (prev === undefined) this.#head = next;
    else prev.next = next;
    if (next === undefined) this.#tail = prev;
    else next.prev = prev;
    socket.list = socket.prev = socket.next = undefined;
    this.size--;
    return true;
  }

  /** A snapshot: sockets added or deleted meanwhile do not change it (iteration is rare). */
  [Symbol.iterator](): Iterator<PooledSocket> {
    const sockets: PooledSocket[] = [];
    for (let socket = this.#head; socket !== undefined; socket = socket.next) sockets.push(socket);
    return sockets[Symbol.iterator]();
  }
}

/**
 * Every idle socket of the pool, least recently idle first (for maxIdle and
 * maxTotal). An array in the order sockets went idle, each socket knowing
 * its index (`lruIndex`): taking one out empties its slot, which eviction
 * skips, and the array is compacted once it is mostly empty slots. A
 * linked list would touch the socket's two neighbours at every hand-out,
 * both cold among thousands of idle sockets.
 */
export class IdleLru {
  /** Idle sockets in it. */
  size = 0;
  #slots: (PooledSocket | undefined)[] = [];
  /** Slots before this one are all empty. */
  #start = 0;

  add(socket: PooledSocket): void {
    socket.lruIndex = this.#slots.length;
    this.#slots.push(socket);
    this.size++;
    if (this.#slots.length > 4 * this.size + 64) this.#compact();
  }

  delete(socket: PooledSocket): boolean {
    const at = socket.lruIndex;
    if (at < 0) return false;
    this.#slots[at] = undefined;
    socket.lruIndex = -1;
    this.size--;
    return true;
  }

  /** The least recently idle socket that passes `test`, if any. */
  find(test: (socket: PooledSocket) => boolean): PooledSocket | undefined {
    const slots = this.#slots;
    while (this.#start < slots.length && slots[this.#start] === undefined) this.#start++;
    for (let at = this.#start; at < slots.length; at++) {
      const socket = slots[at];
      if (socket !== undefined && test(socket)) return socket;
    }
    return undefined;
  }

  #compact(): void {
    const slots: PooledSocket[] = [];
    for (let at = this.#start; at < this.#slots.length; at++) {
      const socket = this.#slots[at];
      if (socket === undefined) continue;
      socket.lruIndex = slots.length;
      slots.push(socket);
    }
    this.#slots = slots;
    this.#start = 0;
  }
}
