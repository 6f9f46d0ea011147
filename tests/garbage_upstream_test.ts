// An upstream that writes other requests' stale replies into idle
// connections at random moments: no request may ever read bytes that are
// not its own reply, the pool must drop the poisoned connections, and
// every request must end with its own reply.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { ConnectionPool } from "../mod.ts";
import { delay, waitUntil } from "./_async.ts";
import { runtime } from "./_runtime.ts";
import { GarbageUpstream, replyTo } from "./_servers/garbage_upstream.ts";
import { ReplyReader } from "./_servers/reply_reader.ts";

const REQUESTS = 3000;
const WORKERS = 40;

let upstream: GarbageUpstream;

before(async () => {
  upstream = await GarbageUpstream.start({ junkChance: 0.5, junkDelayMs: { min: 0, max: 10 } });
});

after(async () => {
  await upstream.close();
});

/** What a request read first, when it was not its own reply. */
interface Poisoned {
  /** True if the junk was in the kernel before the acquire began: the pool should have seen it. */
  before: boolean;
  line: string;
  created: boolean;
  flushedBeforeAcquireMs: number;
}

test(
  "junk written into idle connections never reaches a request",
  { timeout: 60_000 },
  async () => {
    const pool = new ConnectionPool();
    const poisoned: Poisoned[] = [];
    let ok = 0;
    let nextId = 1;

    // One request, retried when junk that raced the handout came first (the
    // upstream wrote it after the acquire began: no pool can see that coming).
    const run = async (id: number): Promise<void> => {
      for (;;) {
        const acquiredFrom = performance.now();
        const { connection, created } = await pool.acquire(upstream.address);
        const reader = new ReplyReader(connection);
        await reader.send(`REQ ${id}\n`);
        const line = `${await reader.until("\n")}\n`;
        if (line === replyTo(id)) {
          pool.retain(connection); // closed instead if junk followed the reply
          ok++;
          return;
        }
        pool.release(connection);
        const serial = Number(/ junk(\d+)\n$/.exec(line)?.[1]);
        let flushedAt: number | undefined;
        if (Number.isInteger(serial)) {
          await waitUntil(() => (flushedAt = upstream.junkFlushedAt(serial)) !== undefined);
        }
        poisoned.push({
          before: flushedAt === undefined || flushedAt < acquiredFrom,
          line,
          created,
          flushedBeforeAcquireMs: flushedAt === undefined ? NaN : acquiredFrom - flushedAt,
        });
      }
    };

    const started = Date.now();
    await Promise.all(Array.from({ length: WORKERS }, async () => {
      while (nextId <= REQUESTS) {
        await run(nextId++);
        await delay(Math.random() * 30);
      }
    })).catch(async (error) => {
      await pool.close();
      throw error;
    });
    const seconds = ((Date.now() - started) / 1000).toFixed(1);

    const stats = pool.stats();
    await pool.close();
    const dropped = stats.totals.broken + stats.totals.dropped;
    console.log(
      `  garbage upstream (${runtime}): ${ok} requests in ${seconds}s, ` +
        `${upstream.junkWritten} junk writes, ${stats.totals.broken} idle connections dropped ` +
        `as broken, ${stats.totals.dropped} at retain, ${poisoned.length} races retried`,
    );
    assert.deepEqual(
      poisoned.filter((p) => p.before),
      [],
      "junk that was there before the acquire",
    );
    assert.equal(ok, REQUESTS);
    assert.ok(stats.totals.broken > 0, "no idle connection was dropped: the test proved nothing");
    assert.ok(dropped + poisoned.length <= upstream.junkWritten);
    assert.deepEqual(
      { borrowed: stats.borrowed, connecting: stats.connecting, waiting: stats.waiting },
      { borrowed: 0, connecting: 0, waiting: 0 },
    );
  },
);
