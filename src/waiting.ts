// Acquires that wait: for a settle turn, in line, or for a validation. While
// any waits, the process stays alive (one shared keep-alive, not a timer
// per acquire); each waiter in line has a deadline, and one that gives up
// (aborted, timed out) leaves its line at once.
import { AcquireDeadlines } from "./deadlines.ts";
import { PoolError } from "./errors.ts";
import type { Lifecycle } from "./lifecycle.ts";
import type { PoolPolicy } from "./options.ts";
import { KeepAlive } from "./_timers.ts";
import type { Waiter } from "./wait_queue.ts";

export class Waiting {
  readonly #life: Lifecycle;
  readonly #policy: PoolPolicy;
  readonly #deadlines: AcquireDeadlines = new AcquireDeadlines((waiter) => this.#timeOut(waiter));
  /** Keeps the process alive while acquires wait. */
  readonly #keepAlive: KeepAlive = new KeepAlive();
  /** Acquires not yet settled, all addresses. */
  #count = 0;

  constructor(life: Lifecycle, policy: PoolPolicy) {
    this.#life = life;
    this.#policy = policy;
  }

  /** `delta` more acquires wait (fewer, if negative). */
  add(delta: number): void {
    this.#count += delta;
    if (this.#count > 0) this.#keepAlive.hold();
    else this.#keepAlive.release();
  }

  /** A waiter joined its line: it leaves with ACQUIRE_TIMEOUT at its deadline. */
  lined(waiter: Waiter): void {
    this.add(1);
    this.#deadlines.add(waiter);
  }

  /** A waiter is about to be resolved or rejected: it stops counting as waiting. */
  settle(waiter: Waiter): Waiter {
    this.add(-1);
    return waiter;
  }

  /** A waiter gives up (aborted, timed out): it leaves the line at once. */
  leave(waiter: Waiter, error: unknown): void {
    if (waiter.done) return;
    const host = this.#life.hosts.get(waiter.key)!;
    (waiter.fresh ? host.freshWaiters : host.waiters).leave(waiter);
    if (waiter.validating) {
      waiter.validating = false;
      host.waitersValidating--;
    }
    this.settle(waiter).reject(error);
    this.#life.forgetIfEmpty(host);
  }

  /** No deadline fires any more (close() rejects the waiters itself). */
  stopDeadlines(): void {
    this.#deadlines.close();
  }

  /** Lets the process go, for good: after close() rejected every waiter. */
  close(): void {
    this.#keepAlive.close();
  }

  #timeOut(waiter: Waiter): void {
    const host = this.#life.hosts.get(waiter.key);
    this.#life.totals.timedOut++;
    const options = { address: waiter.key, operation: "acquire" };
    this.leave(
      waiter,
      new PoolError(
        "ACQUIRE_TIMEOUT",
        `Cannot acquire a connection to "${waiter.key}" within ${this.#policy.acquireTimeout} ms`,
        host?.lastError === undefined ? options : { ...options, cause: host.lastError },
      ),
    );
  }
}
