// The connections to one upstream address, by state. A socket's state is
// which collection holds it (idle stack, borrowed set) or the connecting
// count; the pool moves sockets between them.
import type { ResolvedAddress } from "./address.ts";
import type { PooledSocket } from "./pooled_socket.ts";

export class HostPool {
  readonly address: ResolvedAddress;
  /** Idle sockets, most recently retained last: reuse pops from the end (LIFO). */
  readonly idle: PooledSocket[] = [];
  readonly borrowed: Set<PooledSocket> = new Set();
  connecting = 0;

  constructor(address: ResolvedAddress) {
    this.address = address;
  }

  get empty(): boolean {
    return this.idle.length === 0 && this.borrowed.size === 0 && this.connecting === 0;
  }

  /** Takes an idle socket out, wherever it is in the stack. */
  removeIdle(socket: PooledSocket): boolean {
    const at = this.idle.lastIndexOf(socket);
    if (at === -1) return false;
    this.idle.splice(at, 1);
    return true;
  }
}
