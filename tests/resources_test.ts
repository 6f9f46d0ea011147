// What each fault leaves behind (issue 9): after connects that time out
// against a full accept queue, aborted acquires, refused connects, failed
// TLS handshakes (and ones that time out), a write of a detached buffer,
// peer resets mid-read, and a pool closed with connections borrowed, the
// process exits by itself within a second of close(), with as many open
// file descriptors as it started with (but on Deno after a TLS handshake
// timeout: see that test) and no socket left in SYN-SENT. Each fault runs
// in a child process under the runtime running the suite; the upstreams
// live here.
//
// Also, in this process: a connect the pool gave up on counts as connecting,
// and against the limits, until the transport has really let go of it; and
// a failed write leaves the pool's counts right.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as net from "node:net";
import { ConnectionPool, type PoolError } from "../mod.ts";
import { MemoryTransport } from "../src/transports/memory.ts";
import { testCertificates } from "./_certs.ts";
import { type FullBacklogListener, listenWithFullBacklog } from "./_full_backlog.ts";
import { runFixture } from "./_subprocess.ts";
import { runtime } from "./_runtime.ts";
import { TestUpstream } from "./_upstream.ts";
import { delay } from "./_async.ts";
import type { Report } from "./_fixtures/resource_faults.ts";

const linux = fs.existsSync("/proc/self/fd");

/** A detached chunk: a view whose buffer was transferred away. */
function detachedChunk(): Uint8Array {
  const buffer = new ArrayBuffer(8);
  const chunk = new Uint8Array(buffer);
  structuredClone(buffer, { transfer: [buffer] });
  return chunk;
}

describe(`resources after faults, on ${runtime}`, { skip: !linux }, () => {
  let full: FullBacklogListener | undefined;
  let echo: TestUpstream;
  let mute: TestUpstream;
  let secure: TestUpstream;
  let resetting: net.Server;
  let closedPort: number;
  const config: Record<string, unknown> = {};

  before(async () => {
    full = await listenWithFullBacklog();
    echo = await TestUpstream.start({ mode: "echo" });
    mute = await TestUpstream.start({ mode: "silent" });
    secure = await TestUpstream.start({ mode: "echo", tls: true });
    const closed = await TestUpstream.start();
    closedPort = closed.port;
    await closed.close();
    resetting = net.createServer((socket) => {
      socket.on("error", () => {});
      socket.once("data", () => socket.resetAndDestroy());
    });
    await new Promise<void>((resolve) => resetting.listen(0, "127.0.0.1", resolve));
    const { ca, otherCa } = testCertificates();
    Object.assign(config, {
      fullPort: full?.port,
      closedPort,
      echoPort: echo.port,
      mutePort: mute.port,
      resetPort: (resetting.address() as net.AddressInfo).port,
      tlsPort: secure.port,
      ca,
      otherCa,
    });
  });

  after(async () => {
    await full?.close();
    await echo.close();
    await mute.close();
    await secure.close();
    await new Promise((resolve) => resetting.close(resolve));
  });

  /**
   * Runs one scenario; checks exit time, descriptors and SYN-SENT sockets.
   * On this shared two-core machine a process now and then takes over a
   * second just to be torn down, so a slow exit (and only that) gets one
   * more try; a process kept alive by a socket takes minutes, every time.
   */
  async function runScenario(
    scenario: string,
    check = { fds: true },
    attempt = 1,
  ): Promise<Report> {
    const started = Date.now();
    const result = await runFixture("resource_faults", [scenario, JSON.stringify(config)], 4000);
    const exitedAt = started + result.elapsed;
    assert.equal(
      result.killed,
      false,
      `${scenario}: the process did not exit within 4 s: ${result.stdout}${result.stderr}`,
    );
    assert.equal(result.code, 0, result.stderr);
    const report = JSON.parse(result.stdout.trim().split("\n").at(-1)!) as Report;
    // Less the time the fixture spent waiting for its descriptors to close.
    const exitDelay = exitedAt - report.closedAt - report.waited.fds;
    if (process.env.RESOURCES_VERBOSE) {
      console.log(JSON.stringify({ runtime, exitDelay, ...report, closedAt: undefined }));
    }
    assert.equal(report.synSent.closed, 0, `${scenario}: sockets left in SYN-SENT`);
    if (check.fds) {
      assert.equal(
        report.fds.closed,
        report.fds.start,
        `${scenario}: ${report.fds.start} descriptors open at the start, ${report.fds.closed} after close()`,
      );
    }
    assert.deepEqual(report.closed, { idle: 0, borrowed: 0, connecting: 0, waiting: 0 });
    if (exitDelay >= 1000 && attempt === 1) return runScenario(scenario, check, 2);
    assert.ok(exitDelay < 1000, `${scenario}: exited ${exitDelay} ms after close()`);
    return report;
  }

  test("connects that time out against a full accept queue are closed at once", async (t) => {
    if (full === undefined) return t.skip("python3 is needed for a full accept queue");
    const report = await runScenario("connect-timeout");
    assert.deepEqual(new Set(report.codes), new Set(["CONNECT_TIMEOUT"]));
    // Not only by close(): right after the callers heard of the timeout,
    // and while a socket lingered, stats() counted it as connecting.
    assert.ok(report.waited.connecting < 500, `connects lingered ${report.waited.connecting} ms`);
    assert.equal(report.synSent.fault, 0, "timed-out connects still in SYN-SENT");
    assert.equal(report.fds.fault, report.fds.start);
  });

  test("close() cancels connects that acquires gave up waiting for", async (t) => {
    if (full === undefined) return t.skip("python3 is needed for a full accept queue");
    const report = await runScenario("aborted-acquire");
    assert.equal(report.codes.length, 4);
    assert.ok(!report.codes.includes("ok"), report.codes.join());
    // The connect goes on after its waiter left (the next acquire may use it).
    assert.ok(report.fault.connecting >= 1);
    assert.ok(report.synSent.fault >= 1);
  });

  test("refused connects", async () => {
    const report = await runScenario("refused-connect");
    assert.deepEqual(new Set(report.codes), new Set(["CONNECT_REFUSED"]));
    assert.equal(report.fds.fault, report.fds.start);
  });

  test("failed TLS handshakes: an unknown issuer, a server that does not speak TLS", async () => {
    const report = await runScenario("tls-handshake");
    assert.deepEqual(report.codes.slice(0, 3), [
      "TLS_CERT_INVALID",
      "TLS_CERT_INVALID",
      "TLS_CERT_INVALID",
    ]);
    assert.deepEqual(report.codes.slice(3), [
      "TLS_HANDSHAKE_FAILED",
      "TLS_HANDSHAKE_FAILED",
      "TLS_HANDSHAKE_FAILED",
    ]);
    assert.equal(report.fds.fault, report.fds.start);
  });

  // Deno keeps the socket of an abandoned TLS handshake open until the
  // server gives up (denoland/deno#14547): nothing the transport can close.
  test("TLS handshakes that time out", async () => {
    const report = await runScenario("tls-timeout", { fds: runtime !== "deno" });
    assert.deepEqual(report.codes, ["CONNECT_TIMEOUT", "CONNECT_TIMEOUT", "CONNECT_TIMEOUT"]);
    if (runtime !== "deno") assert.equal(report.fds.fault, report.fds.start);
  });

  // A detached buffer is a wrong argument: a TypeError through the promise,
  // nothing written, so the connection stays clean and is pooled again.
  test("a write of a detached buffer rejects; the connection stays clean", async () => {
    const report = await runScenario("detached-write");
    assert.equal(report.notes.threwSynchronously, undefined);
    assert.notEqual(report.codes[0], "ok");
    assert.equal(report.notes.retained, true);
    assert.equal(report.notes.echoed, "ping");
    assert.equal(report.notes.nextCreated, false);
    assert.deepEqual(report.fault, { idle: 1, borrowed: 0, connecting: 0, waiting: 0 });
  });

  test("peer resets while reads are pending", async () => {
    const report = await runScenario("reset-mid-read");
    assert.deepEqual(report.codes, ["CONNECTION_LOST", "CONNECTION_LOST", "CONNECTION_LOST"]);
    assert.deepEqual(report.fault, { idle: 0, borrowed: 0, connecting: 0, waiting: 0 });
    assert.equal(report.fds.fault, report.fds.start);
  });

  test("a pool closed with connections borrowed, one with a read pending", async () => {
    const report = await runScenario("closed-with-borrowed");
    assert.deepEqual(report.fault, { idle: 1, borrowed: 2, connecting: 0, waiting: 0 });
    assert.notEqual(report.notes.pendingRead, "resolved");
  });
});

describe("a connect the pool gave up on", () => {
  const address = { hostname: "slow.test", port: 1 };
  // Nothing in memory keeps the event loop alive, and Deno's test runner
  // fails a test whose loop runs dry while it awaits.
  let keepAlive: ReturnType<typeof setInterval>;
  before(() => {
    keepAlive = setInterval(() => {}, 1000);
  });
  after(() => clearInterval(keepAlive));

  /** A transport whose connects never complete and let go of their socket only when told. */
  function lingering(): { transport: MemoryTransport; letGo(): void } {
    const transport = new MemoryTransport();
    let letGo = (): void => {};
    const gone = new Promise<void>((resolve) => letGo = resolve);
    transport.listen(address, () => {}, {
      accept: () => new Promise<void>(() => {}),
      cancel: () => gone,
    });
    return { transport, letGo: () => letGo() };
  }

  test("rejects at its timeout, and counts as connecting until its socket is gone", async () => {
    const { transport, letGo } = lingering();
    const pool = new ConnectionPool({ transport, connectTimeout: 20, maxPerHost: 2 });
    const started = Date.now();
    const outcomes = await Promise.allSettled([pool.add(address), pool.add(address)]);
    assert.ok(Date.now() - started < 1000, "the callers waited for the socket to go");
    for (const outcome of outcomes) {
      assert.equal(outcome.status, "rejected");
      assert.equal((outcome.reason as PoolError).code, "CONNECT_TIMEOUT");
    }
    assert.equal(transport.openConnections, 2);
    assert.equal(pool.stats().connecting, 2);
    assert.equal(pool.stats().byAddress["slow.test:1"]?.connecting, 2);
    // maxPerHost bounds real sockets: no third connect while two linger.
    await assert.rejects(
      pool.add(address),
      (error) => (error as PoolError).code === "LIMIT_REACHED",
    );
    letGo();
    await delay(5);
    assert.equal(transport.openConnections, 0);
    assert.equal(pool.stats().connecting, 0);
    await pool.close();
  });

  test("close() rejects at once, and resolves once the socket is gone", async () => {
    const { transport, letGo } = lingering();
    const pool = new ConnectionPool({ transport });
    const adding = pool.add(address);
    await delay(5);
    let closed = false;
    const closing = pool.close().then(() => closed = true);
    await assert.rejects(adding, (error) => (error as PoolError).code === "POOL_CLOSED");
    await delay(10);
    assert.equal(closed, false, "close() resolved while a socket was still open");
    assert.equal(pool.stats().connecting, 1);
    letGo();
    await closing;
    assert.equal(transport.openConnections, 0);
    assert.equal(pool.stats().connecting, 0);
  });

  test("a waiter is not left waiting for a connect that was given up on", async () => {
    const { transport, letGo } = lingering();
    const pool = new ConnectionPool({ transport, connectTimeout: 20, acquireTimeout: 2000 });
    const first = pool.acquire(address);
    const second = pool.acquire(address);
    await assert.rejects(first, (error) => (error as PoolError).code === "CONNECT_TIMEOUT");
    // The second waiter's connect starts once the first one's socket is gone.
    letGo();
    await assert.rejects(second, (error) => (error as PoolError).code === "CONNECT_TIMEOUT");
    await pool.close();
    assert.equal(transport.openConnections, 0);
  });
});

describe(`a failed write, through the pool on ${runtime}`, () => {
  let echo: TestUpstream;
  before(async () => {
    echo = await TestUpstream.start({ mode: "echo" });
  });
  after(() => echo.close());

  test("a detached chunk rejects without throwing; nothing is written; counts stay right", async () => {
    const pool = new ConnectionPool();
    const { connection } = await pool.acquire(echo.address);
    let written: Promise<void> | undefined;
    assert.doesNotThrow(() => written = connection.write(detachedChunk()));
    await assert.rejects(written!, TypeError);
    assert.equal(pool.retain(connection), true, "no write is in progress: it is clean");
    const stats = pool.stats();
    assert.deepEqual(
      { idle: stats.idle, borrowed: stats.borrowed, connecting: stats.connecting },
      { idle: 1, borrowed: 0, connecting: 0 },
    );
    // The same connection goes on: it writes, reads and is pooled again.
    const next = await pool.acquire(echo.address);
    assert.equal(next.created, false);
    await next.connection.write(new TextEncoder().encode("ping"));
    assert.equal(new TextDecoder().decode((await next.connection.read())!), "ping");
    assert.equal(pool.retain(next.connection), true);
    assert.equal(pool.stats().idle, 1);
    await pool.close();
    await echo.waitForOpen(0);
  });
});
