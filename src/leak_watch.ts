// Leak detection: a lease borrowed longer than leakTimeout is reported once.
// Leases are kept in lending order, so the oldest is first and one timer
// (for it) serves them all. The watch notes when each was lent: without it,
// nothing reads the clock at a handout.
import type { Lease } from "./connection.ts";
import { type TimerHandle, unrefTimeout } from "./_timers.ts";

export class LeakWatch {
  readonly #timeout: number;
  readonly #report: (lease: Lease, borrowedMs: number) => void;
  /** Each lease watched, with when it was lent (Date.now()), oldest first. */
  #leases: Map<Lease, number> = new Map();
  #timer: TimerHandle | undefined;

  constructor(timeout: number, report: (lease: Lease, borrowedMs: number) => void) {
    this.#timeout = timeout;
    this.#report = report;
  }

  add(lease: Lease): void {
    this.#leases.set(lease, Date.now());
    if (this.#timer === undefined) this.#schedule();
  }

  delete(lease: Lease): void {
    this.#leases.delete(lease);
  }

  close(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#leases.clear();
  }

  #schedule(): void {
    const oldest = this.#leases.values().next();
    if (oldest.done) return;
    const due = oldest.value + this.#timeout - Date.now();
    this.#timer = unrefTimeout(() => this.#fire(), Math.max(0, due));
  }

  #fire(): void {
    this.#timer = undefined;
    const now = Date.now();
    for (const [lease, lentAt] of this.#leases) {
      const borrowedMs = now - lentAt;
      if (borrowedMs < this.#timeout) break;
      // Reported once: it leaves the watch, but stays borrowed.
      this.#leases.delete(lease);
      this.#report(lease, borrowedMs);
    }
    this.#schedule();
  }
}
