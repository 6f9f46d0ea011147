// The three things checked against every real server: idle closes seen by
// the idle read, many requests with idle gaps around the server's timeout,
// and the server killed and started again under load. Each returns a short
// summary for the test log.
import assert from "node:assert/strict";
import { ConnectionPool, type PoolCounts, PoolError, type PoolErrorCode } from "../../mod.ts";
import { delay, waitUntil } from "../_async.ts";
import {
  type ClientPool,
  type ClientState,
  request,
  RequestCounts,
  requestWithDeadline,
} from "./client.ts";
import { HandoutProbe } from "./handout_probe.ts";
import type { RealServer } from "./real_server.ts";
import { ReplyCutShort, ReplyReader } from "./reply_reader.ts";

let nextId = 1;

function random(min: number, max: number): number {
  return min + Math.random() * (max - min);
}

function assertNothingOut(counts: PoolCounts, what: string): void {
  assert.deepEqual(
    { borrowed: counts.borrowed, connecting: counts.connecting, waiting: counts.waiting },
    { borrowed: 0, connecting: 0, waiting: 0 },
    what,
  );
}

/**
 * Fills a pool with `count` idle connections and waits, without acquiring,
 * until the server's idle timeout closed them: each must leave the pool by
 * its idle read (counted as broken), none at a later use.
 */
export async function checkIdleClosesSeen(server: RealServer, count = 16): Promise<string> {
  const pool = new ConnectionPool();
  try {
    const leases = await Promise.all(
      Array.from({ length: count }, () => pool.acquire(server.address)),
    );
    for (const { connection } of leases) {
      await server.exchange(new ReplyReader(connection), nextId++);
    }
    for (const { connection } of leases) assert.equal(pool.retain(connection), true);
    const before = pool.stats();
    assert.equal(before.idle, count);
    const started = Date.now();
    await waitUntil(
      () => pool.stats().idle === 0,
      server.idleClose.max + 3000,
      `${server.name}: the ${count} idle connections leave the pool`,
    );
    const elapsed = Date.now() - started;
    const after = pool.stats();
    assert.equal(after.totals.broken - before.totals.broken, count, `${server.name}: broken`);
    assert.equal(after.totals.reused, before.totals.reused, "no acquire in between");
    assert.equal(after.totals.created, before.totals.created, "no connect in between");
    assert.equal(after.totals.expired, 0, "not the pool's own idle timeout");
    // Closed by the server's timeout, not by something sooner.
    assert.ok(elapsed >= server.idleClose.min - 100, `${server.name}: closed after ${elapsed} ms`);
    const { created, connection } = await pool.acquire(server.address);
    assert.equal(created, true);
    await server.exchange(new ReplyReader(connection), nextId++);
    pool.retain(connection);
    assertNothingOut(pool.stats(), server.name);
    return `${count} idle connections closed by ${server.name} left the pool by idle read ` +
      `${elapsed} ms after they were retained`;
  } finally {
    await pool.close();
  }
}

export interface GapOptions {
  requests: number;
  workers: number;
  /** Idle gap before each request, drawn uniformly from [min, max] ms. */
  gapMs: { min: number; max: number };
  /**
   * How the client meets the keep-alive edge (see client.ts): through
   * `exchange` (replayed by the pool when that is safe), or with this idle
   * deadline in ms given to `retain` and no retry at all.
   */
  idleDeadline?: number;
}

/** What `checkRandomIdleGaps` measured. */
export interface GapResult {
  /** A line for the test log. */
  summary: string;
  /** Requests that failed (the check throws if any did, after counting them). */
  failed: number;
  /** Attempts `exchange` ran again (`stats().totals.retried`). */
  retried: number;
}

/**
 * `workers` clients, each with its own pool (so its connection's idle time
 * is exactly its random gap), send `requests` requests in all, each after an
 * idle gap around the server's timeout. No request may fail (see client.ts:
 * the client itself never retries), and no pool may hand out a connection
 * whose close it had already seen.
 */
export async function checkRandomIdleGaps(
  server: RealServer,
  options: GapOptions,
): Promise<string> {
  const result = await measureRandomIdleGaps(server, options);
  if (result.failed > 0) throw new Error(`${server.name}: ${result.summary}`);
  return result.summary;
}

/** `checkRandomIdleGaps`, with failed requests counted rather than thrown (for margin sweeps). */
export async function measureRandomIdleGaps(
  server: RealServer,
  options: GapOptions,
): Promise<GapResult> {
  const probe = await HandoutProbe.create();
  const counts = new RequestCounts();
  const failures: unknown[] = [];
  const deadline = options.idleDeadline;
  const pools: ClientPool[] = Array.from(
    { length: options.workers },
    () => new ConnectionPool<ClientState>({ transport: probe }),
  );
  const started = Date.now();
  const stalls = new StallWatch();
  try {
    let issued = 0;
    await Promise.all(pools.map(async (pool) => {
      // The first requests at the rate of the later ones: all at once, they
      // would hold up the event loop for hundreds of ms (see StallWatch).
      await delay(random(0, (options.gapMs.min + options.gapMs.max) / 2));
      for (let i = 0; issued < options.requests; i++) {
        if (i > 0) await delay(random(options.gapMs.min, options.gapMs.max));
        if (issued++ >= options.requests) break;
        try {
          if (deadline === undefined) await request(pool, server, nextId++, counts, probe);
          else await requestWithDeadline(pool, server, nextId++, counts, deadline, probe);
        } catch (error) {
          failures.push(error);
        }
      }
    }));
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    const stalled = stalls.stop();
    let broken = 0;
    let expired = 0;
    let retried = 0;
    for (const pool of pools) {
      const stats = pool.stats();
      assertNothingOut(stats, server.name);
      broken += stats.totals.broken;
      expired += stats.totals.expired;
      retried += stats.totals.retried;
    }
    const how = deadline === undefined
      ? "exchange(), idempotent"
      : `idle deadline ${deadline} ms, no retry`;
    const races = counts.racesIdleMs.join(", ") || "-";
    const summary = `${how}: ${counts.ok} ok, ${failures.length} failed of ${options.requests} ` +
      `requests in ${seconds}s, gaps ${options.gapMs.min}-${options.gapMs.max} ms: ` +
      `${counts.reused} reused, ${counts.created} new, ${broken} idle closes seen, ` +
      `${expired} expired by the pool, longest idle reuse ${Math.round(counts.longestIdleReuse)} ` +
      `ms, ${retried} retried by exchange (attempts on a reused connection closed before a ` +
      `reply byte, idle ms: ${races}), ${counts.deadAtHandout} dead handouts; longest stall of ` +
      `this process's event loop ${stalled} ms`;
    if (failures.length > 0) {
      return {
        summary: `${summary}; first failure: ${errorText(failures[0])}`,
        failed: failures.length,
        retried,
      };
    }
    assert.equal(counts.ok, options.requests);
    assert.equal(counts.deadAtHandout, 0, `${server.name}: handed out already closed`);
    if (deadline === undefined) {
      // Every race was replayed by the pool, and nothing else was.
      assert.equal(retried, counts.racesIdleMs.length, `${server.name}: retries`);
      // Enough gaps ran past the timeout that the server closed idle connections.
      assert.ok(broken > 0, `${server.name}: no idle connection was closed by the server`);
    } else {
      assert.equal(retried, 0, "no exchange, no retry");
      // Gaps ran past the deadline: the pool closed those connections itself.
      assert.ok(expired > 0, `${server.name}: no connection reached its idle deadline`);
      // (The probe's idle time runs from the last byte received, a little
      // before the pool's, which runs from retain.)
      assert.ok(
        counts.longestIdleReuse < server.idleClose.min,
        `${server.name}: reused after ${counts.longestIdleReuse} ms idle, past the server's timeout`,
      );
    }
    return { summary, failed: 0, retried };
  } finally {
    stalls.stop();
    await Promise.all(pools.map((pool) => pool.close()));
  }
}

/**
 * The longest time this process's event loop was held up (ms): a 10 ms
 * interval timer's worst lateness. A reply that arrives in such a stall is
 * read that much later than the server sent it, so a connection's idle
 * time, counted by the pool from `retain`, is short by as much: an idle
 * deadline's margin below the server's timeout must cover it.
 */
class StallWatch {
  #longest = 0;
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor() {
    let last = performance.now();
    this.#timer = setInterval(() => {
      const now = performance.now();
      this.#longest = Math.max(this.#longest, now - last - 10);
      last = now;
    }, 10);
  }

  /** Stops watching; returns the longest stall seen, in whole ms. */
  stop(): number {
    clearInterval(this.#timer);
    this.#timer = undefined;
    return Math.round(this.#longest);
  }
}

function errorText(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/**
 * Requests run back to back from more workers than the pool has room for;
 * the server is killed (SIGKILL) mid-flight and started again on the same
 * port. Every failure must be a PoolError with one of the codes below, or an
 * EOF where a reply was due (the pool's read returns null, as a stream
 * does at EOF; the client makes that its own error, ReplyCutShort);
 * nothing may stay borrowed, connecting or waiting; and the same pool must
 * serve requests again once the server is back.
 */
export async function checkRestartUnderLoad(server: RealServer): Promise<string> {
  const pool = new ConnectionPool({ maxPerHost: 12, connectTimeout: 1000, acquireTimeout: 1000 });
  const failures = new Map<string, number>();
  const foreign: unknown[] = [];
  let phase: "up" | "down" | "back" = "up";
  const ok = { up: 0, down: 0, back: 0 };
  let stop = false;
  const worker = async (): Promise<void> => {
    while (!stop) {
      try {
        await once(pool, server);
        ok[phase]++;
      } catch (error) {
        const kind = error instanceof PoolError && EXPECTED_WHILE_DOWN.includes(error.code)
          ? error.code
          : error instanceof ReplyCutShort
          ? "EOF where a reply was due"
          : undefined;
        if (kind === undefined) foreign.push(error);
        else failures.set(kind, (failures.get(kind) ?? 0) + 1);
        await delay(5);
      }
    }
  };
  try {
    const workers = Array.from({ length: 24 }, worker);
    await waitUntil(() => ok.up >= 200, 10_000, `${server.name}: requests before the kill`);
    await server.process.stop("SIGKILL", 0);
    phase = "down";
    await delay(300);
    await server.process.restart();
    phase = "back";
    await waitUntil(() => ok.back >= 200, 10_000, `${server.name}: requests after the restart`);
    stop = true;
    await Promise.all(workers);
    assert.deepEqual(foreign, [], `${server.name}: failures that are not the pool's`);
    assert.ok(failures.size > 0, `${server.name}: the kill went unnoticed`);
    assertNothingOut(pool.stats(), server.name);
    await once(pool, server); // the same pool, recovered
    assertNothingOut(pool.stats(), server.name);
    const listed = [...failures].map(([kind, count]) => `${count} ${kind}`).join(", ");
    return `killed and restarted under load: ${ok.up} ok before, ${ok.back} ok after, ` +
      `failures: ${listed}; nothing left borrowed, connecting or waiting`;
  } finally {
    stop = true;
    if (phase === "down") await server.process.restart().catch(() => {});
    await pool.close();
  }
}

/** What a request may fail with while its server is killed and restarted. */
const EXPECTED_WHILE_DOWN: PoolErrorCode[] = [
  "CONNECTION_LOST", // reset under a request
  "CONNECT_REFUSED", // nothing listening
  "CONNECT_FAILED", // reset in the accept queue of the server being killed (ECONNRESET)
  "CONNECT_TIMEOUT",
  "ACQUIRE_TIMEOUT",
];

/** One request, no retry: a connection not retained after a complete reply is released. */
async function once(pool: ConnectionPool, server: RealServer): Promise<void> {
  const { connection } = await pool.acquire(server.address);
  try {
    await server.exchange(new ReplyReader(connection), nextId++);
  } catch (error) {
    pool.release(connection);
    throw error;
  }
  pool.retain(connection);
}
