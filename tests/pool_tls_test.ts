// The pool over TLS on real loopback sockets, with the default transport of
// the runtime that runs the suite, against a node:tls upstream whose
// certificates the test CA signed (minted with openssl at run time).
import { afterEach, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import type * as tls from "node:tls";
import { type Address, ConnectionPool, PoolError, type TlsOptions } from "../mod.ts";
import { testCertificates } from "./_certs.ts";
import { checkIdleEviction, checkReuseOnFreshUpstreams, roundTrip } from "./_pool_checks.ts";
import { runtime } from "./_runtime.ts";
import { TestUpstream } from "./_upstream.ts";
import { waitUntil } from "./_async.ts";

describe(`pool over TLS on ${runtime}`, () => {
  const certificates = testCertificates();
  let upstream: TestUpstream;
  beforeEach(async () => {
    upstream = await TestUpstream.start({ mode: "echo", tls: true });
  });
  afterEach(() => upstream.close());
  const at = (tlsOptions: TlsOptions): Address => ({
    hostname: "127.0.0.1",
    port: upstream.port,
    tls: tlsOptions,
  });

  test("reuse, no byte lost, no dirty or dead handoff (300 rounds)", () =>
    checkReuseOnFreshUpstreams({ tls: true }, 300));

  test("an idle TLS connection the upstream closes is evicted without an acquire", () =>
    checkIdleEviction(upstream, [(s) => s.end(), (s) => s.destroy()]));

  test("connections are shared only between acquires with the same TLS options", async () => {
    const pool = new ConnectionPool();
    const { ca, otherCa } = certificates;
    const identities: TlsOptions[] = [
      { caCerts: [ca] },
      { caCerts: [ca], serverName: "localhost" },
      { caCerts: [ca, otherCa] },
      { caCerts: [ca], alpnProtocols: ["x-test"] },
      // Deno cannot turn verification off (TLS_UNSUPPORTED, tested below).
      ...(runtime === "deno" ? [] : [{ caCerts: [ca], verify: false }, { verify: false }]),
    ];
    // Open one connection per identity and keep it idle.
    for (const identity of identities) {
      const { created, connection } = await pool.acquire(at(identity));
      assert.equal(created, true, `a connection was shared into ${JSON.stringify(identity)}`);
      await roundTrip(connection, "first");
      pool.retain(connection);
    }
    const keys = Object.keys(pool.stats().byAddress);
    assert.equal(new Set(keys).size, identities.length, keys.join(" "));
    // Each acquire again gets back the connection made with its own options.
    for (const identity of identities) {
      const { created, connection } = await pool.acquire(at(identity));
      assert.equal(created, false);
      await roundTrip(connection, "again");
      pool.retain(connection);
    }
    assert.equal(upstream.accepted, identities.length);
    await pool.close();
  });

  test("a failed certificate check is TLS_CERT_INVALID with the runtime's cause, never retried", async () => {
    const pool = new ConnectionPool();
    for (
      const identity of [{ caCerts: [certificates.otherCa] }, {}, {
        caCerts: [certificates.ca],
        serverName: "example.com",
      }]
    ) {
      const error = await pool.acquire(at(identity)).catch((e) => e);
      assert.ok(error instanceof PoolError, String(error));
      assert.equal(error.code, "TLS_CERT_INVALID", error.message);
      assert.ok(error.cause instanceof Error, "the runtime's error is the cause");
    }
    // Three handshakes refused by the client, none completed, nothing pooled or half-open.
    await waitUntil(() => upstream.handshakeFailures === 3, 1000, "three failed handshakes");
    assert.equal(upstream.accepted, 0);
    const stats = pool.stats();
    assert.deepEqual([stats.idle, stats.borrowed, stats.connecting], [0, 0, 0]);
    assert.equal(stats.totals.failed, 3);
    // The right CA still works, on a connection of its own.
    const { created, connection } = await pool.acquire(at({ caCerts: [certificates.ca] }));
    assert.equal(created, true);
    assert.equal(await roundTrip(connection, "trusted"), "trusted");
    pool.retain(connection);
    await pool.close();
  });

  test(
    "options Deno cannot honour reject with TLS_UNSUPPORTED",
    { skip: runtime !== "deno" },
    async () => {
      const pool = new ConnectionPool();
      for (
        const identity of [{ verify: false }, {
          caCerts: [certificates.ca],
          ...certificates.client,
        }]
      ) {
        const error = await pool.acquire(at(identity)).catch((e) => e);
        assert.ok(error instanceof PoolError, String(error));
        assert.equal(error.code, "TLS_UNSUPPORTED", error.message);
      }
      assert.equal(upstream.accepted + upstream.handshakeFailures, 0, "no connection was tried");
      await pool.close();
    },
  );

  test("new connections resume the session of an earlier one where the runtime can", async () => {
    const pool = new ConnectionPool();
    const clientSaw: Array<boolean | undefined> = [];
    const serverSaw: boolean[] = [];
    for (let i = 0; i < 3; i++) {
      const next = upstream.nextConnection();
      const { created, connection } = await pool.acquire(upstream.address);
      assert.equal(created, true);
      serverSaw.push((await next as tls.TLSSocket).isSessionReused());
      clientSaw.push(connection.tls?.resumed);
      // Two exchanges: a Node server sends its ticket after its first bytes.
      await roundTrip(connection, "one");
      await roundTrip(connection, "two");
      pool.release(connection); // the next acquire must open a new connection
    }
    if (runtime === "deno") {
      // No session API in Deno: every handshake is a full one (README).
      assert.deepEqual(clientSaw, [undefined, undefined, undefined]);
      assert.deepEqual(serverSaw, [false, false, false]);
    } else {
      assert.deepEqual(clientSaw, [false, true, true]);
      assert.deepEqual(serverSaw, [false, true, true]);
    }
    await pool.close();
  });

  test("a client certificate is presented, and is part of the identity", {
    skip: runtime === "deno",
  }, async () => {
    const strict = await TestUpstream.start({
      mode: "echo",
      tls: true,
      requireClientCertificate: true,
    });
    const pool = new ConnectionPool();
    try {
      const address = {
        ...strict.address,
        tls: { caCerts: [certificates.ca], ...certificates.client },
      };
      const { connection } = await pool.acquire(address);
      assert.equal(await roundTrip(connection, "mutual"), "mutual");
      pool.retain(connection);
      // Without the certificate: another identity, so a new connection, which the server refuses.
      const without = await pool.acquire(strict.address).then(
        async ({ connection }) =>
          await roundTrip(connection, "anonymous").then(() => "answered", () => "refused"),
        () => "refused",
      );
      assert.equal(without, "refused");
      assert.equal(strict.accepted, 1);
    } finally {
      await pool.close();
      await strict.close();
    }
  });

  test("a handshake that never completes fails with CONNECT_TIMEOUT and leaves no socket", async () => {
    // A plain TCP server that accepts and never answers the ClientHello.
    const mute = await TestUpstream.start({ mode: "silent" });
    const pool = new ConnectionPool({ connectTimeout: 150 });
    try {
      const failing = pool.acquire({ ...mute.address, tls: { caCerts: [certificates.ca] } })
        .catch((e) => e);
      (await mute.nextConnection()).resume(); // read, so that the client's close is seen
      const error = await failing;
      assert.ok(error instanceof PoolError, String(error));
      assert.equal(error.code, "CONNECT_TIMEOUT", error.message);
      // The attempt counts as connecting until the transport has closed its socket.
      await waitUntil(() => pool.stats().connecting === 0, 1000, "the attempt to end");
      // Deno finishes a TLS handshake before it shuts a connection down
      // (denoland/deno#14547): the socket stays until the server gives up.
      if (runtime !== "deno") await mute.waitForOpen(0);
    } finally {
      await pool.close();
      await mute.close();
    }
  });

  test("limits hold over TLS: 12 callers share maxPerHost 3 connections", async () => {
    const pool = new ConnectionPool({ maxPerHost: 3 });
    const replies = await Promise.all(Array.from({ length: 12 }, async (_, i) => {
      const { connection } = await pool.acquire(upstream.address);
      const reply = await roundTrip(connection, `caller-${i};`);
      pool.retain(connection);
      return reply;
    }));
    replies.forEach((reply, i) => assert.equal(reply, `caller-${i};`));
    assert.equal(upstream.accepted, 3);
    const { idle, borrowed, waiting, totals } = pool.stats();
    assert.deepEqual([idle, borrowed, waiting, totals.created, totals.reused], [3, 0, 0, 3, 9]);
    await pool.close();
  });

  test("close() closes idle and returning TLS connections", async () => {
    const pool = new ConnectionPool();
    const leases = await Promise.all([1, 2].map(() => pool.acquire(upstream.address)));
    for (const { connection } of leases) await roundTrip(connection, "x");
    pool.retain(leases[0]!.connection);
    await pool.close();
    await upstream.waitForOpen(1);
    assert.equal(pool.retain(leases[1]!.connection), false);
    await upstream.waitForOpen(0);
  });
});
