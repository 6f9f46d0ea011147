// Driver-ready connections (issue 11) on the in-memory transport: setup,
// validate, maxUses, drain, connection ids and state, lifecycle events,
// wait metrics and node:diagnostics_channel; and the minIdle upkeep fixes
// of issue 9 (items 4 and 5).
import { afterEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import diagnostics from "node:diagnostics_channel";
import {
  ConnectionPool,
  type ConnectionPoolOptions,
  PoolError,
  type PoolEvent,
  type Transport,
  type UpstreamConnection,
} from "../mod.ts";
import { type MemoryPeer, MemoryTransport } from "../src/transports/memory.ts";
import { delay, waitUntil } from "./_async.ts";

const A = { hostname: "a.test", port: 1 };
const KEY_A = "a.test:1";
const encoder = new TextEncoder();
const decoder = new TextDecoder();

const pools: ConnectionPool<never>[] = [];
afterEach(async () => {
  await Promise.allSettled(pools.splice(0).map((pool) => pool.close()));
});

interface DriverState {
  authenticated?: boolean;
  database?: number;
}

/**
 * A tiny line protocol: "AUTH" authenticates the connection, "SELECT n"
 * selects a database, anything else is answered with "<db>:<line>", or
 * "NOAUTH" before AUTH. Counts commands seen unauthenticated.
 */
function setup(options: Omit<ConnectionPoolOptions<DriverState>, "transport" | "onEvent"> = {}) {
  const transport = new MemoryTransport();
  const peers: MemoryPeer[] = [];
  const counts = { unauthenticated: 0 };
  transport.listen(A, async (peer) => {
    peers.push(peer);
    let authenticated = false;
    let database = 0;
    for (let chunk; (chunk = await peer.read()) !== null;) {
      const line = decoder.decode(chunk);
      if (line === "AUTH") {
        authenticated = true;
        peer.write("OK");
      } else if (!authenticated) {
        counts.unauthenticated++;
        peer.write("NOAUTH");
      } else if (line.startsWith("SELECT ")) {
        database = Number(line.slice(7));
        peer.write("OK");
      } else peer.write(`${database}:${line}`);
    }
  });
  const events: PoolEvent[] = [];
  const pool = new ConnectionPool<DriverState>({
    ...options,
    transport,
    onEvent: (event) => events.push(event),
  });
  pools.push(pool as ConnectionPool<never>);
  return { pool, peers, events, counts, transport };
}

async function ask(connection: UpstreamConnection<DriverState>, text: string): Promise<string> {
  await connection.write(encoder.encode(text));
  const reply = await connection.read();
  if (reply === null) throw new Error("EOF");
  return decoder.decode(reply);
}

async function authenticate(connection: UpstreamConnection<DriverState>): Promise<void> {
  if (await ask(connection, "AUTH") !== "OK") throw new Error("AUTH failed");
  if (await ask(connection, "SELECT 3") !== "OK") throw new Error("SELECT failed");
  connection.state.authenticated = true;
  connection.state.database = 3;
}

describe("setup", () => {
  test("warm(address, 3) runs setup three times before resolving; acquires see its state", async () => {
    let runs = 0;
    const { pool, counts } = setup({
      setup: async (connection) => {
        runs++;
        await authenticate(connection);
      },
    });
    await pool.warm(A, 3);
    assert.equal(runs, 3);
    assert.equal(pool.stats().idle, 3);
    const leases = await Promise.all([pool.acquire(A), pool.acquire(A), pool.acquire(A)]);
    // The warm connections (ids 1 to 3) are handed out; the refill that keeps
    // three idle from now on sets up its own.
    assert.deepEqual(leases.map(({ connection }) => connection.id).sort(), [1, 2, 3]);
    for (const { connection, created } of leases) {
      assert.equal(created, true, "first hand-out");
      assert.deepEqual(connection.state, { authenticated: true, database: 3 });
      assert.equal(await ask(connection, "GET"), "3:GET");
      pool.retain(connection);
    }
    await waitUntil(() => pool.stats().connecting + pool.stats().settingUp === 0, 500, "refill");
    assert.equal(runs, pool.stats().totals.created, "every connection was set up");
    assert.equal(counts.unauthenticated, 0);
  });

  test("runs for acquire, add and minIdlePerHost alike, before anyone uses the connection", async () => {
    const { pool, counts } = setup({ setup: authenticate, minIdlePerHost: 2 });
    await pool.add(A);
    const { connection } = await pool.acquire(A);
    assert.equal(await ask(connection, "X"), "3:X");
    await waitUntil(() => pool.stats().idle >= 2, 1000, "minIdle refilled");
    pool.retain(connection);
    for (let i = 0; i < 20; i++) {
      const lease = await pool.acquire(A);
      assert.equal(await ask(lease.connection, "Y"), "3:Y");
      pool.retain(lease.connection);
    }
    assert.equal(counts.unauthenticated, 0);
  });

  test("a setup that throws reaches the waiter as SETUP_FAILED with the error as cause", async () => {
    const failure = new Error("wrong password");
    const { pool, transport } = setup({
      setup: () => {
        throw failure;
      },
    });
    const error = await pool.acquire(A).catch((e) => e);
    assert.ok(error instanceof PoolError, String(error));
    assert.deepEqual([error.code, error.cause, error.operation], [
      "SETUP_FAILED",
      failure,
      "setup",
    ]);
    assert.equal(transport.openConnections, 0, "the connection was closed");
    const stats = pool.stats();
    assert.deepEqual([stats.totals.setupFailed, stats.totals.failed, stats.idle], [1, 1, 0]);
  });

  test("a setup that leaves unread bytes fails the connect", async () => {
    const { pool } = setup({
      setup: async (connection) => {
        await connection.write(encoder.encode("AUTH"));
        await delay(5); // the reply arrives, nobody reads it
      },
    });
    const error = await pool.acquire(A).catch((e) => e);
    assert.equal(error.code, "SETUP_FAILED");
    assert.match(error.message, /unclean/);
  });

  test("a setup that hangs past connectTimeout fails with CONNECT_TIMEOUT and closes the connection", async () => {
    const { pool, transport } = setup({
      connectTimeout: 50,
      setup: () => new Promise(() => {}),
    });
    const started = Date.now();
    const error = await pool.acquire(A).catch((e) => e);
    assert.equal(error.code, "CONNECT_TIMEOUT");
    assert.ok(Date.now() - started < 1000);
    assert.equal(transport.openConnections, 0);
  });

  test("warm() rejects with SETUP_FAILED", async () => {
    const { pool } = setup({ setup: () => Promise.reject(new Error("no")) });
    await assert.rejects(
      pool.warm(A, 1),
      (e) => e instanceof PoolError && e.code === "SETUP_FAILED",
    );
  });
});

describe("connection id and state", () => {
  test("id and state survive retain -> acquire; ids are unique", async () => {
    const { pool } = setup();
    const a = await pool.acquire(A);
    const b = await pool.acquire(A);
    assert.notEqual(a.connection.id, b.connection.id);
    a.connection.state.database = 7;
    const idA = a.connection.id;
    pool.retain(a.connection);
    pool.release(b.connection);
    const again = await pool.acquire(A);
    assert.equal(again.connection.id, idA);
    assert.equal(again.connection.state.database, 7);
    assert.notEqual(again.connection, a.connection, "a fresh handle each lease");
  });
});

describe("validate", () => {
  test("skipped inside validateAfter, run after it; false closes and the acquire moves on without an error", async () => {
    const seen: number[] = [];
    let answer = true;
    const { pool, events } = setup({
      validateAfter: 30,
      validate: (connection) => {
        seen.push(connection.id);
        return answer;
      },
    });
    const first = await pool.acquire(A);
    pool.retain(first.connection);
    const quick = await pool.acquire(A);
    assert.deepEqual(seen, [], "used within validateAfter: not validated");
    pool.retain(quick.connection);
    await delay(40);
    const later = await pool.acquire(A);
    assert.deepEqual(seen, [first.connection.id], "validated once");
    assert.equal(later.connection.id, first.connection.id);
    pool.retain(later.connection);
    await delay(40);
    answer = false;
    const replaced = await pool.acquire(A);
    assert.notEqual(replaced.connection.id, first.connection.id, "a new connection instead");
    assert.equal(replaced.created, true);
    assert.equal(pool.stats().totals.validationFailed, 1);
    assert.ok(
      events.some((e) => e.type === "closed" && e.reason === "validation-failed"),
    );
  });

  test("a validate that throws or hangs counts as false; other waiters are not stalled", async () => {
    let calls = 0;
    const { pool } = setup({
      validateAfter: 0,
      connectTimeout: 50,
      validate: () => {
        calls++;
        if (calls === 1) throw new Error("ping failed");
        return new Promise<boolean>(() => {}); // hangs
      },
    });
    const leases = await Promise.all([pool.acquire(A), pool.acquire(A)]);
    for (const lease of leases) pool.retain(lease.connection);
    const started = Date.now();
    const [x, y] = await Promise.all([pool.acquire(A), pool.acquire(A)]);
    assert.ok(Date.now() - started < 1000);
    assert.equal(x.created && y.created, true, "both got new connections");
    assert.equal(calls, 2, "validate ran once per hand-out");
    assert.equal(pool.stats().totals.validationFailed, 2);
  });
});

describe("maxUses and drain", () => {
  test("a connection is closed when it comes back after maxUses hand-outs", async () => {
    const { pool } = setup({ maxUses: 3 });
    const ids: number[] = [];
    for (let i = 0; i < 6; i++) {
      const { connection } = await pool.acquire(A);
      ids.push(connection.id);
      pool.retain(connection);
    }
    assert.deepEqual(ids, [ids[0], ids[0], ids[0], ids[3], ids[3], ids[3]]);
    assert.notEqual(ids[0], ids[3]);
    assert.equal(pool.stats().totals.maxUses, 2);
  });

  test("drain closes idle connections now and borrowed ones when they come back", async () => {
    const { pool, events } = setup();
    const [a, b] = await Promise.all([pool.acquire(A), pool.acquire(A)]);
    pool.retain(a.connection);
    assert.equal(pool.stats().idle, 1);
    pool.drain(A);
    assert.equal(pool.stats().idle, 0);
    assert.equal(pool.retain(b.connection), false, "drained on return");
    const fresh = await pool.acquire(A);
    assert.equal(fresh.created, true);
    assert.equal(pool.retain(fresh.connection), true, "new connections are kept");
    assert.equal(pool.stats().totals.drained, 2);
    assert.equal(events.filter((e) => e.type === "closed" && e.reason === "drained").length, 2);
  });
});

describe("observability", () => {
  test("events for every change of a connection's life, each naming its id and address", async () => {
    const { pool, events } = setup({ setup: authenticate });
    const { connection } = await pool.acquire(A);
    pool.retain(connection);
    const again = await pool.acquire(A);
    pool.release(again.connection);
    const life = events.filter((e) => e.type !== "expire").map((e) => {
      assert.equal(e.address, KEY_A);
      assert.ok("id" in e && e.id === connection.id);
      return e.type === "closed"
        ? `closed:${e.reason}`
        : e.type === "returned"
        ? `returned:${e.retained}`
        : e.type;
    });
    assert.deepEqual(life, [
      "opened",
      "set-up",
      "handed-out",
      "returned:true",
      "handed-out",
      "returned:false",
      "closed:released",
    ]);
    const handedOut = events.filter((e) => e.type === "handed-out");
    for (const event of handedOut) {
      assert.ok(event.type === "handed-out" && event.waitMs >= 0);
    }
  });

  test("stats count acquires that waited, and how long", async () => {
    const { pool } = setup({ maxPerHost: 1 });
    const held = await pool.acquire(A);
    assert.equal(pool.stats().totals.waited, 0, "a connect started at once is no wait");
    const waiting = pool.acquire(A);
    await delay(30);
    pool.retain(held.connection);
    const next = await waiting;
    const { totals } = pool.stats();
    assert.equal(totals.waited, 1);
    assert.ok(totals.waitedMs >= 25 && totals.maxWaitMs >= 25, JSON.stringify(totals));
    pool.retain(next.connection);
  });

  test("events are published on node:diagnostics_channel", async () => {
    const seen: string[] = [];
    const onOpened = (message: unknown) => seen.push(`opened:${(message as PoolEvent).address}`);
    const onClosed = (message: unknown) =>
      seen.push(`closed:${(message as { reason: string }).reason}`);
    diagnostics.subscribe("upstream-pool:opened", onOpened);
    diagnostics.subscribe("upstream-pool:closed", onClosed);
    try {
      const transport = new MemoryTransport();
      transport.listen(A, (peer) => peer.echo());
      const pool = new ConnectionPool({ transport }); // no onEvent: the channels alone
      const { connection } = await pool.acquire(A);
      pool.release(connection);
      await pool.close();
    } finally {
      diagnostics.unsubscribe("upstream-pool:opened", onOpened);
      diagnostics.unsubscribe("upstream-pool:closed", onClosed);
    }
    assert.deepEqual(seen, [`opened:${KEY_A}`, "closed:released"]);
  });

  test("hook options are checked", () => {
    const transport = new MemoryTransport();
    assert.throws(() => new ConnectionPool({ transport, setup: 1 as never }), TypeError);
    assert.throws(() => new ConnectionPool({ transport, validateAfter: -1 }), RangeError);
    assert.throws(() => new ConnectionPool({ transport, maxUses: 0 }), RangeError);
    assert.throws(() => new ConnectionPool({ transport, keepAlive: 10 }), RangeError);
    assert.throws(() => new ConnectionPool({ transport, keepAlive: true as never }), TypeError);
  });
});

describe("minIdle upkeep (issue 9)", () => {
  test("right after warm(address, n) the next acquire takes a warm connection, no new connect", async () => {
    const inner = new MemoryTransport();
    inner.listen(A, (peer) => peer.echo());
    let connects = 0;
    const transport: Transport = {
      name: "counting",
      connect: (address, options) => {
        connects++;
        return inner.connect(address, options);
      },
      settle: () => inner.settle(),
    };
    const pool = new ConnectionPool({ transport });
    pools.push(pool as ConnectionPool<never>);
    await pool.warm(A, 2);
    const { connection, created } = await pool.acquire(A);
    assert.equal(created, true, "its first hand-out");
    // The refill opens one to keep 2 idle, but the acquire took a warm one.
    assert.ok(connection.id <= 2, `connection ${connection.id} is not a warm one`);
    pool.retain(connection);
    await waitUntil(() => pool.stats().connecting === 0, 500, "refill done");
    assert.ok(connects <= 3, `${connects} connects`);
  });

  test("a pool-wide minIdlePerHost stops reconnecting to addresses that refuse, and stats show the ones it works on", async () => {
    const transport = new MemoryTransport(); // nothing listens: every connect is refused
    let connects = 0;
    const counting: Transport = {
      name: "counting",
      connect: (address, options) => {
        connects++;
        return transport.connect(address, options);
      },
      settle: () => transport.settle(),
    };
    const errors: PoolEvent[] = [];
    const pool = new ConnectionPool({
      transport: counting,
      minIdlePerHost: 1,
      onEvent: (e) => errors.push(e),
    });
    pools.push(pool as ConnectionPool<never>);
    const addresses = Array.from({ length: 100 }, (_, i) => ({ hostname: `h${i}.test`, port: 1 }));
    const started = Date.now();
    await Promise.allSettled(addresses.map((address) => pool.acquire(address)));
    // Background connects are rate-limited, and stop after a few failures each.
    let last = -1;
    let peakPerSecond = 0;
    while (connects !== last && Date.now() - started < 8000) {
      const before = connects;
      last = connects;
      await delay(1000);
      peakPerSecond = Math.max(peakPerSecond, connects - before);
    }
    assert.equal(connects, last, `still connecting after ${Date.now() - started} ms`);
    assert.ok(connects <= 100 * 4, `${connects} connects for 100 addresses`);
    // 200 a second pool-wide: a window of one second overlaps two budgets at most.
    assert.ok(peakPerSecond <= 400, `${peakPerSecond} background connects in one second`);
    assert.deepEqual(pool.stats().byAddress, {}, "nothing left to work on");
  });

  test("a pool-wide minIdlePerHost lets go of addresses not acquired for idleTimeout", async () => {
    const transport = new MemoryTransport();
    transport.listen(A, (peer) => peer.echo());
    const pool = new ConnectionPool({ transport, minIdlePerHost: 1, idleTimeout: 40 });
    pools.push(pool as ConnectionPool<never>);
    const { connection } = await pool.acquire(A);
    pool.retain(connection);
    await waitUntil(() => pool.stats().byAddress[KEY_A] === undefined, 1000, "let go");
    assert.equal(transport.openConnections, 0);
  });
});
