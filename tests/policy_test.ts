// Pool policy on the in-memory transport: limits, wait queues, timeouts,
// lifetimes, minimum idle, leak reports, graceful close, option checks.
import { afterEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  type Acquired,
  type Address,
  ConnectionPool,
  type ConnectionPoolOptions,
  PoolError,
  type PoolStats,
  resolveAddress,
  type Transport,
  type UpstreamConnection,
} from "../mod.ts";
import { type MemoryPeer, MemoryTransport } from "../src/transports/memory.ts";
import { deadline, delay, waitUntil } from "./_async.ts";
import { runFixture } from "./_subprocess.ts";

type PoolEvent = Parameters<NonNullable<ConnectionPoolOptions["onEvent"]>>[0];
type PolicyOptions = Omit<ConnectionPoolOptions, "transport" | "onEvent">;

const A = { hostname: "a.test", port: 1 };
const B = { hostname: "b.test", port: 2 };
const KEY_A = "a.test:1";
const KEY_B = "b.test:2";
const encoder = new TextEncoder();
const decoder = new TextDecoder();

// Every pool a test makes is closed after it, even when the test failed
// half-way, so that no refill or timer outlives its test.
const pools: ConnectionPool[] = [];
afterEach(async () => {
  await Promise.allSettled(pools.splice(0).map((pool) => pool.close()));
});

function track(pool: ConnectionPool): ConnectionPool {
  pools.push(pool);
  return pool;
}

/**
 * Upstreams A and B on one memory transport. Every connection answers each
 * request with its own number (its index in `peers`, in accept order).
 */
function setup(options: PolicyOptions = {}) {
  const transport = new MemoryTransport();
  const peers: MemoryPeer[] = [];
  for (const address of [A, B]) transport.listen(address, (peer) => answerWithId(peer, peers));
  const events: PoolEvent[] = [];
  const pool = track(
    new ConnectionPool({ ...options, transport, onEvent: (event) => events.push(event) }),
  );
  return { transport, pool, peers, events };
}

async function answerWithId(peer: MemoryPeer, peers: MemoryPeer[]): Promise<void> {
  const id = String(peers.push(peer) - 1);
  while (await peer.read() !== null) peer.write(id);
}

/** Which upstream connection this is (its number in `peers`). */
async function whoIs(connection: UpstreamConnection): Promise<number> {
  await connection.write(encoder.encode("?"));
  const reply = await connection.read();
  assert.notEqual(reply, null, "unexpected EOF");
  return Number(decoder.decode(reply!));
}

/** A transport that counts connect attempts and passes them on. */
function counting(inner: MemoryTransport) {
  const counter = { connects: 0 };
  const transport: Transport = {
    name: "counting",
    connect: (address, options) => {
      counter.connects++;
      return inner.connect(address, options);
    },
    settle: () => inner.settle(),
  };
  return { transport, counter };
}

/** A promise the test settles: for `accept` hooks that hold connects. */
function gate() {
  let open: () => void = () => {};
  let fail: (error: unknown) => void = () => {};
  const promise = new Promise<void>((resolve, reject) => {
    open = resolve;
    fail = reject;
  });
  return { promise, open, fail };
}

function refused(): Error {
  return Object.assign(new Error("connection refused (test)"), { code: "ECONNREFUSED" });
}

/**
 * `pool.stats()`, after checking its invariants: per-address counts sum to
 * the top-level ones, and every count is a non-negative integer.
 */
function checked(pool: ConnectionPool): PoolStats {
  const stats = pool.stats();
  for (const field of ["idle", "borrowed", "connecting", "waiting"] as const) {
    const top = stats[field];
    assert.ok(Number.isInteger(top) && top >= 0, `stats.${field} is ${top}`);
    let sum = 0;
    for (const [key, counts] of Object.entries(stats.byAddress)) {
      const value = counts[field];
      assert.ok(
        Number.isInteger(value) && value >= 0,
        `stats.byAddress["${key}"].${field} is ${value}`,
      );
      sum += value;
    }
    assert.equal(sum, top, `byAddress ${field} sums to ${sum}, top-level says ${top}`);
  }
  for (const field of ["expired", "timedOut"] as const) {
    assert.ok(Number.isInteger(stats.totals[field]), `stats.totals.${field} is missing`);
  }
  return stats;
}

/** Open connections (connecting + borrowed + idle) to one address, per stats. */
function openTo(pool: ConnectionPool, key: string): number {
  const counts = checked(pool).byAddress[key];
  return counts === undefined ? 0 : counts.idle + counts.borrowed + counts.connecting;
}

function waitingFor(pool: ConnectionPool, key: string): number {
  return checked(pool).byAddress[key]?.waiting ?? 0;
}

function isPoolError(code: string) {
  return (error: unknown) => {
    assert.ok(error instanceof PoolError, `expected a PoolError ${code}, got ${error}`);
    assert.equal(error.code, code);
    return true;
  };
}

function assertPoolError(error: unknown, code: string, address?: string): void {
  isPoolError(code)(error);
  if (address !== undefined) assert.equal((error as PoolError).address, address);
}

/**
 * The same promise, marked as handled: if a test fails before awaiting it,
 * its later rejection (at close) is not reported against another test.
 */
function pending<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => {});
  return promise;
}

/** Settles to the acquire's result or to its error, so nothing is left unhandled. */
function settled(promise: Promise<Acquired>): Promise<Acquired | unknown> {
  return promise.catch((error: unknown) => error);
}

function expiries(events: PoolEvent[]) {
  return events.flatMap((event) =>
    event.type === "expire" ? [{ address: event.address, reason: event.reason }] : []
  );
}

describe("maxPerHost", () => {
  test("never more than N connections to one address; extra acquires wait", async () => {
    const transport = new MemoryTransport();
    const peers: MemoryPeer[] = [];
    let peak = 0;
    const pool = track(new ConnectionPool({ transport, maxPerHost: 2 }));
    const sample = () => {
      peak = Math.max(peak, transport.openConnections, openTo(pool, KEY_A));
    };
    transport.listen(A, (peer) => answerWithId(peer, peers), { accept: sample });
    const worker = async () => {
      for (let round = 0; round < 3; round++) {
        const { connection } = await pool.acquire(A);
        sample();
        await whoIs(connection);
        sample();
        pool.retain(connection);
        sample();
      }
    };
    const workers = Array.from({ length: 10 }, worker);
    sample();
    await deadline(Promise.all(workers), 2000, "10 workers");
    assert.ok(peak <= 2, `${peak} connections were open at once`);
    assert.equal(peers.length, 2);
    assert.equal(checked(pool).totals.created, 2);
    assert.equal(checked(pool).totals.reused, 28);

    // Both held: further acquires wait, without connecting.
    const held = [await pool.acquire(A), await pool.acquire(A)];
    const waiters = [1, 2, 3].map(() => settled(pool.acquire(A)));
    await delay(5);
    const stats = checked(pool);
    assert.equal(stats.waiting, 3);
    assert.equal(stats.byAddress[KEY_A]!.waiting, 3);
    assert.equal(stats.connecting, 0);
    assert.equal(transport.openConnections, 2);
    for (const lease of held) pool.retain(lease.connection);
    await pool.close();
    for (const waiter of waiters) await waiter;
  });

  test("a retained connection goes to the oldest waiter (FIFO)", async () => {
    const { pool } = setup({ maxPerHost: 2 });
    const leases: Acquired[] = [await pool.acquire(A), await pool.acquire(A)];
    const served: number[] = [];
    const waiters = Array.from(
      { length: 5 },
      (_, i) =>
        pending(
          pool.acquire(A).then((acquired) => {
            served.push(i);
            return acquired;
          }),
        ),
    );
    await delay(5);
    assert.deepEqual(served, []);
    assert.equal(checked(pool).waiting, 5);
    for (let i = 0; i < 5; i++) {
      const returned = leases[i]!;
      const id = await whoIs(returned.connection);
      assert.equal(pool.retain(returned.connection), true);
      await waitUntil(() => served.length === i + 1, 500, `waiter ${i} served`);
      await delay(1);
      assert.deepEqual(served, Array.from({ length: i + 1 }, (_, j) => j), "served in order");
      assert.equal(checked(pool).waiting, 4 - i);
      const next = await waiters[i]!;
      assert.equal(next.created, false);
      assert.equal(await whoIs(next.connection), id, "the retained connection itself");
      leases.push(next);
    }
    assert.equal(checked(pool).totals.created, 2);
    await pool.close();
  });

  // Response queue poisoning between two retains: the settle turn that the
  // first retain starts for the waiters began before the stray bytes reached
  // the second connection, so it cannot vouch for that one.
  test("a connection retained while a handout's turn runs waits for a turn of its own", async () => {
    const { pool, peers } = setup({ maxPerHost: 2 });
    const first = await pool.acquire(A);
    const second = await pool.acquire(A);
    await whoIs(first.connection);
    const secondId = await whoIs(second.connection);
    const waiters = [pending(pool.acquire(A)), pending(pool.acquire(A))];
    await delay(1);
    assert.equal(pool.retain(first.connection), true); // a settle turn starts for the waiters
    peers[secondId]!.write("stray"); // in the receive buffer, not yet delivered
    assert.equal(pool.retain(second.connection), true);
    for (const { connection } of await Promise.all(waiters)) {
      const reply = await whoIs(connection);
      assert.ok(Number.isInteger(reply), "a waiter was handed the stray bytes");
      assert.notEqual(reply, secondId, "the connection with stray bytes was handed out");
    }
    assert.equal(checked(pool).totals.broken, 1);
    await pool.close();
  });

  test("a release frees the slot: the next waiter opens a new connection", async () => {
    const { pool, peers, transport } = setup({ maxPerHost: 1 });
    const first = await pool.acquire(A);
    const waiter = pending(pool.acquire(A));
    await delay(5);
    assert.equal(checked(pool).waiting, 1);
    assert.equal(peers.length, 1);
    pool.release(first.connection);
    const next = await deadline(waiter, 500, "waiter after release");
    assert.equal(next.created, true);
    assert.equal(await whoIs(next.connection), 1);
    assert.equal(peers[0]!.closed, true);
    assert.equal(transport.openConnections, 1);
    const stats = checked(pool);
    assert.equal(stats.waiting, 0);
    assert.equal(stats.borrowed, 1);
    await pool.close();
  });

  test("a failed connect frees its slot", async () => {
    const transport = new MemoryTransport();
    const peers: MemoryPeer[] = [];
    const held = gate();
    let accepts = 0;
    transport.listen(A, (peer) => answerWithId(peer, peers), {
      accept: () => accepts++ === 0 ? held.promise : undefined,
    });
    const pool = track(new ConnectionPool({ transport, maxPerHost: 1 }));
    const first = settled(pool.acquire(A));
    await delay(0);
    assert.equal(checked(pool).connecting, 1);
    const second = settled(pool.acquire(A));
    await delay(5);
    assert.equal(checked(pool).connecting, 1, "the limit holds the second acquire back");
    assert.equal(accepts, 1);
    held.fail(Object.assign(new Error("no route (test)"), { code: "EHOSTUNREACH" }));
    const results = await deadline(Promise.all([first, second]), 1000, "both acquires");
    const errors = results.filter((result) => result instanceof Error);
    assert.ok(errors.length >= 1, "the failed connect reaches a caller");
    for (const error of errors) assertPoolError(error, "CONNECT_FAILED", KEY_A);
    for (const result of results) {
      if (!(result instanceof Error)) pool.release((result as Acquired).connection);
    }
    // The slot is free: a new acquire connects at once.
    const third = await deadline(pool.acquire(A), 500, "acquire after the failure");
    assert.equal(third.created, true);
    const stats = checked(pool);
    assert.deepEqual([stats.connecting, stats.waiting, stats.borrowed], [0, 0, 1]);
    await pool.close();
  });
});

describe("maxTotal", () => {
  test("never more than N connections across addresses", async () => {
    const transport = new MemoryTransport();
    const peers: MemoryPeer[] = [];
    let peak = 0;
    const pool = track(new ConnectionPool({ transport, maxTotal: 3 }));
    const sample = () => {
      const stats = checked(pool);
      peak = Math.max(
        peak,
        transport.openConnections,
        stats.idle + stats.borrowed + stats.connecting,
      );
    };
    for (const address of [A, B]) {
      transport.listen(address, (peer) => answerWithId(peer, peers), { accept: sample });
    }
    const worker = async (address: Address) => {
      for (let round = 0; round < 3; round++) {
        const { connection } = await pool.acquire(address);
        sample();
        await whoIs(connection);
        pool.retain(connection);
        sample();
      }
    };
    const workers = Array.from({ length: 12 }, (_, i) => worker(i % 2 === 0 ? A : B));
    await deadline(Promise.all(workers), 2000, "12 workers on two addresses");
    assert.ok(peak <= 3, `${peak} connections were open at once`);
    assert.equal(checked(pool).waiting, 0);
    await pool.close();
  });

  test("a slot freed on one address serves a waiter on another", async () => {
    for (const giveBack of ["release", "retain"] as const) {
      const { pool, peers, transport } = setup({ maxTotal: 1 });
      const onA = await pool.acquire(A);
      const forB = pending(pool.acquire(B));
      await delay(5);
      let stats = checked(pool);
      assert.equal(stats.waiting, 1, giveBack);
      assert.equal(stats.byAddress[KEY_B]?.waiting, 1, giveBack);
      assert.equal(stats.connecting, 0, giveBack);
      if (giveBack === "release") pool.release(onA.connection);
      else pool.retain(onA.connection);
      const gotB = await deadline(forB, 500, `waiter on B after ${giveBack}`);
      assert.equal(gotB.created, true);
      assert.equal(await whoIs(gotB.connection), 1);
      await waitUntil(() => peers[0]!.closed, 500, `A's connection closed after ${giveBack}`);
      assert.equal(transport.openConnections, 1);
      stats = checked(pool);
      assert.deepEqual([stats.idle, stats.borrowed, stats.waiting], [0, 1, 0], giveBack);
      await pool.close();
    }
  });

  test("waiters across addresses are served oldest first", async () => {
    const { pool, transport } = setup({ maxTotal: 1 });
    let current = await pool.acquire(A);
    const served: string[] = [];
    const order = [B, A, B, A];
    const waiters = order.map((address, i) =>
      pending(
        pool.acquire(address).then((acquired) => {
          served.push(`${i}:${acquired.connection.address.key}`);
          return acquired;
        }),
      )
    );
    await delay(5);
    let stats = checked(pool);
    assert.equal(stats.waiting, 4);
    assert.equal(stats.byAddress[KEY_A]?.waiting, 2);
    assert.equal(stats.byAddress[KEY_B]?.waiting, 2);
    for (let i = 0; i < order.length; i++) {
      pool.release(current.connection);
      current = await deadline(waiters[i]!, 500, `waiter ${i}`);
      await delay(1);
      assert.deepEqual(
        served,
        order.slice(0, i + 1).map((address, j) => `${j}:${resolveAddress(address).key}`),
      );
      assert.ok(transport.openConnections <= 1);
    }
    stats = checked(pool);
    assert.equal(stats.waiting, 0);
    await pool.close();
  });

  test("at the limit, an acquire for another address closes the least recently used idle one", async () => {
    const { pool, peers, transport } = setup({ maxTotal: 2 });
    const first = await pool.acquire(A);
    const second = await pool.acquire(A);
    assert.equal(pool.retain(first.connection), true); // idle longest: peers[0]
    await delay(2);
    assert.equal(pool.retain(second.connection), true);
    const onB = await deadline(pool.acquire(B), 500, "acquire for B");
    assert.equal(onB.created, true);
    assert.equal(await whoIs(onB.connection), 2);
    assert.equal(peers[0]!.closed, true, "the LRU idle connection was closed");
    assert.equal(peers[1]!.closed, false);
    assert.equal(transport.openConnections, 2);
    const stats = checked(pool);
    assert.equal(stats.byAddress[KEY_A]?.idle, 1);
    assert.equal(stats.byAddress[KEY_B]?.borrowed, 1);
    assert.equal(stats.waiting, 0);
    await pool.close();
  });
  test("when an address's last waiter gives up, its idle connections make room for others", async () => {
    const { pool, transport } = setup({ maxTotal: 2, acquireTimeout: 1000 });
    const held = [await pool.acquire(A), await pool.acquire(A)];
    for (const { connection } of held) pool.retain(connection);
    // All at once: A's waiter holds A's idle connections for its hand-out
    // turn, so B's two acquires find nothing to evict and are held back.
    const giveUp = new AbortController();
    const forA = pool.acquire(A, { signal: giveUp.signal }).catch((error) => error);
    const forB = [pending(pool.acquire(B)), pending(pool.acquire(B))];
    giveUp.abort(new Error("gave up"));
    assert.equal((await forA as Error).message, "gave up");
    // Nobody needs A's idle connections now: B must not wait for them to expire.
    const onB = await deadline(Promise.all(forB), 500, "B's waiters after A's gave up");
    assert.deepEqual(onB.map((acquired) => acquired.created), [true, true]);
    const stats = checked(pool);
    assert.deepEqual([stats.idle, stats.borrowed, stats.connecting, stats.waiting], [0, 2, 0, 0]);
    assert.equal(stats.totals.expired, 2);
    assert.equal(transport.openConnections, 2);
    await pool.close();
  });
});

describe("idle limits", () => {
  test("maxIdlePerHost: a retained connection over the limit is closed instead", async () => {
    const { pool, peers, events } = setup({ maxIdlePerHost: 1 });
    const x = await pool.acquire(A);
    const y = await pool.acquire(A);
    assert.equal(pool.retain(x.connection), true);
    assert.equal(pool.retain(y.connection), false);
    assert.equal(peers[0]!.closed, false);
    assert.equal(peers[1]!.closed, true);
    let stats = checked(pool);
    assert.equal(stats.idle, 1);
    assert.equal(stats.totals.expired, 1);
    assert.deepEqual(expiries(events), [{ address: KEY_A, reason: "max-idle" }]);
    // Another address has a limit of its own.
    const z = await pool.acquire(B);
    assert.equal(pool.retain(z.connection), true);
    stats = checked(pool);
    assert.equal(stats.idle, 2);
    assert.equal(stats.byAddress[KEY_B]?.idle, 1);
    await pool.close();
  });

  test("maxIdle: over the limit, the least recently used idle connection anywhere is closed", async () => {
    const { pool, peers, events } = setup({ maxIdle: 2 });
    const b1 = await pool.acquire(B); // peers[0]
    const a1 = await pool.acquire(A); // peers[1]
    const a2 = await pool.acquire(A); // peers[2]
    assert.equal(pool.retain(b1.connection), true);
    await delay(2);
    assert.equal(pool.retain(a1.connection), true);
    await delay(2);
    assert.equal(pool.retain(a2.connection), true);
    assert.deepEqual(peers.map((peer) => peer.closed), [true, false, false]);
    const stats = checked(pool);
    assert.equal(stats.idle, 2);
    assert.equal(stats.byAddress[KEY_A]?.idle, 2);
    assert.equal(stats.byAddress[KEY_B]?.idle ?? 0, 0);
    assert.equal(stats.totals.expired, 1);
    assert.deepEqual(expiries(events), [{ address: KEY_B, reason: "max-idle" }]);
    await pool.close();
  });
});

describe("minIdlePerHost and warm()", () => {
  test("minIdlePerHost: once the address is used, N idle are kept, refilled after a break", async () => {
    const { pool, peers, transport } = setup({ minIdlePerHost: 2 });
    await delay(10);
    assert.equal(transport.openConnections, 0, "nothing is opened before the first use");
    const lease = await pool.acquire(A);
    const borrowed = peers[await whoIs(lease.connection)];
    await waitUntil(() => checked(pool).byAddress[KEY_A]?.idle === 2, 500, "2 idle");
    assert.equal(checked(pool).byAddress[KEY_A]?.borrowed, 1);
    assert.equal(openTo(pool, KEY_B), 0, "other addresses are not filled");
    const victim = peers.find((peer) => peer !== borrowed && !peer.closed)!;
    victim.end();
    await waitUntil(() => checked(pool).totals.broken === 1, 500, "the break is seen");
    await waitUntil(() => checked(pool).byAddress[KEY_A]?.idle === 2, 500, "refilled");
    assert.equal(peers.length, 4);
    assert.equal(victim.closed, true);
    assert.equal(pool.retain(lease.connection), true);
    assert.equal(checked(pool).byAddress[KEY_A]?.idle, 3);
    await pool.close();
  });

  test("warm(address, n): n idle when it resolves, kept after borrows and breaks", async () => {
    const { pool, peers } = setup();
    await pool.warm(A, 3);
    let stats = checked(pool);
    assert.equal(stats.byAddress[KEY_A]?.idle, 3);
    assert.equal(stats.totals.created, 3);
    const lease = await pool.acquire(A);
    assert.equal(lease.created, true, "a warm connection's first hand-out");
    assert.equal(checked(pool).totals.reused, 0);
    await waitUntil(() => checked(pool).byAddress[KEY_A]?.idle === 3, 500, "refilled after borrow");
    const idlePeer = peers.find((peer) => !peer.closed && peer.clientRefed === false)!;
    idlePeer.end();
    await waitUntil(() => checked(pool).totals.broken === 1, 500, "the break is seen");
    await waitUntil(() => checked(pool).byAddress[KEY_A]?.idle === 3, 500, "refilled after break");
    stats = checked(pool);
    assert.equal(stats.byAddress[KEY_A]?.borrowed, 1);
    assert.equal(stats.totals.created, 5);
    pool.retain(lease.connection);
    await pool.close();
  });

  test("refill against a refusing upstream backs off and reports connect-error", async () => {
    const inner = new MemoryTransport();
    const peers: MemoryPeer[] = [];
    inner.listen(A, (peer) => answerWithId(peer, peers));
    const { transport, counter } = counting(inner);
    const events: PoolEvent[] = [];
    const pool = track(
      new ConnectionPool({ transport, onEvent: (event) => events.push(event) }),
    );
    await pool.warm(A, 2);
    assert.equal(counter.connects, 2);
    inner.unlisten(A);
    for (const peer of peers) peer.end();
    await waitUntil(() => checked(pool).totals.broken === 2, 500, "both breaks seen");
    const connectErrors = () => events.filter((event) => event.type === "connect-error");
    await waitUntil(() => connectErrors().length >= 1, 1000, "a connect-error event");
    const before = counter.connects;
    await delay(100);
    const attempts = counter.connects - before;
    assert.ok(attempts <= 15, `${attempts} connect attempts in 100 ms: no back-off`);
    for (const event of connectErrors()) {
      assert.ok(event.type === "connect-error");
      assert.equal(event.address, KEY_A);
      assertPoolError(event.error, "CONNECT_REFUSED", KEY_A);
    }
    const stats = checked(pool);
    assert.equal(stats.byAddress[KEY_A]?.idle ?? 0, 0);
    assert.equal(stats.waiting, 0);
    // The upstream comes back: the refill succeeds.
    inner.listen(A, (peer) => answerWithId(peer, peers));
    await waitUntil(() => checked(pool).byAddress[KEY_A]?.idle === 2, 2000, "refilled");
    await pool.close();
    const afterClose = counter.connects;
    await delay(20);
    assert.equal(counter.connects, afterClose, "no refill after close()");
  });

  test("warm() rejects with the connect error; the refill carries on", async () => {
    const inner = new MemoryTransport();
    const peers: MemoryPeer[] = [];
    const { transport, counter } = counting(inner);
    const events: PoolEvent[] = [];
    const pool = track(
      new ConnectionPool({ transport, onEvent: (event) => events.push(event) }),
    );
    const error = await deadline(pool.warm(A, 2).catch((e: unknown) => e), 1000, "warm");
    assertPoolError(error, "CONNECT_REFUSED", KEY_A);
    assert.equal(checked(pool).byAddress[KEY_A]?.idle ?? 0, 0);
    assert.ok(counter.connects >= 1);
    inner.listen(A, (peer) => answerWithId(peer, peers));
    await waitUntil(() => checked(pool).byAddress[KEY_A]?.idle === 2, 2000, "refilled");
    await pool.close();
  });
});

describe("idleTimeout", () => {
  test("an idle connection idle longer is closed and counted as expired", async () => {
    const { pool, peers, transport, events } = setup({ idleTimeout: 40 });
    const { connection } = await pool.acquire(A);
    const retainedAt = Date.now();
    assert.equal(pool.retain(connection), true);
    await delay(5);
    assert.equal(peers[0]!.closed, false, "closed too early");
    await waitUntil(() => peers[0]!.closed, 500, "idle timeout");
    assert.ok(Date.now() - retainedAt >= 35, "closed before its idle timeout");
    const stats = checked(pool);
    assert.equal(stats.idle, 0);
    assert.equal(stats.totals.expired, 1);
    assert.deepEqual(stats.byAddress, {});
    assert.equal(transport.openConnections, 0);
    assert.deepEqual(expiries(events), [{ address: KEY_A, reason: "idle-timeout" }]);
    await pool.close();
  });

  test("a connection reused (or borrowed) before its idle timeout is not closed", async () => {
    const { pool, peers } = setup({ idleTimeout: 60 });
    for (let i = 0; i < 8; i++) {
      const { created, connection } = await pool.acquire(A);
      assert.equal(created, i === 0);
      assert.equal(await whoIs(connection), 0);
      assert.equal(pool.retain(connection), true);
      await delay(10);
    }
    const { connection } = await pool.acquire(A);
    await delay(80); // borrowed longer than the idle timeout
    assert.equal(peers[0]!.closed, false);
    assert.equal(await whoIs(connection), 0);
    assert.equal(pool.retain(connection), true);
    assert.equal(peers.length, 1);
    assert.equal(checked(pool).totals.expired, 0);
    await pool.close();
  });
});

describe("maxLifetime", () => {
  test("never closed while borrowed; closed when retained past its lifetime", async () => {
    const { pool, peers, events } = setup({ maxLifetime: 30 });
    const { connection } = await pool.acquire(A);
    await delay(50);
    assert.equal(peers[0]!.closed, false, "closed while borrowed");
    assert.equal(await whoIs(connection), 0, "still usable past its lifetime");
    assert.equal(pool.retain(connection), false);
    assert.equal(peers[0]!.closed, true);
    const stats = checked(pool);
    assert.equal(stats.idle, 0);
    assert.equal(stats.totals.expired, 1);
    assert.deepEqual(expiries(events), [{ address: KEY_A, reason: "max-lifetime" }]);
    const next = await pool.acquire(A);
    assert.equal(next.created, true);
    await pool.close();
  });

  test("an idle connection is closed when it reaches its lifetime", async () => {
    const { pool, peers, events } = setup({ maxLifetime: 40 });
    const started = Date.now();
    const { connection } = await pool.acquire(A);
    assert.equal(pool.retain(connection), true, "young connections are kept");
    await waitUntil(() => peers[0]!.closed, 500, "lifetime reached while idle");
    // Up to 2.5% jitter: not before 39 ms (a little slack for timer rounding).
    assert.ok(Date.now() - started >= 36, `closed after ${Date.now() - started} ms`);
    const stats = checked(pool);
    assert.equal(stats.idle, 0);
    assert.equal(stats.totals.expired, 1);
    assert.deepEqual(expiries(events), [{ address: KEY_A, reason: "max-lifetime" }]);
    await pool.close();
  });
});

describe("connectTimeout and acquireTimeout", () => {
  test("connectTimeout: CONNECT_TIMEOUT, nothing left connecting, the late socket is closed", async () => {
    const transport = new MemoryTransport();
    const held = gate();
    transport.listen(A, () => {}, { accept: () => held.promise });
    const pool = track(new ConnectionPool({ transport, connectTimeout: 20 }));
    const started = Date.now();
    const error = await deadline(settled(pool.acquire(A)), 1000, "acquire");
    assertPoolError(error, "CONNECT_TIMEOUT", KEY_A);
    assert.ok(Date.now() - started >= 15, `timed out after ${Date.now() - started} ms`);
    let stats = checked(pool);
    assert.deepEqual([stats.connecting, stats.idle, stats.borrowed, stats.waiting], [0, 0, 0, 0]);
    held.open(); // the upstream accepts too late
    await waitUntil(() => transport.openConnections === 0, 500, "late socket closed");
    await delay(5);
    stats = checked(pool);
    assert.deepEqual([stats.connecting, stats.idle, stats.borrowed], [0, 0, 0]);
    assert.equal(transport.openConnections, 0);
    await pool.close();
  });

  test("acquireTimeout: a waiter that cannot be served rejects with ACQUIRE_TIMEOUT", async () => {
    const { pool } = setup({ maxPerHost: 1, acquireTimeout: 30 });
    const held = await pool.acquire(A);
    assert.equal(checked(pool).totals.timedOut, 0);
    const started = Date.now();
    const error = await deadline(settled(pool.acquire(A)), 1000, "waiting acquire");
    assertPoolError(error, "ACQUIRE_TIMEOUT", KEY_A);
    assert.ok(Date.now() - started >= 20, `timed out after ${Date.now() - started} ms`);
    const stats = checked(pool);
    assert.equal(stats.waiting, 0);
    assert.equal(stats.totals.timedOut, 1);
    assert.equal(await whoIs(held.connection), 0);
    assert.equal(pool.retain(held.connection), true);
    await pool.close();
  });

  test("acquireTimeout includes connecting; the connect completes and its connection stays idle", async () => {
    const transport = new MemoryTransport();
    const peers: MemoryPeer[] = [];
    const held = gate();
    transport.listen(A, (peer) => answerWithId(peer, peers), { accept: () => held.promise });
    const pool = track(new ConnectionPool({ transport, acquireTimeout: 30 }));
    const error = await deadline(settled(pool.acquire(A)), 1000, "connecting acquire");
    assertPoolError(error, "ACQUIRE_TIMEOUT", KEY_A);
    let stats = checked(pool);
    assert.equal(stats.waiting, 0);
    assert.equal(stats.connecting, 1, "the connect carries on");
    assert.equal(stats.totals.timedOut, 1);
    held.open();
    await waitUntil(() => checked(pool).idle === 1, 500, "the connection joins as idle");
    stats = checked(pool);
    assert.deepEqual([stats.connecting, stats.borrowed], [0, 0]);
    const next = await pool.acquire(A);
    assert.equal(next.created, true, "its first hand-out, from the idle list");
    assert.equal(checked(pool).totals.created, 1);
    assert.equal(await whoIs(next.connection), 0);
    await pool.close();
  });
});

describe("maxWaiting", () => {
  test("past N waiters an acquire rejects at once with QUEUE_FULL; other addresses are unaffected", async () => {
    const { pool } = setup({ maxPerHost: 1, maxWaiting: 2 });
    const held = await pool.acquire(A);
    const waiters = [settled(pool.acquire(A)), settled(pool.acquire(A))];
    await delay(5);
    assert.equal(checked(pool).waiting, 2);
    const error = await deadline(settled(pool.acquire(A)), 50, "the third waiter");
    assertPoolError(error, "QUEUE_FULL", KEY_A);
    assert.equal(checked(pool).waiting, 2);
    // B has its own queue.
    const heldB = await deadline(pool.acquire(B), 100, "acquire on B");
    assert.equal(heldB.created, true);
    const waitersB = [settled(pool.acquire(B)), settled(pool.acquire(B))];
    await delay(5);
    assert.equal(waitingFor(pool, KEY_B), 2);
    assert.equal(checked(pool).waiting, 4);
    // The queue drains normally.
    pool.retain(held.connection);
    const first = await deadline(waiters[0]!, 500, "first waiter") as Acquired;
    assert.equal(first.created, false);
    assert.equal(waitingFor(pool, KEY_A), 1);
    await pool.close();
    for (const waiter of [waiters[1]!, ...waitersB]) {
      assertPoolError(await waiter, "POOL_CLOSED");
    }
  });
});

describe("order", () => {
  for (
    const [order, expected] of [
      [undefined, [1, 2, 0]],
      ["lifo", [1, 2, 0]],
      ["fifo", [0, 2, 1]],
    ] as const
  ) {
    test(`order ${order ?? "(default)"} hands out idle connections ${expected}`, async () => {
      const { pool } = setup(order === undefined ? {} : { order });
      const held = [await pool.acquire(A), await pool.acquire(A), await pool.acquire(A)];
      assert.deepEqual(await Promise.all(held.map((lease) => whoIs(lease.connection))), [0, 1, 2]);
      for (const i of [0, 2, 1]) {
        assert.equal(pool.retain(held[i]!.connection), true);
        await delay(1);
      }
      const handedOut: number[] = [];
      for (let i = 0; i < 3; i++) {
        const lease = await pool.acquire(A);
        assert.equal(lease.created, false);
        handedOut.push(await whoIs(lease.connection));
      }
      assert.deepEqual(handedOut, [...expected]);
      await pool.close();
    });
  }
});

describe("abort", () => {
  test("an aborted waiter rejects with exactly signal.reason and leaves the queue at once", async () => {
    const { pool } = setup({ maxPerHost: 1 });
    const held = await pool.acquire(A);
    const controller = new AbortController();
    const other = new AbortController();
    const aborted = settled(pool.acquire(A, { signal: controller.signal }));
    const defaultReason = settled(pool.acquire(A, { signal: other.signal }));
    const stays = pending(pool.acquire(A));
    await delay(5);
    assert.equal(checked(pool).waiting, 3);
    const reason = new Error("caller gave up");
    controller.abort(reason);
    assert.equal(checked(pool).waiting, 2, "removed from the queue at once");
    assert.equal(await aborted, reason);
    other.abort();
    assert.equal(checked(pool).waiting, 1);
    const error = await defaultReason;
    assert.equal(error, other.signal.reason);
    assert.ok(!(error instanceof PoolError));
    // The connection goes to the waiter that stayed, not to an aborted one.
    pool.retain(held.connection);
    const next = await deadline(stays, 500, "remaining waiter");
    assert.equal(next.created, false);
    assert.equal(checked(pool).waiting, 0);
    await pool.close();
  });

  test("a connect started for an aborted acquire completes; its connection ends up idle", async () => {
    const transport = new MemoryTransport();
    const peers: MemoryPeer[] = [];
    const held = gate();
    transport.listen(A, (peer) => answerWithId(peer, peers), { accept: () => held.promise });
    const pool = track(new ConnectionPool({ transport, maxPerHost: 1 }));
    const first = new AbortController();
    const second = new AbortController();
    const connecting = settled(pool.acquire(A, { signal: first.signal }));
    await delay(0);
    assert.equal(checked(pool).connecting, 1);
    const queued = settled(pool.acquire(A, { signal: second.signal }));
    await delay(5);
    const waitingBefore = checked(pool).waiting;
    assert.ok(waitingBefore >= 1);
    const secondReason = new Error("second gave up");
    second.abort(secondReason);
    assert.equal(checked(pool).waiting, waitingBefore - 1);
    assert.equal(await queued, secondReason);
    const firstReason = new Error("first gave up");
    first.abort(firstReason);
    assert.equal(await connecting, firstReason);
    let stats = checked(pool);
    assert.equal(stats.waiting, 0);
    assert.equal(stats.connecting, 1, "the connect carries on");
    held.open();
    await waitUntil(() => checked(pool).idle === 1, 500, "the connection joins as idle");
    stats = checked(pool);
    assert.deepEqual([stats.connecting, stats.borrowed], [0, 0]);
    assert.equal(transport.openConnections, 1);
    const next = await pool.acquire(A);
    assert.equal(next.created, true, "its first hand-out, from the idle list");
    assert.equal(checked(pool).totals.created, 1);
    assert.equal(await whoIs(next.connection), 0);
    await pool.close();
  });
});

/** An upstream at A whose every connect fails after 2 ms; counts attempts and the most at once. */
function refusingUpstream() {
  const transport = new MemoryTransport();
  const counts = { attempts: 0, inFlight: 0, peak: 0 };
  transport.listen(A, () => {}, {
    accept: async () => {
      counts.attempts++;
      counts.peak = Math.max(counts.peak, ++counts.inFlight);
      await delay(2);
      counts.inFlight--;
      throw refused();
    },
  });
  return { transport, counts };
}

/** Twenty acquires at once on A: each must fail with a connect error or time out, none hang. */
async function burstOfTwenty(pool: ConnectionPool): Promise<void> {
  const results = await deadline(
    Promise.all(Array.from({ length: 20 }, () => settled(pool.acquire(A)))),
    2000,
    "20 acquires",
  );
  for (const result of results) {
    assert.ok(result instanceof PoolError, `expected a PoolError, got ${result}`);
    assert.ok(
      ["CONNECT_REFUSED", "ACQUIRE_TIMEOUT"].includes(result.code),
      `unexpected code ${result.code}`,
    );
  }
}

describe("connect errors are not retried silently", () => {
  test("a burst of 20 waiters against a refusing upstream: at most maxPerHost connects at once", async () => {
    const { transport, counts } = refusingUpstream();
    const events: PoolEvent[] = [];
    const pool = track(
      new ConnectionPool({
        transport,
        maxPerHost: 2,
        acquireTimeout: 1000,
        onEvent: (event) => events.push(event),
      }),
    );
    await burstOfTwenty(pool);
    assert.ok(counts.peak <= 2, `${counts.peak} connects at once`);
    assert.ok(
      counts.attempts >= 1 && counts.attempts <= 20,
      `${counts.attempts} connect counts.attempts for 20 acquires`,
    );
    const stats = checked(pool);
    assert.deepEqual([stats.connecting, stats.waiting, stats.idle, stats.borrowed], [0, 0, 0, 0]);
    assert.equal(stats.totals.failed, counts.attempts);
    assert.equal(
      events.filter((event) => event.type === "connect-error").length,
      0,
      "every failed connect had a caller waiting for it: no connect-error event",
    );
    await pool.close();
  });

  test("without limits, a burst of 20 against a refusing upstream: not 20 connects at once", async () => {
    const { transport, counts } = refusingUpstream();
    const pool = track(new ConnectionPool({ transport, acquireTimeout: 1000 }));
    await burstOfTwenty(pool);
    assert.ok(counts.peak < 20, `${counts.peak} connects at once for 20 acquires`);
    await delay(20);
    assert.ok(
      counts.attempts >= 1 && counts.attempts <= 20,
      `${counts.attempts} connect counts.attempts for 20 acquires`,
    );
    const stats = checked(pool);
    assert.deepEqual([stats.connecting, stats.waiting], [0, 0]);
    await pool.close();
  });

  test("without limits, a refused connect is not retried behind the caller's back", async () => {
    const inner = new MemoryTransport();
    const { transport, counter } = counting(inner);
    const pool = track(new ConnectionPool({ transport }));
    const error = await deadline(settled(pool.acquire(A)), 500, "acquire");
    assertPoolError(error, "CONNECT_REFUSED", KEY_A);
    await delay(20);
    assert.equal(counter.connects, 1);
    assert.equal(checked(pool).totals.failed, 1);
    await pool.close();
  });
});

describe("leakTimeout", () => {
  test("a connection borrowed too long is reported once, with the acquire's stack, and not closed", async () => {
    const { pool, peers, events } = setup({ leakTimeout: 20 });
    const { connection } = await pool.acquire(A);
    await delay(60);
    const leaks = events.filter((event) => event.type === "leak");
    assert.equal(leaks.length, 1);
    const leak = leaks[0]!;
    assert.ok(leak.type === "leak");
    assert.equal(leak.address, KEY_A);
    assert.ok(leak.borrowedMs >= 20, `borrowedMs ${leak.borrowedMs}`);
    assert.match(leak.stack, /policy_test/);
    assert.equal(peers[0]!.closed, false);
    assert.equal(await whoIs(connection), 0);
    assert.equal(pool.retain(connection), true);
    // Given back in time: no report.
    const quick = await pool.acquire(A);
    pool.retain(quick.connection);
    await delay(40);
    assert.equal(events.filter((event) => event.type === "leak").length, 1);
    await pool.close();
  });
});

describe("close({ timeout })", () => {
  test("rejects waiters, closes idle at once, closes borrowed after the timeout", async () => {
    const { pool, peers, transport } = setup({ maxPerHost: 1 });
    const held = await pool.acquire(A); // peers[0]
    const onB = await pool.acquire(B); // peers[1]
    pool.retain(onB.connection);
    const waiter = settled(pool.acquire(A));
    await delay(5);
    assert.equal(checked(pool).waiting, 1);
    let done = false;
    const started = Date.now();
    const closing = pool.close({ timeout: 50 }).then(() => done = true);
    assert.equal(peers[1]!.closed, true, "idle closed at once");
    assert.equal(checked(pool).idle, 0);
    assertPoolError(await deadline(waiter, 100, "waiter"), "POOL_CLOSED");
    assert.equal(checked(pool).waiting, 0);
    await delay(10);
    assert.equal(done, false, "close() waits for the borrowed connection");
    assert.equal(peers[0]!.closed, false);
    assert.equal(await whoIs(held.connection), 0, "borrowed stays usable until the timeout");
    await deadline(closing, 1000, "close()");
    assert.ok(Date.now() - started >= 40, `resolved after ${Date.now() - started} ms`);
    assert.equal(peers[0]!.closed, true, "closed at the timeout");
    assert.equal(transport.openConnections, 0);
    checked(pool);
  });

  test("resolves early once the borrowed connections come back", async () => {
    const { pool, peers, transport } = setup();
    const held = await pool.acquire(A);
    let done = false;
    const started = Date.now();
    const closing = pool.close({ timeout: 2000 }).then(() => done = true);
    await delay(10);
    assert.equal(done, false);
    assert.equal(pool.retain(held.connection), false, "retain after close closes");
    await deadline(closing, 200, "close() after the last return");
    assert.ok(Date.now() - started < 500);
    assert.equal(peers[0]!.closed, true);
    assert.equal(transport.openConnections, 0);
  });

  test("without a timeout, close() does not wait for borrowed connections", async () => {
    const { pool, peers } = setup();
    const held = await pool.acquire(A);
    await deadline(pool.close(), 100, "close()");
    assert.equal(peers[0]!.closed, false);
    assert.equal(await whoIs(held.connection), 0);
    assert.equal(pool.retain(held.connection), false);
    assert.equal(peers[0]!.closed, true);
    await assert.rejects(pool.acquire(A), isPoolError("POOL_CLOSED"));
  });
});

describe("perAddress", () => {
  test("per-address options override the pool's, keyed by the normalised address", async () => {
    const { pool, peers } = setup({
      maxPerHost: 5,
      perAddress: [{ address: { hostname: "B.TEST", port: "2" }, maxPerHost: 1, idleTimeout: 30 }],
    });
    const onA = await Promise.all([pool.acquire(A), pool.acquire(A), pool.acquire(A)]);
    assert.ok(onA.every((lease) => lease.created));
    const b1 = await pool.acquire(B);
    const b2 = pending(pool.acquire(B));
    await delay(5);
    assert.equal(waitingFor(pool, KEY_B), 1);
    assert.equal(waitingFor(pool, KEY_A), 0);
    pool.retain(b1.connection);
    const second = await deadline(b2, 500, "second acquire on B");
    assert.equal(second.created, false);
    pool.retain(second.connection);
    for (const lease of onA) pool.retain(lease.connection);
    const bPeer = peers[3]!;
    await waitUntil(() => bPeer.closed, 500, "B's idle timeout");
    assert.deepEqual(peers.slice(0, 3).map((peer) => peer.closed), [false, false, false]);
    assert.equal(checked(pool).byAddress[KEY_A]?.idle, 3);
    await pool.close();
  });
});

describe("stats", () => {
  test("waiting counts per address and in total; new totals start at zero", async () => {
    const { pool } = setup({ maxPerHost: 1 });
    let stats = checked(pool);
    assert.equal(stats.waiting, 0);
    assert.equal(stats.totals.expired, 0);
    assert.equal(stats.totals.timedOut, 0);
    const heldA = await pool.acquire(A);
    const heldB = await pool.acquire(B);
    const waiters = [A, A, B].map((address) => pending(pool.acquire(address)));
    await delay(5);
    stats = checked(pool);
    assert.equal(stats.waiting, 3);
    assert.equal(stats.byAddress[KEY_A]?.waiting, 2);
    assert.equal(stats.byAddress[KEY_B]?.waiting, 1);
    pool.retain(heldA.connection);
    const a1 = await deadline(waiters[0]!, 500);
    stats = checked(pool);
    assert.equal(stats.byAddress[KEY_A]?.waiting, 1);
    assert.equal(stats.waiting, 2);
    pool.release(heldB.connection);
    const b1 = await deadline(waiters[2]!, 500);
    stats = checked(pool);
    assert.equal(stats.waiting, 1);
    assert.equal(stats.byAddress[KEY_B]?.waiting, 0);
    pool.retain(a1.connection);
    const a2 = await deadline(waiters[1]!, 500);
    pool.retain(a2.connection);
    pool.retain(b1.connection);
    stats = checked(pool);
    assert.deepEqual([stats.waiting, stats.idle, stats.borrowed, stats.connecting], [0, 2, 0, 0]);
    await pool.close();
  });
});

describe("options are checked", () => {
  type Bad = [value: unknown, error: typeof TypeError | typeof RangeError, shows: RegExp];
  const count = (minimum: 0 | 1): Bad[] => [
    [-1, RangeError, /-1/],
    [1.5, RangeError, /1\.5/],
    [NaN, RangeError, /NaN/],
    ["3", TypeError, /3/],
    [null, TypeError, /null/],
    ...(minimum === 1 ? [[0, RangeError, /0/] as Bad] : []),
  ];
  const duration: Bad[] = [
    [-1, RangeError, /-1/],
    [NaN, RangeError, /NaN/],
    ["100", TypeError, /100/],
    [true, TypeError, /true/],
  ];
  const cases: Array<[string, Bad[]]> = [
    ["maxPerHost", count(1)],
    ["maxTotal", count(1)],
    ["maxIdlePerHost", count(0)],
    ["maxIdle", count(0)],
    ["minIdlePerHost", count(0)],
    ["maxWaiting", count(0)],
    ["idleTimeout", duration],
    ["maxLifetime", duration],
    ["connectTimeout", duration],
    ["acquireTimeout", duration],
    ["leakTimeout", duration],
    ["order", [[1, TypeError, /1/]]],
    ["onEvent", [["log", TypeError, /log/]]],
    ["perAddress", [[{}, TypeError, /object/i], ["a.test:1", TypeError, /a\.test:1|string/]]],
  ];
  for (const [option, bads] of cases) {
    test(option, () => {
      for (const [value, ErrorType, shows] of bads) {
        const what = `${option}: ${typeof value === "string" ? JSON.stringify(value) : value}`;
        const error = catchError(() => new ConnectionPool({ [option]: value } as never));
        assert.ok(error instanceof ErrorType, `${what}: expected ${ErrorType.name}, got ${error}`);
        assert.match(error.message, new RegExp(option), `${what}: ${error.message}`);
        assert.match(error.message, shows, `${what}: ${error.message}`);
      }
    });
  }

  test("order: an unknown order is rejected and named", () => {
    const error = catchError(() => new ConnectionPool({ order: "random" as never }));
    assert.ok(error instanceof RangeError || error instanceof TypeError, `got ${error}`);
    assert.match(error.message, /order/);
    assert.match(error.message, /random/);
  });

  test("perAddress entries: missing address, bad options", () => {
    const entries: Array<[unknown, typeof TypeError | typeof RangeError, RegExp[]]> = [
      [{ maxPerHost: 1 }, TypeError, [/address/]],
      [{ address: { hostname: "", port: 1 } }, TypeError, [/hostname/]],
      [{ address: A, maxPerHost: -1 }, RangeError, [/maxPerHost/, /-1/]],
      [{ address: A, maxPerHost: 0 }, RangeError, [/maxPerHost/, /0/]],
      [{ address: A, idleTimeout: "soon" }, TypeError, [/idleTimeout/, /soon/]],
      [{ address: A, maxWaiting: 2.5 }, RangeError, [/maxWaiting/, /2\.5/]],
      [{ address: A, connectTimeout: NaN }, RangeError, [/connectTimeout/, /NaN/]],
      [null, TypeError, [/perAddress/]],
    ];
    for (const [entry, ErrorType, shows] of entries) {
      const error = catchError(() => new ConnectionPool({ perAddress: [entry as never] }));
      assert.ok(error instanceof ErrorType, `${JSON.stringify(entry)}: got ${error}`);
      for (const pattern of shows) assert.match(error.message, pattern);
    }
  });

  test("valid options are accepted: Infinity for limits, 0 where it means none", () => {
    const open = track(
      new ConnectionPool({
        transport: new MemoryTransport(),
        maxPerHost: Infinity,
        maxTotal: Infinity,
        maxIdlePerHost: Infinity,
        maxIdle: Infinity,
        maxWaiting: Infinity,
        idleTimeout: 1000,
        maxLifetime: Infinity,
        connectTimeout: 100,
        acquireTimeout: 100,
        leakTimeout: Infinity,
        order: "fifo",
        onEvent: () => {},
        perAddress: [
          { address: A, maxPerHost: 3, maxIdlePerHost: 2, minIdlePerHost: 1, maxLifetime: 5000 },
        ],
      }),
    );
    assert.equal(checked(open).idle, 0);
    const strict = track(
      new ConnectionPool({
        transport: new MemoryTransport(),
        maxIdlePerHost: 0,
        maxIdle: 0,
        minIdlePerHost: 0,
        maxWaiting: 0,
        order: "lifo",
      }),
    );
    assert.equal(checked(strict).idle, 0);
  });

  test("warm(): a bad count is rejected and nothing is opened", async () => {
    const { pool, transport } = setup();
    for (
      const [n, ErrorType] of [
        [-1, RangeError],
        [1.5, RangeError],
        [NaN, RangeError],
        ["2", TypeError],
      ] as const
    ) {
      await assert.rejects(async () => await pool.warm(A, n as never), ErrorType, `warm(${n})`);
    }
    await delay(5);
    assert.equal(transport.openConnections, 0);
    await pool.close();
  });
});

function catchError(run: () => unknown): Error {
  try {
    run();
  } catch (error) {
    assert.ok(error instanceof Error, `threw a non-Error: ${error}`);
    return error;
  }
  assert.fail("expected it to throw");
}

describe("add() and warm() at the connection limit", () => {
  test("reject with LIMIT_REACHED and open nothing", async () => {
    const { pool, transport } = setup({ maxPerHost: 1 });
    const held = await pool.acquire(A);
    await assert.rejects(pool.add(A), (error: unknown) => {
      assert.ok(error instanceof PoolError);
      assert.equal(error.code, "LIMIT_REACHED");
      return true;
    });
    assert.equal(transport.openConnections, 1);
    assert.equal(checked(pool).connecting, 0);
    await assert.rejects(pool.warm(A, 1), (error: unknown) => {
      assert.ok(error instanceof PoolError);
      assert.equal(error.code, "LIMIT_REACHED");
      return true;
    });
    pool.retain(held.connection);
    await pool.close();
  });
});

describe("process lifetime", () => {
  test("an acquire waiting in line keeps the process alive until it is served", async () => {
    const result = await runFixture("waiter_keepalive", []);
    assert.equal(result.killed, false, "the process did not exit after being served");
    assert.equal(result.stdout.trim(), "served", result.stderr);
    assert.equal(result.code, 0, result.stderr);
  });
});
