// Checks of the pool on real sockets that every kind of upstream must pass
// (TCP, Unix sockets, TLS): sequential reuse with every byte in order, no
// dirty or dead handoff, and idle connections the upstream closes evicted.
import assert from "node:assert/strict";
import type * as net from "node:net";
import { type Acquired, ConnectionPool, type UpstreamConnection } from "../mod.ts";
import { TestUpstream, type TestUpstreamOptions } from "./_upstream.ts";
import { waitUntil } from "./_async.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export async function roundTrip(connection: UpstreamConnection, text: string): Promise<string> {
  await connection.write(encoder.encode(text));
  let received = "";
  while (received.length < text.length) {
    const chunk = await connection.read();
    if (chunk === null) throw new Error(`EOF after ${JSON.stringify(received)}`);
    received += decoder.decode(chunk);
  }
  return received;
}

/** Acquire, round trip, retain, `cycles` times: one connection throughout, every byte back in order. */
export async function checkSequentialReuse(upstream: TestUpstream, cycles: number): Promise<void> {
  const pool = new ConnectionPool();
  const accepted = upstream.accepted;
  let sent = "";
  let received = "";
  for (let i = 0; i < cycles; i++) {
    const { created, connection } = await pool.acquire(upstream.address);
    assert.equal(created, i === 0);
    const message = `<${i}:${"y".repeat(i % 29)}>`;
    sent += message;
    received += await roundTrip(connection, message);
    assert.equal(pool.retain(connection), true);
  }
  assert.equal(received, sent);
  assert.equal(upstream.accepted - accepted, 1);
  await pool.close();
  await upstream.waitForOpen(0);
}

/**
 * Sends stray bytes, a FIN or nothing into an idle connection, in turn, and
 * acquires right after: the pool must never hand out the dirty or dead one,
 * and must reuse the clean one. `rounds` is a multiple of 3.
 */
export async function checkNoDirtyHandoff(upstream: TestUpstream, rounds: number): Promise<void> {
  const pool = new ConnectionPool();
  let server: net.Socket | undefined;
  const dirty: string[] = [];
  let reused = 0;
  for (let i = 0; i < rounds; i++) {
    const mode = i % 3; // 0: stray bytes, 1: FIN, 2: nothing (must be reused)
    let lease = await pool.acquire(upstream.address);
    if (lease.created) server = await upstream.nextConnection();
    await roundTrip(lease.connection, "ping");
    pool.retain(lease.connection);
    // Acquire from inside the upstream's write/end callback: the bytes or
    // the FIN are in the client's receive buffer by then.
    lease = await new Promise<Acquired>((resolve, reject) => {
      const acquire = () => pool.acquire(upstream.address).then(resolve, reject);
      if (mode === 0) server!.write("stray", acquire);
      else if (mode === 1) server!.end(acquire);
      else acquire();
    });
    if (mode === 2) {
      assert.equal(lease.created, false, "a clean idle connection must be reused");
      reused++;
    } else if (!lease.created) {
      dirty.push(mode === 0 ? "bytes" : "FIN");
      pool.release(lease.connection);
      continue;
    }
    if (lease.created) server = await upstream.nextConnection();
    await roundTrip(lease.connection, "check");
    pool.retain(lease.connection);
  }
  assert.deepEqual(dirty, [], `dirty or dead handoffs: ${dirty.length}`);
  assert.equal(reused, rounds / 3);
  await pool.close();
  await upstream.waitForOpen(0);
}

/**
 * Runs the reuse check and then the dirty-handoff check, each against a
 * fresh echo upstream of the given kind: nextConnection() must not see an
 * earlier check's peers.
 */
export async function checkReuseOnFreshUpstreams(
  options: Pick<TestUpstreamOptions, "unix" | "tls">,
  rounds: number,
): Promise<void> {
  for (const check of [checkSequentialReuse, checkNoDirtyHandoff]) {
    const upstream = await TestUpstream.start({ ...options, mode: "echo" });
    try {
      await check(upstream, rounds);
    } finally {
      await upstream.close();
    }
  }
}

/**
 * For each way of closing: an idle connection the upstream closes that way
 * leaves the pool within a second, by the idle read, with no acquire.
 */
export async function checkIdleEviction(
  upstream: TestUpstream,
  closes: Array<(server: net.Socket) => void>,
): Promise<void> {
  const pool = new ConnectionPool();
  for (const close of closes) {
    const next = upstream.nextConnection();
    const { connection } = await pool.acquire(upstream.address);
    await roundTrip(connection, "hello");
    pool.retain(connection);
    close(await next);
    await waitUntil(() => pool.stats().idle === 0, 1000, "eviction of the closed idle connection");
  }
  assert.equal(pool.stats().totals.broken, closes.length);
  await pool.close();
  await upstream.waitForOpen(0);
}
