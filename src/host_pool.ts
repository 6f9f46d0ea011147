// The connections to one upstream address, by state. A socket's state is
// which collection holds it (idle list, borrowed set) or the connecting
// count; the pool moves sockets between them and keeps its totals in step.
import type { ResolvedAddress } from "./address.ts";
import type { AddressPolicy, PoolPolicy } from "./options.ts";
import type { PooledSocket } from "./pooled_socket.ts";
import type { TimerHandle } from "./_timers.ts";
import { WaitQueue } from "./wait_queue.ts";

export class HostPool {
  readonly address: ResolvedAddress;
  readonly policy: AddressPolicy;
  /** Idle sockets in the order they became idle (oldest first). */
  readonly idle: PooledSocket[] = [];
  readonly borrowed: Set<PooledSocket> = new Set();
  readonly waiters: WaitQueue = new WaitQueue();
  connecting = 0;
  /** Idle connections to keep ready (minIdlePerHost, or what warm() asked). */
  minIdle: number;
  /**
   * False until a connect succeeds and again after one fails: then only one
   * connect at a time is tried, so a burst of waiters against a dead
   * upstream does not start a connect each.
   */
  healthy = false;
  /** The last connect failure, as the cause of a later acquire timeout. */
  lastError: unknown = undefined;
  /** Back-off of background refills while connects fail, in ms (0: none). */
  backoff = 0;
  backoffTimer: TimerHandle | undefined;
  /** The expiry timer of the idle list, and when it fires. */
  expiryTimer: TimerHandle | undefined;
  expiryAt = Infinity;
  /** warm() calls waiting for the idle count to reach their target. */
  warmers: Array<{ target: number; resolve(): void; reject(error: unknown): void }> = [];

  constructor(address: ResolvedAddress, policy: AddressPolicy) {
    this.address = address;
    this.policy = policy;
    this.minIdle = policy.minIdlePerHost;
  }

  /** Connections to this address in every state. */
  get size(): number {
    return this.idle.length + this.borrowed.size + this.connecting;
  }

  /** Nothing open, nothing pending, nothing to keep: the entry can go. */
  get empty(): boolean {
    return this.size === 0 && this.waiters.size === 0 && this.minIdle === 0 &&
      this.warmers.length === 0 && this.backoffTimer === undefined;
  }

  /**
   * Takes out the idle socket to hand out next (`order`: most or least
   * recently idle first) among those idle since `stamp` or before.
   */
  takeIdle(order: PoolPolicy["order"], stamp: number): PooledSocket | undefined {
    const idle = this.idle; // oldest first, so the sockets idle since `stamp` are a prefix
    let at = 0;
    if (order === "lifo") {
      at = idle.length - 1;
      while (at >= 0 && idle[at]!.idleStamp > stamp) at--;
    }
    const socket = idle[at];
    if (socket === undefined || socket.idleStamp > stamp) return undefined;
    if (at === idle.length - 1) idle.pop();
    else idle.splice(at, 1);
    return socket;
  }

  /** Takes an idle socket out, wherever it is in the list. */
  removeIdle(socket: PooledSocket): boolean {
    const at = this.idle.lastIndexOf(socket);
    if (at === -1) return false;
    this.idle.splice(at, 1);
    return true;
  }
}
