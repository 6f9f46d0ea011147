// Acquire deadlines. Every acquire waits at most acquireTimeout, the same
// for all, so deadlines come due in arrival order: one queue and one timer
// (for the oldest) serve every waiter, instead of a timer per acquire.
import { type TimerHandle, unrefTimeout } from "./_timers.ts";
import type { Waiter } from "./wait_queue.ts";

export class AcquireDeadlines {
  #queue: Waiter[] = [];
  #head = 0;
  #timer: TimerHandle | undefined;
  #timerAt = Infinity;
  #expire: (waiter: Waiter) => void;

  constructor(expire: (waiter: Waiter) => void) {
    this.#expire = expire;
  }

  add(waiter: Waiter): void {
    if (waiter.deadline === Infinity) return;
    this.#queue.push(waiter);
    this.#schedule();
  }

  close(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Infinity;
    this.#queue = [];
    this.#head = 0;
  }

  #schedule(): void {
    while (this.#head < this.#queue.length && this.#queue[this.#head]!.done) this.#head++;
    this.#compact();
    const next = this.#queue[this.#head];
    if (next === undefined) {
      this.close();
      return;
    }
    if (this.#timer !== undefined && this.#timerAt <= next.deadline) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timerAt = next.deadline;
    this.#timer = unrefTimeout(() => this.#fire(), Math.max(0, next.deadline - Date.now()));
  }

  #fire(): void {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    const now = Date.now();
    while (this.#head < this.#queue.length) {
      const waiter = this.#queue[this.#head]!;
      if (!waiter.done && waiter.deadline > now) break;
      this.#head++;
      if (!waiter.done) this.#expire(waiter);
    }
    this.#schedule();
  }

  // Served waiters are skipped from the front; drop them now and then so the
  // queue holds about as many entries as there are waiters.
  #compact(): void {
    if (this.#head === this.#queue.length) {
      this.#queue = [];
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
  }
}
