// The behaviour every runtime transport must have, as one list of tests.
// Each runtime's test file calls describeTransportContract with its own
// transport; the pool core relies on exactly these properties.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { setImmediate } from "node:timers";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type * as tls from "node:tls";
import type { Transport, TransportConnection } from "../src/transports/transport.ts";
import { type Address, resolveAddress } from "../src/address.ts";
import { PoolError } from "../src/errors.ts";
import { TlsSessions } from "../src/tls_sessions.ts";
import { testCertificates } from "./_certs.ts";
import { TestUpstream, useUpstreamPair } from "./_upstream.ts";
import { runFixture } from "./_subprocess.ts";
import { runtime } from "./_runtime.ts";
import { waitUntil } from "./_async.ts";

export interface ContractOptions {
  /** Skip the whole contract (the transport is not for this runtime). */
  skip?: boolean;
  /** Name the idle fixture uses to load the transport: "deno", "bun" or "node". */
  fixtureName: string;
  /**
   * What to run the contract over: TCP ports (the default), Unix sockets, or
   * TLS over TCP with the test CA's server certificate.
   */
  network?: Network;
}

/** The kinds of upstream every transport is tested against. */
export const NETWORKS = ["tcp", "unix", "tls"] as const;
export type Network = typeof NETWORKS[number];

const encoder = new TextEncoder();

async function readExactly(socket: TransportConnection, length: number): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  let filled = 0;
  while (filled < length) {
    const chunk = await socket.read();
    if (chunk === null) throw new Error(`EOF after ${filled} of ${length} bytes`);
    assert.ok(chunk.length > 0, "read() must never resolve an empty chunk");
    assert.ok(filled + chunk.length <= length, "received more bytes than were sent");
    out.set(chunk, filled);
    filled += chunk.length;
  }
  return out;
}

export function describeTransportContract(
  name: string,
  getTransport: () => Transport,
  options: ContractOptions,
): void {
  const unix = options.network === "unix";
  const secure = options.network === "tls";
  const title = `${name} transport contract${unix ? " (Unix sockets)" : secure ? " (TLS)" : ""}`;
  // Every settle() round opens a connection; TLS handshakes make them dearer.
  const settleRounds = secure ? 100 : 300;
  describe(title, { skip: options.skip }, () => {
    const upstreams = useUpstreamPair({ unix, tls: secure });
    const connect = (upstream: TestUpstream) =>
      getTransport().connect(resolveAddress(upstream.address), {});

    test("echoes 4 MiB in order, with no byte lost or repeated", async () => {
      const socket = await connect(upstreams.echo);
      const payload = new Uint8Array(4 * 1024 * 1024);
      for (let i = 0; i < payload.length; i++) payload[i] = (i * 7 + (i >> 11)) & 0xff;
      const [, received] = await Promise.all([
        socket.write(payload),
        readExactly(socket, payload.length),
      ]);
      assert.ok(received.every((byte, i) => byte === payload[i]), "echoed bytes differ");
      socket.close();
    });

    test("many small writes arrive as one ordered stream", async () => {
      const socket = await connect(upstreams.echo);
      let expected = "";
      for (let i = 0; i < 200; i++) {
        const line = `msg-${i};`;
        expected += line;
        await socket.write(encoder.encode(line));
      }
      const received = await readExactly(socket, expected.length);
      assert.equal(new TextDecoder().decode(received), expected);
      socket.close();
    });

    test("read() resolves null at the peer's EOF, and again after", async () => {
      const socket = await connect(upstreams.silent);
      const server = await upstreams.silent.nextConnection();
      const pending = socket.read();
      server.end();
      assert.equal(await pending, null);
      assert.equal(await socket.read(), null);
      socket.close();
    });

    test("bytes sent before the FIN are read before null", async () => {
      const socket = await connect(upstreams.silent);
      const server = await upstreams.silent.nextConnection();
      server.end("last words");
      assert.equal(new TextDecoder().decode(await readExactly(socket, 10)), "last words");
      assert.equal(await socket.read(), null);
      socket.close();
    });

    // Node 20 cannot reset a server-side TLS socket (ERR_INVALID_HANDLE_TYPE).
    const resetSkipped = unix || (secure && runtime === "node");
    test(
      "read() rejects after the peer resets the connection",
      { skip: resetSkipped },
      async () => {
        const socket = await connect(upstreams.silent);
        const server = await upstreams.silent.nextConnection();
        const pending = socket.read();
        server.resetAndDestroy();
        await assert.rejects(pending);
        socket.close();
      },
    );

    // A Unix socket has no reset: an abrupt close is only an EOF.
    test("read() resolves null after the peer destroys the socket", { skip: !unix }, async () => {
      const socket = await connect(upstreams.silent);
      const server = await upstreams.silent.nextConnection();
      const pending = socket.read();
      server.destroy();
      assert.equal(await pending, null);
      socket.close();
    });

    test("close() settles a pending read, frees the socket and is idempotent", async () => {
      const socket = await connect(upstreams.silent);
      await upstreams.silent.nextConnection();
      const before = upstreams.silent.open.size;
      const pending = socket.read().then(() => "settled", () => "settled");
      socket.close();
      socket.close();
      assert.equal(await pending, "settled");
      await upstreams.silent.waitForOpen(before - 1);
      await assert.rejects(socket.write(encoder.encode("after close")));
    });

    test("write, closeWrite and read never throw; a bad chunk rejects with a TypeError", async () => {
      const socket = await connect(upstreams.echo);
      const buffer = new ArrayBuffer(8);
      const detached = new Uint8Array(buffer);
      structuredClone(buffer, { transfer: [buffer] });
      for (const chunk of [detached, "text", undefined, null, 42]) {
        let written: Promise<void> | undefined;
        assert.doesNotThrow(() => written = socket.write(chunk as Uint8Array));
        await assert.rejects(written!, TypeError);
      }
      await socket.write(new Uint8Array(0)); // empty, not detached: nothing to do
      // Nothing was written: the stream is intact.
      await socket.write(encoder.encode("ok"));
      assert.equal(new TextDecoder().decode(await readExactly(socket, 2)), "ok");
      socket.close();
      const calls = [
        () => socket.write(encoder.encode("x")),
        () => socket.closeWrite(),
        () => socket.read(),
      ];
      for (const call of calls) {
        let settled: Promise<unknown> | undefined;
        assert.doesNotThrow(() => settled = call());
        await settled!.catch(() => {});
      }
    });

    test("closeWrite() sends FIN and the reply can still be read", async () => {
      const socket = await connect(upstreams.silent);
      const server = await upstreams.silent.nextConnection();
      // The upstream is not half-open: without this it answers our FIN with its own at once.
      server.allowHalfOpen = true;
      const ended = new Promise<void>((resolve) => server.once("end", () => resolve()));
      server.on("data", () => {});
      await socket.write(encoder.encode("request"));
      await socket.closeWrite();
      await ended;
      server.end("reply");
      assert.equal(new TextDecoder().decode(await readExactly(socket, 5)), "reply");
      assert.equal(await socket.read(), null);
      socket.close();
    });

    test("a path with no listener rejects with code ENOENT", { skip: !unix }, async () => {
      const closed = await TestUpstream.start({ unix: true });
      const address = resolveAddress(closed.address);
      await closed.close();
      await assert.rejects(
        getTransport().connect(address, {}),
        (error: { code?: string }) => error.code === "ENOENT",
      );
    });

    test("a refused connect rejects with code ECONNREFUSED", { skip: unix }, async () => {
      const closed = await TestUpstream.start({ tls: secure });
      const address = resolveAddress(closed.address);
      await closed.close();
      await assert.rejects(
        getTransport().connect(address, {}),
        (error: { code?: string }) => error.code === "ECONNREFUSED",
      );
    });

    test("an unresolvable host rejects with a DNS code", { skip: unix }, async () => {
      await assert.rejects(
        getTransport().connect(resolveAddress({ hostname: "no-such-host.invalid", port: 80 }), {}),
        (error: { code?: string }) => /^(ENOTFOUND|EAI_)/.test(String(error.code)),
      );
    });

    test("an aborted signal rejects the connect and leaves no socket open", async () => {
      const controller = new AbortController();
      controller.abort();
      await assert.rejects(
        getTransport().connect(resolveAddress(upstreams.silent.address), {
          signal: controller.signal,
        }),
      );
      // Its own upstream: a connect aborted after it started may still
      // reach the server, and that stale socket must not become the next
      // test's silent.nextConnection().
      const upstream = await TestUpstream.start({ mode: "silent", unix, tls: secure });
      try {
        const late = new AbortController();
        const pending = getTransport().connect(resolveAddress(upstream.address), {
          signal: late.signal,
        });
        late.abort();
        await pending.then((socket) => socket.close(), () => {});
        await upstream.waitForOpen(0);
      } finally {
        await upstream.close();
      }
    });

    // The pool calls settle() from anywhere: a timer, an immediate, or an I/O
    // callback (where Node's loop is mid-poll and a single immediate would
    // run before the next poll). The bytes or FIN are in the client's receive
    // buffer when settle() is called: the server's write/end has completed.
    for (const phase of ["a timer", "an I/O callback", "an immediate callback"] as const) {
      for (const what of ["bytes", "a FIN"] as const) {
        test(`settle() called from ${phase} delivers ${what} already received (${settleRounds} times)`, async () => {
          let missed = 0;
          for (let i = 0; i < settleRounds; i++) {
            const socket = await connect(upstreams.silent);
            const server = await upstreams.silent.nextConnection();
            let delivered = false;
            socket.read().then(() => delivered = true, () => delivered = true);
            // Let the read become truly pending, as an idle read in the pool is.
            await new Promise((resolve) => setTimeout(resolve, 0));
            assert.equal(delivered, false, "nothing was sent yet");
            const settled = new Promise<boolean>((resolve) => {
              const provoke = (): void => {
                const check = (): void => {
                  getTransport().settle().then(() => resolve(delivered));
                };
                if (what === "bytes") server.write("x", check);
                else server.end(check);
              };
              if (phase === "an immediate callback") setImmediate(provoke);
              else if (phase === "a timer") setTimeout(provoke, 0);
              else server.once("data", provoke);
            });
            if (phase === "an I/O callback") await socket.write(new Uint8Array([1]));
            if (!await settled) missed++;
            socket.close();
            server.destroy();
          }
          assert.equal(missed, 0, `settle() missed ${what} ${missed} times out of ${settleRounds}`);
        });
      }
    }

    test("concurrent settle() calls resolve together", async () => {
      const order: number[] = [];
      await Promise.all([1, 2, 3].map((n) => getTransport().settle().then(() => order.push(n))));
      assert.deepEqual(order, [1, 2, 3]);
    });

    test("an unref'd connection with a pending read lets the process exit", async () => {
      const caFile = secure ? writeTempFile("ca.pem", testCertificates().ca) : undefined;
      try {
        const result = await runFixture("idle_transport", [
          options.fixtureName,
          upstreams.silent.location,
          ...(caFile === undefined ? [] : [caFile]),
        ]);
        assert.equal(result.killed, false, `process was kept alive (stdout: ${result.stdout})`);
        assert.equal(result.stdout.trim(), "idle", result.stderr);
        assert.equal(result.code, 0, result.stderr);
      } finally {
        if (caFile !== undefined) fs.rmSync(path.dirname(caFile), { recursive: true });
      }
    });

    if (secure) describeTlsContract(options.fixtureName, getTransport, upstreams);
  });
}

function writeTempFile(name: string, text: string): string {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "upstream-pool-")), name);
  fs.writeFileSync(file, text);
  return file;
}

/** What a TLS connect must do beyond carrying bytes: verify, classify failures, resume. */
function describeTlsContract(
  runtimeName: string,
  getTransport: () => Transport,
  upstreams: ReturnType<typeof useUpstreamPair>,
): void {
  const withTls = (upstream: TestUpstream, tlsOptions: Record<string, unknown>): Address => {
    const { hostname, port } = upstream.address as { hostname: string; port: number };
    return { hostname, port, tls: tlsOptions };
  };
  const rejectsWith = async (address: Address, code: string): Promise<void> => {
    await assert.rejects(
      getTransport().connect(resolveAddress(address), {}),
      (error: unknown) => {
        assert.ok(error instanceof PoolError, `expected a PoolError, got ${error}`);
        assert.equal(error.code, code, error.message);
        assert.ok(error.cause !== undefined, "the runtime's error must be the cause");
        return true;
      },
    );
  };

  test("a certificate from another CA rejects with TLS_CERT_INVALID", async () => {
    await rejectsWith(
      withTls(upstreams.echo, { caCerts: [testCertificates().otherCa] }),
      "TLS_CERT_INVALID",
    );
  });

  test("a certificate for another name rejects with TLS_CERT_INVALID", async () => {
    await rejectsWith(
      withTls(upstreams.echo, { caCerts: [testCertificates().ca], serverName: "example.com" }),
      "TLS_CERT_INVALID",
    );
  });

  test("a server that does not speak TLS rejects with TLS_HANDSHAKE_FAILED", async () => {
    // A plain echo server sends the ClientHello back: not a ServerHello.
    const plain = await TestUpstream.start({ mode: "echo" });
    try {
      await rejectsWith(
        withTls(plain, { caCerts: [testCertificates().ca] }),
        "TLS_HANDSHAKE_FAILED",
      );
    } finally {
      await plain.close();
    }
  });

  test("the server name is checked: localhost matches the test certificate", async () => {
    const socket = await getTransport().connect(
      resolveAddress(
        withTls(upstreams.echo, { caCerts: [testCertificates().ca], serverName: "localhost" }),
      ),
      {},
    );
    await socket.write(encoder.encode("ping"));
    assert.equal(new TextDecoder().decode(await readExactly(socket, 4)), "ping");
    socket.close();
  });

  test("the session of a first connection resumes the next one where the runtime can", async () => {
    const sessions = new TlsSessions();
    const address = resolveAddress(upstreams.echo.address);
    const resumed: Array<boolean | undefined> = [];
    for (let i = 0; i < 2; i++) {
      const socket = await getTransport().connect(address, { tlsSessions: sessions });
      await socket.write(encoder.encode("ping"));
      await readExactly(socket, 4);
      resumed.push(socket.tls?.resumed);
      // Node reports the server's ticket a little after the first bytes.
      if (runtimeName !== "deno") await waitUntil(() => sessions.get(address.key) !== undefined);
      socket.close();
    }
    if (runtimeName === "deno") {
      // Deno has no session API: it cannot resume, nor tell.
      assert.deepEqual(resumed, [undefined, undefined]);
      assert.equal(sessions.get(address.key), undefined);
    } else {
      assert.deepEqual(resumed, [false, true]);
      assert.notEqual(sessions.get(address.key), undefined);
    }
  });

  test("the server agrees: it saw a resumed session (Node and Bun servers can tell)", {
    skip: runtimeName === "deno", // Deno's node:tls server never resumes
  }, async () => {
    // Its own upstream: earlier tests may have left connections in the pair's backlog.
    const upstream = await TestUpstream.start({ mode: "silent", tls: true });
    const sessions = new TlsSessions();
    const address = resolveAddress(upstream.address);
    const serverSaw: boolean[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        const socket = await getTransport().connect(address, { tlsSessions: sessions });
        const server = await upstream.nextConnection() as tls.TLSSocket;
        serverSaw.push(server.isSessionReused());
        server.write("x");
        await readExactly(socket, 1);
        await waitUntil(() => sessions.get(address.key) !== undefined);
        socket.close();
      }
    } finally {
      await upstream.close();
    }
    assert.deepEqual(serverSaw, [false, true, true]);
  });
}
