// Bytes or a FIN may already sit in an idle connection's receive buffer
// without JavaScript having seen them: one settle turn lets the runtime
// deliver them (the idle watch then evicts that connection) before any
// idle connection is handed out. The turn must be asked for after the
// waiter arrived and after the socket became idle: a turn already under
// way vouches only for what it was asked for, and settle() says whether a
// new caller may join it (it returns the same promise). All addresses
// share a turn.
import type { HostPool } from "./host_pool.ts";

/** Hosts to serve once a settle turn is over. */
export interface Handout {
  /** The turn vouches for waiters and idle sockets stamped up to this. */
  covers: number;
  readonly hosts: Set<HostPool>;
}

/** Gathers hosts into handouts, one per settle turn. */
export class SettleTurns {
  readonly #transport: { settle(): Promise<void> };
  readonly #serve: (handout: Handout) => void;
  /** The settle turn that handouts may still join, and the handout it leads to. */
  #turn: Promise<void> | undefined;
  #handout: Handout | undefined;

  /** `serve` is called with each handout once its turn is over. */
  constructor(transport: { settle(): Promise<void> }, serve: (handout: Handout) => void) {
    this.#transport = transport;
    this.#serve = serve;
  }

  /** Serves `host` after a turn asked for now, which vouches for stamps up to `covers`. */
  schedule(host: HostPool, covers: number): void {
    const turn = this.#transport.settle();
    let handout = this.#handout;
    if (handout === undefined || turn !== this.#turn) {
      const next: Handout = handout = { covers: 0, hosts: new Set() };
      this.#turn = turn;
      this.#handout = next;
      turn.then(() => this.#handOut(next));
    }
    handout.covers = covers;
    handout.hosts.add(host);
  }

  /** Forgets the turn under way: its handout will not be joined any more. */
  clear(): void {
    this.#turn = this.#handout = undefined;
  }

  #handOut(handout: Handout): void {
    if (this.#handout === handout) this.#turn = this.#handout = undefined;
    this.#serve(handout);
  }
}
