// The keep-alive edge (issue 10) on the in-memory transport: idle deadlines
// the pool enforces at hand-out, per-connection deadlines from retain(),
// exchange() and its replay rule, unread(), abandonable reads, idleMs and
// the reused/received fields of connection errors.
import { afterEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { ConnectionPool, type ConnectionPoolOptions, PoolError, type PoolEvent } from "../mod.ts";
import { type MemoryPeer, MemoryTransport } from "../src/transports/memory.ts";
import { delay, waitUntil } from "./_async.ts";

const A = { hostname: "a.test", port: 1 };
const encoder = new TextEncoder();
const decoder = new TextDecoder();

const pools: ConnectionPool[] = [];
afterEach(async () => {
  await Promise.allSettled(pools.splice(0).map((pool) => pool.close()));
});

/** A pool over an upstream that answers each request with "<n>:<request>", n its connection number. */
function setup(options: Omit<ConnectionPoolOptions, "transport"> = {}) {
  const transport = new MemoryTransport();
  const peers: MemoryPeer[] = [];
  transport.listen(A, async (peer) => {
    const id = peers.push(peer) - 1;
    for (let chunk; (chunk = await peer.read()) !== null;) {
      peer.write(`${id}:${decoder.decode(chunk)}`);
    }
  });
  const events: PoolEvent[] = [];
  const pool = new ConnectionPool({ ...options, transport, onEvent: (e) => events.push(e) });
  pools.push(pool);
  return { pool, peers, events, transport };
}

async function ask(
  connection: { write(c: Uint8Array): Promise<void>; read(): Promise<Uint8Array | null> },
  text: string,
): Promise<string> {
  await connection.write(encoder.encode(text));
  const reply = await connection.read();
  if (reply === null) throw new Error("EOF before the reply");
  return decoder.decode(reply);
}

describe("idle deadlines", () => {
  test("a connection idle for idleTimeout is never handed out, even if its timer is late", async () => {
    const { pool } = setup({ idleTimeout: 40 });
    const first = await pool.acquire(A);
    pool.retain(first.connection);
    // Block the event loop past the deadline, so the expiry timer cannot run first.
    const until = Date.now() + 60;
    while (Date.now() < until) { /* busy: the timer is late */ }
    const next = await pool.acquire(A);
    assert.equal(next.created, true, "a new connection, not the expired one");
    assert.notEqual(next.connection.id, first.connection.id);
    assert.equal(pool.stats().totals.expired, 1);
  });

  test("retain({ idleTimeout }) sets this idle period's deadline", async () => {
    const { pool, events } = setup({ idleTimeout: 60_000 });
    const lease = await pool.acquire(A);
    assert.equal(pool.retain(lease.connection, { idleTimeout: 30 }), true);
    await waitUntil(() => pool.stats().idle === 0, 1000, "closed at its own deadline");
    assert.deepEqual(
      events.flatMap((e) => e.type === "expire" ? [e.reason] : []),
      ["idle-timeout"],
    );
    // The next idle period has the pool's deadline again.
    const again = await pool.acquire(A);
    pool.retain(again.connection);
    await delay(60);
    assert.equal(pool.stats().idle, 1);
  });

  test("retain({ idleTimeout: 0 }) closes it, and larger values never extend the pool's", async () => {
    const { pool } = setup({ idleTimeout: 30 });
    const a = await pool.acquire(A);
    assert.equal(pool.retain(a.connection, { idleTimeout: 0 }), false);
    const b = await pool.acquire(A);
    assert.equal(pool.retain(b.connection, { idleTimeout: 10_000 }), true);
    await waitUntil(() => pool.stats().idle === 0, 1000, "the pool's 30 ms still apply");
  });

  test("retain rejects bad idleTimeout values without taking the connection back", async () => {
    const { pool } = setup();
    const lease = await pool.acquire(A);
    assert.throws(() => pool.retain(lease.connection, { idleTimeout: -1 }), RangeError);
    assert.throws(() => pool.retain(lease.connection, { idleTimeout: NaN }), RangeError);
    assert.throws(
      () => pool.retain(lease.connection, { idleTimeout: "5" as unknown as number }),
      TypeError,
    );
    assert.equal(pool.stats().borrowed, 1);
    assert.equal(pool.retain(lease.connection), true);
  });

  test("the idle clock starts at the last byte received, not at retain", async () => {
    const { pool } = setup({ idleTimeout: 60_000 });
    const { connection } = await pool.acquire(A);
    assert.equal(await ask(connection, "x"), "0:x");
    await delay(60); // a busy borrower: the server's keep-alive timer runs meanwhile
    assert.equal(pool.retain(connection, { idleTimeout: 80 }), true);
    await delay(40); // 100 ms since the reply, 40 ms since retain
    const next = await pool.acquire(A);
    assert.equal(next.created, true, "the connection idle 100 ms > 80 ms was not handed out");
    assert.equal(pool.stats().totals.expired, 1);
  });

  test("acquire says how long the connection was idle", async () => {
    const { pool } = setup();
    const first = await pool.acquire(A);
    assert.equal(first.idleMs, 0);
    pool.retain(first.connection);
    await delay(30);
    const next = await pool.acquire(A);
    assert.ok(next.idleMs >= 25 && next.idleMs < 1000, `idleMs ${next.idleMs}`);
  });
});

describe("exchange()", () => {
  test("retains the connection after the function returns and resolves with its value", async () => {
    const { pool } = setup();
    const reply = await pool.exchange(A, (connection) => ask(connection, "x"));
    assert.equal(reply, "0:x");
    assert.deepEqual([pool.stats().idle, pool.stats().borrowed], [1, 0]);
    assert.equal(await pool.exchange(A, (connection) => ask(connection, "y")), "0:y");
  });

  test("releases the connection if the function throws, and rethrows", async () => {
    const { pool } = setup();
    const failure = new Error("parse error");
    await assert.rejects(
      pool.exchange(A, async (connection) => {
        await ask(connection, "x");
        throw failure;
      }),
      (error) => error === failure,
    );
    assert.deepEqual([pool.stats().idle, pool.stats().totals.released], [0, 1]);
  });

  test("a function may release the connection itself", async () => {
    const { pool } = setup();
    await pool.exchange(A, async (connection) => {
      await ask(connection, "x");
      pool.release(connection);
    });
    assert.deepEqual([pool.stats().idle, pool.stats().totals.released], [0, 1]);
  });

  test("closes instead of pooling a connection with bytes left unread", async () => {
    const { pool } = setup();
    await pool.exchange(A, async (connection) => {
      const reply = await ask(connection, "x");
      connection.unread(encoder.encode(reply.slice(1)));
    });
    assert.deepEqual([pool.stats().idle, pool.stats().totals.dropped], [0, 1]);
  });

  test("idempotent: retried once on a new connection when the reused one was closed before any reply", async () => {
    const { pool, peers, events } = setup();
    await pool.exchange(A, (connection) => ask(connection, "warm"));
    // The upstream closes the idle connection as the request goes out:
    // the FIN is still in flight when the acquire hands it out.
    const attempts: number[] = [];
    const result = pool.exchange(A, async (connection) => {
      attempts.push(connection.id);
      if (attempts.length === 1) peers[0]!.end();
      return await ask(connection, "get");
    }, { idempotent: true });
    assert.equal(await result, "1:get");
    assert.equal(attempts.length, 2);
    assert.notEqual(attempts[0], attempts[1]);
    assert.equal(pool.stats().totals.retried, 1);
    const retry = events.find((e) => e.type === "retry");
    assert.ok(retry !== undefined && retry.type === "retry" && retry.id === attempts[0]);
  });

  test("not idempotent: the same failure is not retried", async () => {
    const { pool, peers } = setup();
    await pool.exchange(A, (connection) => ask(connection, "warm"));
    let attempts = 0;
    await assert.rejects(
      pool.exchange(A, async (connection) => {
        attempts++;
        peers[0]!.end();
        return await ask(connection, "post");
      }),
      /EOF before the reply/,
    );
    assert.equal(attempts, 1);
    assert.equal(pool.stats().totals.retried, 0);
  });

  test("never retried after a byte of the reply came back", async () => {
    const { pool, peers } = setup();
    await pool.exchange(A, (connection) => ask(connection, "warm"));
    let attempts = 0;
    await assert.rejects(
      pool.exchange(A, async (connection) => {
        attempts++;
        await connection.write(encoder.encode("get"));
        assert.notEqual(await connection.read(), null); // part of the reply
        peers[0]!.end();
        if (await connection.read() === null) throw new Error("reply cut short");
      }, { idempotent: true }),
      /reply cut short/,
    );
    assert.equal(attempts, 1);
  });

  test("never retried on a new connection's failure", async () => {
    const { pool, peers } = setup();
    let attempts = 0;
    await assert.rejects(
      pool.exchange(A, async (connection) => {
        attempts++;
        peers.at(-1)!.end();
        return await ask(connection, "get");
      }, { idempotent: true }),
      /EOF before the reply/,
    );
    assert.equal(attempts, 1);
  });

  test("never retried when the connection is fine and the function failed by itself", async () => {
    const { pool } = setup();
    await pool.exchange(A, (connection) => ask(connection, "warm"));
    let attempts = 0;
    await assert.rejects(
      pool.exchange(A, () => {
        attempts++;
        throw new Error("bad request");
      }, { idempotent: true }),
      /bad request/,
    );
    assert.equal(attempts, 1);
  });

  test("idleTimeout is the retained connection's idle deadline", async () => {
    const { pool } = setup({ idleTimeout: 60_000 });
    await pool.exchange(A, (connection) => ask(connection, "x"), { idleTimeout: 20 });
    assert.equal(pool.stats().idle, 1);
    await waitUntil(() => pool.stats().idle === 0, 1000, "closed at the exchange's deadline");
    await assert.rejects(
      pool.exchange(A, () => 1, { idleTimeout: -5 }),
      (error) => error instanceof RangeError && /exchange option idleTimeout/.test(error.message),
    );
  });

  test("rejects bad arguments through the promise", async () => {
    const { pool } = setup();
    await assert.rejects(pool.exchange(A, "no" as unknown as () => void), TypeError);
    await assert.rejects(
      pool.exchange(A, () => 1, { idempotent: "yes" as unknown as boolean }),
      TypeError,
    );
  });
});

describe("the reading side", () => {
  test("unread() puts bytes back in front; read() returns them first", async () => {
    const { pool } = setup();
    const { connection } = await pool.acquire(A);
    const reply = await ask(connection, "abc");
    connection.unread(encoder.encode(reply.slice(3)));
    connection.unread(encoder.encode(reply.slice(0, 3)));
    assert.equal(decoder.decode((await connection.read())!), "0:a");
    assert.equal(decoder.decode((await connection.read())!), "bc");
    assert.equal(pool.retain(connection), true, "nothing left unread");
  });

  test("read({ signal }) can be abandoned; the connection is then not reused", async () => {
    const { pool } = setup();
    const { connection } = await pool.acquire(A);
    const controller = new AbortController();
    const reading = connection.read({ signal: controller.signal });
    const reason = new Error("gave up");
    controller.abort(reason);
    await assert.rejects(reading, (error) => error === reason);
    // The connection still works for this borrower ...
    assert.equal(await ask(connection, "x"), "0:x");
    // ... but its place in the stream was lost once: never pooled again.
    assert.equal(pool.retain(connection), false);
  });

  test("errors on a connection say whether it was reused and what was received", async () => {
    const { pool, peers } = setup();
    const first = await pool.acquire(A);
    peers[0]!.reset();
    const error = await first.connection.read().catch((e) => e);
    assert.ok(error instanceof PoolError, String(error));
    assert.deepEqual(
      [error.code, error.operation, error.reused, error.received, error.address],
      ["CONNECTION_LOST", "read", false, 0, "a.test:1"],
    );
    // A later write names the write, and says where it failed first.
    const writeError = await first.connection.write(encoder.encode("x")).catch((e) => e);
    assert.ok(writeError instanceof PoolError);
    assert.equal(writeError.operation, "write");
    assert.match(writeError.message, /write/);
    pool.release(first.connection);
    const second = await pool.acquire(A);
    await ask(second.connection, "x");
    pool.retain(second.connection);
    const third = await pool.acquire(A);
    peers[1]!.reset();
    const reusedError = await third.connection.read().catch((e) => e);
    assert.equal(reusedError.reused, true);
  });

  test("a read pending when the connection is released rejects naming the address", async () => {
    const { pool } = setup();
    const { connection } = await pool.acquire(A);
    const reading = connection.read();
    pool.release(connection);
    const error = await reading.catch((e) => e);
    assert.ok(error instanceof PoolError);
    assert.deepEqual([error.code, error.address, error.operation], [
      "LEASE_ENDED",
      "a.test:1",
      "read",
    ]);
  });
});
