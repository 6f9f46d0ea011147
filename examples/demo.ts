/**
 * The pool at work on an upstream it starts itself: a small line-protocol
 * key-value server on 127.0.0.1 that, like most real servers, closes
 * connections that sit idle too long.
 *
 * Run with `npm run demo` (Deno), `bun examples/demo.ts`, or under Node from
 * the npm build (`node npm/esm/examples/demo.js`). It prints:
 * 1. connections opened vs reused, sequential and with concurrent callers;
 * 2. idle connections that the upstream closed being noticed and replaced
 *    without a failed request;
 * 3. round-trip time through the pool vs a new connection per request,
 *    measured in this run;
 * 4. the same over TLS (certificates minted with `openssl` for this run),
 *    where a new connection costs a handshake: how many of the new
 *    connections resumed a TLS session;
 * 5. requests at the upstream's keep-alive edge (reused just as the
 *    upstream closes them): failed with a plain acquire/retain loop vs with
 *    `exchange` and an idle deadline, in the same run.
 *
 * @module
 */
import * as net from "node:net";
import process from "node:process";
import * as tls from "node:tls";
import { type Address, ConnectionPool, type UpstreamConnection } from "../mod.ts";
import { testCertificates } from "../tests/_certs.ts";

const IDLE_TIMEOUT_MS = 200;
const SEQUENTIAL = 2000;
const CALLERS = 16;
const PER_CALLER = 250;
const TLS_REQUESTS = 500;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * A key-value server: "GET key\n" answers "+value\n"; idle connections
 * close. With `certificate`, it speaks TLS.
 */
async function startUpstream(
  certificate?: { cert: string; key: string },
): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const serve = (socket: net.Socket): void => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    socket.setTimeout(IDLE_TIMEOUT_MS, () => socket.end());
    let buffered = "";
    socket.on("data", (chunk) => {
      buffered += chunk.toString("latin1");
      let newline: number;
      while ((newline = buffered.indexOf("\n")) !== -1) {
        const key = buffered.slice(4, newline);
        buffered = buffered.slice(newline + 1);
        socket.write(`+value-of-${key}\n`);
      }
    });
  };
  const server = certificate === undefined
    ? net.createServer({ noDelay: true }, serve)
    : tls.createServer({ noDelay: true, ...certificate }, serve);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** Sends one GET and reads the one-line reply. */
async function get(connection: UpstreamConnection, key: string): Promise<string> {
  await connection.write(encoder.encode(`GET ${key}\n`));
  let reply = "";
  while (!reply.endsWith("\n")) {
    const chunk = await connection.read();
    if (chunk === null) throw new Error("the upstream closed the connection mid-request");
    reply += decoder.decode(chunk);
  }
  return reply;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
}

function table(rows: Array<[string, string]>): string {
  const width = Math.max(...rows.map(([label]) => label.length));
  return rows.map(([label, value]) => `  ${label.padEnd(width)}  ${value}`).join("\n");
}

const upstream = await startUpstream();
const address = { hostname: "127.0.0.1", port: upstream.port };
const pool = new ConnectionPool();
let failed = 0;

// A GET may be sent twice: exchange() replays it on a new connection if the
// upstream closed a reused one before answering (see section 5).
async function pooledRequest(key: string): Promise<number> {
  const started = performance.now();
  try {
    const reply = await pool.exchange(address, (connection) => get(connection, key), {
      idempotent: true,
    });
    if (reply !== `+value-of-${key}\n`) throw new Error(`wrong reply ${JSON.stringify(reply)}`);
  } catch (error) {
    failed++;
    console.error(`request ${key} failed:`, error);
  }
  return (performance.now() - started) * 1000;
}

// 1. Sequential requests, then concurrent callers.
const pooledTimes: number[] = [];
for (let i = 0; i < SEQUENTIAL; i++) pooledTimes.push(await pooledRequest(`k${i}`));
const afterSequential = pool.stats().totals;
await Promise.all(
  Array.from({ length: CALLERS }, async (_, caller) => {
    for (let i = 0; i < PER_CALLER; i++) await pooledRequest(`c${caller}-${i}`);
  }),
);
const afterConcurrent = pool.stats();

// 2. Let the idle connections outlive the upstream's idle timeout: the pool
// must notice each close on its own, before anyone asks for a connection.
const idleBefore = afterConcurrent.idle;
await new Promise((resolve) => setTimeout(resolve, IDLE_TIMEOUT_MS * 2.5));
const afterIdle = pool.stats();
for (let i = 0; i < 100; i++) await pooledRequest(`after-idle-${i}`);
const afterRecovery = pool.stats();

// 3. The same requests with a new connection each time.
const freshTimes = await newConnectionEachTime(address, SEQUENTIAL);
await pool.close();
await upstream.close();

/** Round-trip times (µs) of `count` requests that each open a connection, and how many resumed TLS. */
async function newConnectionEachTime(
  to: Address,
  count: number,
): Promise<number[] & { resumed: number }> {
  const times = Object.assign([] as number[], { resumed: 0 });
  const fresh = new ConnectionPool();
  for (let i = 0; i < count; i++) {
    const started = performance.now();
    const { connection } = await fresh.acquire(to);
    await get(connection, `k${i}`);
    if (connection.tls?.resumed) times.resumed++;
    fresh.release(connection);
    times.push((performance.now() - started) * 1000);
  }
  await fresh.close();
  return times;
}

// 4. TLS: the pool against a TLS handshake per request.
const certificates = testCertificates();
const tlsUpstream = await startUpstream(certificates.server);
const tlsAddress = {
  hostname: "127.0.0.1",
  port: tlsUpstream.port,
  tls: { caCerts: [certificates.ca] },
};
const tlsPool = new ConnectionPool();
const tlsPooledTimes: number[] = [];
for (let i = 0; i < TLS_REQUESTS; i++) {
  const started = performance.now();
  const { connection } = await tlsPool.acquire(tlsAddress);
  if (await get(connection, `t${i}`) !== `+value-of-t${i}\n`) failed++;
  tlsPool.retain(connection);
  tlsPooledTimes.push((performance.now() - started) * 1000);
}
const tlsOpened = tlsPool.stats().totals.created;
await tlsPool.close();
const tlsFreshTimes = await newConnectionEachTime(tlsAddress, TLS_REQUESTS);
await tlsUpstream.close();

// 5. The keep-alive edge: callers pause for about the upstream's idle
// timeout between requests, so connections are reused just as the
// upstream closes them.
const EDGE_CALLERS = 40;
const EDGE_ROUNDS = 6;
const edgeUpstream = await startUpstream();
const edgeAddress = { hostname: "127.0.0.1", port: edgeUpstream.port };

/** Runs the edge workload with `request`; returns how many requests failed. */
async function atTheEdge(request: (pool: ConnectionPool, key: string) => Promise<void>) {
  const edgePool = new ConnectionPool();
  let edgeFailed = 0;
  await Promise.all(Array.from({ length: EDGE_CALLERS }, async (_, caller) => {
    for (let round = 0; round < EDGE_ROUNDS; round++) {
      await request(edgePool, `e${caller}-${round}`).catch(() => edgeFailed++);
      // Idle for the upstream's timeout, give or take 5%.
      await new Promise((resolve) =>
        setTimeout(resolve, IDLE_TIMEOUT_MS * (0.95 + Math.random() / 10))
      );
    }
  }));
  const { retried, created } = edgePool.stats().totals;
  await edgePool.close();
  return { failed: edgeFailed, retried, created };
}

const plainEdge = await atTheEdge(async (edgePool, key) => {
  const { connection } = await edgePool.acquire(edgeAddress);
  try {
    await get(connection, key);
    edgePool.retain(connection);
  } catch (error) {
    edgePool.release(connection);
    throw error;
  }
});
// The same with exchange(): the idle deadline is the upstream's timeout
// less a margin, and an idempotent request that met a closed connection is
// sent again on a new one.
const safeEdge = await atTheEdge(async (edgePool, key) => {
  await edgePool.exchange(edgeAddress, (connection) => get(connection, key), {
    idempotent: true,
    idleTimeout: IDLE_TIMEOUT_MS - 50,
  });
});
await edgeUpstream.close();
failed += safeEdge.failed;

const host = globalThis as { Deno?: { version: { deno: string } }; Bun?: { version: string } };
const runtimeName = host.Deno
  ? `Deno ${host.Deno.version.deno}`
  : host.Bun
  ? `Bun ${host.Bun.version}`
  : `Node ${process.version}`;
const pooledMedian = median(pooledTimes);
const freshMedian = median(freshTimes);
const concurrentCreated = afterConcurrent.totals.created - afterSequential.created;
const concurrentReused = afterConcurrent.totals.reused - afterSequential.reused;
console.log(`upstream-pool demo on ${runtimeName}`);
console.log(
  `upstream: 127.0.0.1:${upstream.port}, closes connections idle for ${IDLE_TIMEOUT_MS} ms\n`,
);
console.log("1. Opened vs reused");
console.log(table([
  [
    `${SEQUENTIAL} sequential requests`,
    `${afterSequential.created} opened, ${afterSequential.reused} reused`,
  ],
  [
    `${CALLERS} callers x ${PER_CALLER} requests`,
    `${concurrentCreated} opened, ${concurrentReused} reused (idle afterwards: ${afterConcurrent.idle})`,
  ],
]));
console.log("\n2. Idle connections closed by the upstream");
console.log(table([
  ["idle before the pause", String(idleBefore)],
  [
    `idle after ${IDLE_TIMEOUT_MS * 2.5} ms`,
    `${afterIdle.idle} (${afterIdle.totals.broken} closes noticed while idle, none by a request)`,
  ],
  [
    "next 100 requests",
    `${afterRecovery.totals.created - afterIdle.totals.created} opened, ${
      afterRecovery.totals.reused - afterIdle.totals.reused
    } reused`,
  ],
  ["failed requests, whole demo", String(failed)],
]));
console.log("\n3. Round trip, median of " + SEQUENTIAL);
console.log(table([
  ["through the pool", `${pooledMedian.toFixed(0)} µs`],
  ["new connection per request", `${freshMedian.toFixed(0)} µs`],
  ["pool speed-up", `${(freshMedian / pooledMedian).toFixed(2)}x`],
]));
const tlsPooledMedian = median(tlsPooledTimes);
const tlsFreshMedian = median(tlsFreshTimes);
console.log(`\n4. TLS round trip, median of ${TLS_REQUESTS}`);
console.log(table([
  ["through the pool", `${tlsPooledMedian.toFixed(0)} µs (${tlsOpened} connection opened)`],
  [
    "new TLS connection per request",
    `${
      tlsFreshMedian.toFixed(0)
    } µs (${tlsFreshTimes.resumed} of ${TLS_REQUESTS} resumed a session${
      host.Deno ? "; Deno cannot resume" : ""
    })`,
  ],
  ["pool speed-up", `${(tlsFreshMedian / tlsPooledMedian).toFixed(2)}x`],
]));
const edgeRequests = EDGE_CALLERS * EDGE_ROUNDS;
console.log(
  `\n5. At the keep-alive edge: ${edgeRequests} requests, each after ~${IDLE_TIMEOUT_MS} ms idle`,
);
console.log(table([
  [
    "plain acquire/retain",
    `${plainEdge.failed} failed (${plainEdge.created} connections opened)`,
  ],
  [
    "exchange + idle deadline",
    `${safeEdge.failed} failed (${safeEdge.created} opened, ${safeEdge.retried} retried)`,
  ],
]));
if (failed > 0 || afterIdle.idle !== 0) process.exitCode = 1;
