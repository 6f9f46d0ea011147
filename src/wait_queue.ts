// Acquires waiting in line: a FIFO queue per address. A waiter that leaves
// early (aborted, timed out) is only marked; the queue skips it later, so
// leaving is O(1) and `size` stays exact.
import type { Lease } from "./connection.ts";

export class Waiter {
  /** Order of arrival across all addresses: lower is older. */
  readonly seq: number;
  /** The address key it waits for. */
  readonly key: string;
  /** When it times out (Date.now() based), or Infinity. */
  readonly deadline: number;
  /** Where acquire() was called, for leak reports; empty when leaks are not tracked. */
  readonly stack: string;
  /** Wants a newly opened connection, never an idle one (a retry). */
  readonly fresh: boolean;
  done = false;
  /** In its address's queue (not taken out for a validation, say). */
  inLine = false;
  /** Taken out of line while `validate` checks the connection meant for it. */
  validating = false;
  /** When it arrived (performance.now()), if someone listens to events; else -1. */
  arrivedAt = -1;
  /** When it started waiting for lack of supply (performance.now()), or -1. */
  waitingSince = -1;
  #resolve: (lease: Lease) => void;
  #reject: (error: unknown) => void;
  #cleanup: (() => void) | undefined;

  constructor(
    seq: number,
    key: string,
    deadline: number,
    stack: string,
    fresh: boolean,
    resolve: (lease: Lease) => void,
    reject: (error: unknown) => void,
  ) {
    this.fresh = fresh;
    this.seq = seq;
    this.key = key;
    this.deadline = deadline;
    this.stack = stack;
    this.#resolve = resolve;
    this.#reject = reject;
  }

  /** Runs once the waiter is done either way (removes an abort listener). */
  onDone(cleanup: () => void): void {
    this.#cleanup = cleanup;
  }

  resolve(lease: Lease): void {
    this.done = true;
    this.#cleanup?.();
    this.#resolve(lease);
  }

  reject(error: unknown): void {
    this.done = true;
    this.#cleanup?.();
    this.#reject(error);
  }
}

export class WaitQueue {
  #items: Waiter[] = [];
  #head = 0;
  /** Waiters still waiting (not done). */
  size = 0;

  push(waiter: Waiter): void {
    this.#items.push(waiter);
    waiter.inLine = true;
    this.size++;
  }

  /**
   * Puts a waiter in line by its arrival: at the end, as a rule; before
   * newer ones when its hand-out fell through after they arrived.
   */
  insert(waiter: Waiter): void {
    const items = this.#items;
    const last = items[items.length - 1];
    if (last === undefined || last.seq < waiter.seq) {
      this.push(waiter);
      return;
    }
    let at = items.length;
    while (at > this.#head && (items[at - 1]!.done || items[at - 1]!.seq > waiter.seq)) at--;
    items.splice(at, 0, waiter);
    waiter.inLine = true;
    this.size++;
  }

  /**
   * Marks the newest `count` waiters still waiting as waiting for lack of
   * supply, from `now`, unless they already are.
   */
  markWaiting(count: number, now: number): void {
    const items = this.#items;
    for (let at = items.length - 1; count > 0 && at >= this.#head; at--) {
      const waiter = items[at]!;
      if (waiter.done) continue;
      if (waiter.waitingSince >= 0) return;
      waiter.waitingSince = now;
      count--;
    }
  }

  /** The oldest waiter still waiting, without taking it. */
  peek(): Waiter | undefined {
    this.#skipDone();
    return this.#items[this.#head];
  }

  /** Takes the oldest waiter still waiting. */
  shift(): Waiter | undefined {
    this.#skipDone();
    const waiter = this.#items[this.#head];
    if (waiter === undefined) return undefined;
    this.#items[this.#head++] = undefined as unknown as Waiter;
    waiter.inLine = false;
    this.size--;
    this.#compact();
    return waiter;
  }

  /** A waiter left the line early; call before marking it done. */
  leave(waiter: Waiter): void {
    if (!waiter.done && waiter.inLine) this.size--;
    waiter.inLine = false;
  }

  /** Takes every waiter still waiting, oldest first. */
  drain(): Waiter[] {
    const live = this.#items.slice(this.#head).filter((waiter) => !waiter.done);
    for (const waiter of live) waiter.inLine = false;
    this.#items = [];
    this.#head = 0;
    this.size = 0;
    return live;
  }

  #skipDone(): void {
    const items = this.#items;
    while (this.#head < items.length && items[this.#head]!.done) {
      items[this.#head++] = undefined as unknown as Waiter;
    }
    this.#compact();
  }

  #compact(): void {
    if (this.#head === this.#items.length) {
      this.#items = [];
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
  }
}
