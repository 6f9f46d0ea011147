// The pool on real loopback sockets, with the default transport of the
// runtime that runs the suite: Deno's under `deno test`, Bun's under
// `bun test`, Node's under Node (against the npm build).
import { afterEach, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { ConnectionPool, PoolError } from "../mod.ts";
import { TestUpstream } from "./_upstream.ts";
import {
  checkIdleEviction,
  checkNoDirtyHandoff,
  checkReuseOnFreshUpstreams,
  checkSequentialReuse,
  roundTrip,
} from "./_pool_checks.ts";
import { runFixture } from "./_subprocess.ts";
import { runtime } from "./_runtime.ts";

describe(`pool on ${runtime} sockets`, () => {
  // A fresh upstream per test, so no test sees another's connections.
  let upstream: TestUpstream;
  beforeEach(async () => {
    upstream = await TestUpstream.start({ mode: "echo" });
  });
  afterEach(() => upstream.close());

  test("reuses one connection for sequential exchanges; no byte lost or repeated", () =>
    checkSequentialReuse(upstream, 300));

  test("concurrent borrowers each get their own connection and their own bytes", async () => {
    const pool = new ConnectionPool();
    for (let round = 0; round < 20; round++) {
      const leases = await Promise.all(
        Array.from({ length: 8 }, () => pool.acquire(upstream.address)),
      );
      const replies = await Promise.all(
        leases.map(({ connection }, i) => roundTrip(connection, `r${round}c${i}-`.repeat(50))),
      );
      replies.forEach((reply, i) => assert.equal(reply, `r${round}c${i}-`.repeat(50)));
      for (const { connection } of leases) pool.retain(connection);
    }
    assert.equal(pool.stats().idle, 8);
    assert.equal(pool.stats().totals.created, 8);
    await pool.close();
    await upstream.waitForOpen(0);
  });

  test("an idle connection the upstream closes or resets is evicted promptly", () =>
    checkIdleEviction(upstream, [(s) => s.end(), (s) => s.resetAndDestroy()]));

  test("bytes or FIN already sent into an idle connection are seen before reuse (600 rounds)", () =>
    checkNoDirtyHandoff(upstream, 600));

  test("a Unix-socket upstream: reuse, no byte lost, no dirty handoff (300 rounds)", () =>
    checkReuseOnFreshUpstreams({ unix: true }, 300));

  test("connect failures carry a code, the address and the cause; nothing stays connecting", async () => {
    const pool = new ConnectionPool();
    const closed = await TestUpstream.start();
    const port = closed.port;
    await closed.close();
    const refused = await pool.acquire({ hostname: "127.0.0.1", port }).catch((e) => e);
    assert.ok(refused instanceof PoolError, String(refused));
    assert.equal(refused.code, "CONNECT_REFUSED");
    assert.equal(refused.address, `127.0.0.1:${port}`);
    assert.ok(refused.cause instanceof Error);
    const unknown = await pool.acquire({ hostname: "no-such-host.invalid", port: 80 }).catch((e) =>
      e
    );
    assert.equal(unknown.code, "HOST_NOT_FOUND");
    const reason = new Error("gave up");
    const aborted = await pool.acquire(upstream.address, { signal: AbortSignal.abort(reason) })
      .catch((e) => e);
    assert.equal(aborted, reason);
    assert.deepEqual(
      [pool.stats().idle, pool.stats().borrowed, pool.stats().connecting],
      [0, 0, 0],
    );
    await pool.close();
  });

  test("close() closes idle ones at once and borrowed ones when they come back", async () => {
    const pool = new ConnectionPool();
    const leases = await Promise.all([1, 2, 3].map(() => pool.acquire(upstream.address)));
    for (const { connection } of leases) await roundTrip(connection, "x");
    pool.retain(leases[0]!.connection);
    pool.retain(leases[1]!.connection);
    await pool.close();
    await upstream.waitForOpen(1);
    await assert.rejects(
      pool.acquire(upstream.address),
      (e: PoolError) => e.code === "POOL_CLOSED",
    );
    assert.equal(await roundTrip(leases[2]!.connection, "still mine"), "still mine");
    assert.equal(pool.retain(leases[2]!.connection), false);
    await upstream.waitForOpen(0);
  });

  for (const mode of ["borrowed", "close-first"]) {
    test(`a ${mode === "borrowed" ? "borrowed connection" : "connection borrowed before close()"} keeps the process alive until its late reply`, async () => {
      const silent = await TestUpstream.start({ mode: "silent" });
      try {
        // The upstream answers 300 ms after the request; nothing else keeps the child alive.
        const answered = silent.nextConnection().then((server) =>
          server.once("data", () => setTimeout(() => server.write("late reply"), 300))
        );
        const result = await runFixture("borrowed_keepalive", [String(silent.port), mode]);
        await answered;
        assert.equal(result.killed, false, `the process hung: ${result.stdout}${result.stderr}`);
        assert.equal(result.stdout.trim(), "late reply", result.stderr);
        assert.equal(result.code, 0, result.stderr);
      } finally {
        await silent.close();
      }
    });
  }

  for (const mode of ["idle", "closed"]) {
    test(`a process with a ${mode} pool exits by itself, with no socket or timer left`, async () => {
      const result = await runFixture("pool_lifecycle", [String(upstream.port), mode]);
      assert.equal(
        result.killed,
        false,
        `the process was kept alive: ${result.stdout}${result.stderr}`,
      );
      assert.equal(result.code, 0, result.stderr);
      const report = JSON.parse(result.stdout.trim());
      assert.equal(report.borrowed, 0);
      assert.equal(report.idle, mode === "idle" ? 3 : 0);
      // Only timers and sockets count: stdout and stderr are pipes.
      const leftovers = (report.resources as string[]).filter((name) =>
        /Timeout|Immediate|TCPSocketWrap|TCPWrap/.test(name)
      );
      if (mode === "closed") assert.deepEqual(leftovers, []);
      await upstream.waitForOpen(0);
    });
  }
});
