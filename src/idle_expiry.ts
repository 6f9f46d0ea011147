// Idle timeout and lifetime: one timer per address, for the earliest
// expiry among its idle sockets, moved only when a sooner one appears.
// The timer lives on the HostPool; closing a socket is the pool's job.
import type { ExpireReason } from "./lifecycle.ts";
import type { HostPool } from "./host_pool.ts";
import type { PooledSocket } from "./pooled_socket.ts";
import { unrefTimeout } from "./_timers.ts";

export class IdleExpiry {
  readonly #closeIdle: (socket: PooledSocket, reason: ExpireReason) => void;
  readonly #closed: () => boolean;

  /**
   * `closeIdle` closes an idle socket that expired and frees its slot;
   * `closed` says whether the pool is closed (then nothing expires).
   */
  constructor(
    closeIdle: (socket: PooledSocket, reason: ExpireReason) => void,
    closed: () => boolean,
  ) {
    this.#closeIdle = closeIdle;
    this.#closed = closed;
  }

  /** Makes the timer of `host` fire by the time its newly idle `socket` expires. */
  schedule(host: HostPool, socket: PooledSocket): void {
    const at = Math.min(socket.idleSince + socket.idleTimeout, socket.expiresAt);
    this.#scheduleAt(host, at);
  }

  /** Stops the timer of `host`. */
  stop(host: HostPool): void {
    clearTimeout(host.expiryTimer);
    host.expiryTimer = undefined;
    host.expiryAt = Infinity;
  }

  #expire(host: HostPool): void {
    host.expiryTimer = undefined;
    host.expiryAt = Infinity;
    if (this.#closed()) return;
    const now = Date.now();
    for (const socket of [...host.idle]) {
      if (socket.expiresAt <= now) this.#closeIdle(socket, "max-lifetime");
      // Connections kept for minIdle too: the refill replaces them.
      else if (socket.idleSince + socket.idleTimeout <= now) {
        this.#closeIdle(socket, "idle-timeout");
      }
    }
    for (const socket of host.idle) this.schedule(host, socket);
  }

  #scheduleAt(host: HostPool, at: number): void {
    if (at === Infinity || at >= host.expiryAt) return;
    clearTimeout(host.expiryTimer);
    host.expiryAt = at;
    host.expiryTimer = unrefTimeout(() => this.#expire(host), Math.max(0, at - Date.now()));
  }
}
