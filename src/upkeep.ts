// Keeping minIdle connections ready per address: refills after evictions,
// back-off while connects fail, and knowing when to stop. A pool-wide
// `minIdlePerHost` applies to addresses in use: an address not acquired for
// `idleTimeout` is no longer topped up, nor one whose connects failed
// several times in a row with nobody waiting, until the next acquire.
// Addresses warm() or perAddress named are kept up, backing off. Background connects are rate-limited pool-wide, so a pool that
// has seen thousands of addresses cannot flood the network.
import type { HostPool } from "./host_pool.ts";
import type { Lifecycle } from "./lifecycle.ts";
import { unrefTimeout } from "./_timers.ts";

/** Failed connects in a row, with nobody waiting, after which the upkeep pauses. */
const FAILURES_TO_PAUSE = 3;
/** Background connects the whole pool may start per second. */
const BACKGROUND_CONNECTS_PER_SECOND = 200;
const MAX_BACKOFF_MS = 30_000;

export class Upkeep {
  readonly #life: Lifecycle;
  readonly #dispatch: (host: HostPool) => void;
  /** Background connects left in the current second, and when it ends. */
  #budget = BACKGROUND_CONNECTS_PER_SECOND;
  #budgetEnds = 0;

  constructor(life: Lifecycle, dispatch: (host: HostPool) => void) {
    this.#life = life;
    this.#dispatch = dispatch;
  }

  /** An acquire asked for the address: the upkeep resumes if it had stopped. */
  acquired(host: HostPool): void {
    if (!host.minIdleAsked) host.minIdle = host.policy.minIdlePerHost;
    host.upkeepPaused = false;
  }

  /** `warm()` asked for `count` idle connections from now on. */
  asked(host: HostPool, count: number): void {
    host.minIdle = count;
    host.minIdleAsked = true;
    host.upkeepPaused = false;
  }

  /**
   * Opens connections until minIdle idle ones are there or on their way;
   * `open(n)` starts up to n connects within the limits and says how many.
   */
  refill(host: HostPool, open: (count: number) => number): void {
    if (host.minIdle === 0 || host.backoffTimer !== undefined || host.upkeepPaused) return;
    const now = Date.now();
    if (!host.minIdleAsked && now - host.lastAcquired >= host.policy.idleTimeout) {
      host.minIdle = 0; // nobody uses it: let it go
      return;
    }
    // Only as many as the idle limits will keep: a connection opened just to
    // be closed again would start the refill over, endlessly.
    const target = Math.min(host.minIdle, host.policy.maxIdlePerHost);
    const waiting = host.waiters.size;
    const room = this.#life.policyMaxIdle - this.#life.idleLru.size - host.coming + waiting;
    const deficit = Math.min(target - host.idle.length - host.coming + waiting, room);
    if (deficit <= 0) return;
    if (now >= this.#budgetEnds) {
      this.#budget = BACKGROUND_CONNECTS_PER_SECOND;
      this.#budgetEnds = now + 1000;
    }
    const allowed = Math.min(deficit, this.#budget);
    this.#budget -= open(allowed);
    if (allowed < deficit) this.#retryAt(host, this.#budgetEnds - now);
  }

  /** A connect to the address succeeded. */
  succeeded(host: HostPool): void {
    host.failures = 0;
    host.backoff = 0;
    host.lastError = undefined;
  }

  /** A connect to the address failed: back off, or pause after several in a row. */
  failed(host: HostPool): void {
    host.failures++;
    if (host.minIdle === 0 || host.backoffTimer !== undefined) return;
    // A pool-wide minIdlePerHost gives up on an address after a few failures
    // (it may never come back); warm() and perAddress asked for this one, so
    // it is retried, backing off up to MAX_BACKOFF_MS between tries.
    if (!host.minIdleAsked && host.failures >= FAILURES_TO_PAUSE && host.waiting === 0) {
      host.upkeepPaused = true;
      host.minIdle = 0;
      return;
    }
    host.backoff = Math.min(Math.max(host.backoff * 2, 50), MAX_BACKOFF_MS);
    this.#retryAt(host, host.backoff);
  }

  /** Resolves the warm() calls whose target the idle count reached. */
  warmed(host: HostPool): void {
    if (host.warmers.length === 0) return;
    host.warmers = host.warmers.filter((warmer) => {
      if (host.idle.length < warmer.target) return true;
      warmer.resolve();
      return false;
    });
  }

  stop(host: HostPool): void {
    clearTimeout(host.backoffTimer);
    host.backoffTimer = undefined;
    host.minIdle = 0;
  }

  #retryAt(host: HostPool, ms: number): void {
    if (host.backoffTimer !== undefined) return;
    host.backoffTimer = unrefTimeout(() => {
      host.backoffTimer = undefined;
      this.#dispatch(host);
    }, Math.max(ms, 1));
  }
}
