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
  done = false;
  #resolve: (lease: Lease) => void;
  #reject: (error: unknown) => void;
  #cleanup: (() => void) | undefined;

  constructor(
    seq: number,
    key: string,
    deadline: number,
    stack: string,
    resolve: (lease: Lease) => void,
    reject: (error: unknown) => void,
  ) {
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
    this.size++;
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
    this.size--;
    this.#compact();
    return waiter;
  }

  /** A waiter left the line early; call before marking it done. */
  leave(waiter: Waiter): void {
    if (!waiter.done) this.size--;
  }

  /** Takes every waiter still waiting, oldest first. */
  drain(): Waiter[] {
    const live = this.#items.slice(this.#head).filter((waiter) => !waiter.done);
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
