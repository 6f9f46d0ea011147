// Which idle connections the limits let stay: maxIdlePerHost and maxIdle
// for a connection coming back, and room under maxTotal for a new one
// (closing the least recently used idle connection of an address that
// does not need it). Closes through the lifecycle, and tells the scheduler
// of each slot it frees.
import type { HostPool } from "./host_pool.ts";
import type { CloseReason, ExpireReason, Lifecycle } from "./lifecycle.ts";
import type { PoolPolicy } from "./options.ts";
import type { PooledSocket } from "./pooled_socket.ts";

/** Whether a socket may go idle: why not, or which idle socket it evicts. */
export interface IdleVerdict {
  close?: CloseReason;
  expiry?: ExpireReason;
  victim?: PooledSocket;
}

/** The common verdict, shared: it goes idle and evicts nothing. */
const KEEP: IdleVerdict = Object.freeze({});

export class IdleLimits {
  readonly #life: Lifecycle;
  readonly #policy: PoolPolicy;
  readonly #slotFreed: (host: HostPool) => void;

  constructor(life: Lifecycle, policy: PoolPolicy, slotFreed: (host: HostPool) => void) {
    this.#life = life;
    this.#policy = policy;
    this.#slotFreed = slotFreed;
  }

  /**
   * What policy says of a socket about to go idle: close it (drained, or
   * expired by a limit), or keep it, evicting `victim` to stay within maxIdle.
   * Waiters lift the idle limits: the socket is about to serve one.
   */
  verdict(host: HostPool, socket: PooledSocket, idleTimeout: number): IdleVerdict {
    if (socket.epoch < host.epoch) return { close: "drained" };
    let victim: PooledSocket | undefined;
    let expiry: ExpireReason | undefined;
    if (idleTimeout <= 0) expiry = "idle-timeout";
    else if (host.waiters.size === 0) {
      if (socket.expiresAt !== Infinity && socket.expiresAt <= Date.now()) expiry = "max-lifetime";
      else if (host.idle.length >= host.policy.maxIdlePerHost) expiry = "max-idle";
      else if (this.#life.idleLru.size >= this.#policy.maxIdle) {
        victim = this.#policy.maxIdle === 0 ? undefined : this.evictable(undefined);
        if (victim === undefined) expiry = "max-idle";
      }
    }
    if (expiry !== undefined) return { close: "expired", expiry };
    return victim === undefined ? KEEP : { victim };
  }

  /** Closes idle sockets over maxIdlePerHost (oldest first) and maxIdle (least recently used). */
  trim(host: HostPool): void {
    while (host.idle.length > host.policy.maxIdlePerHost) {
      this.close(host.idle[0]!, host, "max-idle");
    }
    while (this.#life.idleLru.size > this.#policy.maxIdle) {
      const victim = this.evictable(undefined);
      if (victim === undefined) break;
      this.close(victim, this.#life.hosts.get(victim.address.key)!, "max-idle");
    }
  }

  /** At maxPerHost, a retry waiting for a new connection gets the slot of an idle one. */
  closeForFresh(host: HostPool): void {
    if (host.size < host.policy.maxPerHost || host.idle.length <= host.waiters.size) return;
    this.close(host.idle[0]!, host, "max-idle");
  }

  /** Closes the least recently used idle socket of another, unneeded address, if at maxTotal. */
  makeRoom(host: HostPool): boolean {
    if (this.#life.size < this.#policy.maxTotal) return true;
    const victim = this.evictable(host);
    if (victim === undefined) return false;
    // The freed slot is the caller's: nobody else may be dispatched into it.
    const owner = this.#life.hosts.get(victim.address.key)!;
    this.#life.close(victim, owner, "expired", "max-idle");
    this.#life.forgetIfEmpty(owner);
    return true;
  }

  /** The least recently used idle socket whose address does not need it. */
  evictable(except: HostPool | undefined): PooledSocket | undefined {
    return this.#life.idleLru.find((socket) => {
      const owner = this.#life.hosts.get(socket.address.key)!;
      return owner !== except && owner.waiters.size === 0;
    });
  }

  /** Closes an idle socket by policy and frees its slot. */
  close(socket: PooledSocket, host: HostPool, reason: ExpireReason): void {
    if (socket.phase !== "idle") return;
    this.#life.close(socket, host, "expired", reason);
    this.#slotFreed(host);
  }
}
