// The behaviour every runtime transport must have, as one list of tests.
// Each runtime's test file calls describeTransportContract with its own
// transport; the pool core relies on exactly these properties.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type * as net from "node:net";
import type { Transport, TransportConnection } from "../src/transports/transport.ts";
import { resolveAddress } from "../src/address.ts";
import { TestUpstream } from "./_upstream.ts";
import { runFixture } from "./_subprocess.ts";

export interface ContractOptions {
  /** Skip the whole contract (the transport is not for this runtime). */
  skip?: boolean;
  /** Name the idle fixture uses to load the transport: "deno", "bun" or "node". */
  fixtureName: string;
}

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

function onceWritten(socket: net.Socket, data: string): Promise<void> {
  return new Promise((resolve, reject) =>
    socket.write(data, (err) => err ? reject(err) : resolve())
  );
}

function onceEnded(socket: net.Socket): Promise<void> {
  return new Promise((resolve) => socket.end(() => resolve()));
}

export function describeTransportContract(
  name: string,
  getTransport: () => Transport,
  options: ContractOptions,
): void {
  describe(`${name} transport contract`, { skip: options.skip }, () => {
    let echo: TestUpstream;
    let silent: TestUpstream;
    before(async () => {
      echo = await TestUpstream.start({ mode: "echo" });
      silent = await TestUpstream.start({ mode: "silent" });
    });
    after(async () => {
      await echo.close();
      await silent.close();
    });
    const connect = (upstream: TestUpstream) =>
      getTransport().connect(resolveAddress(upstream.address), {});

    test("echoes 4 MiB in order, with no byte lost or repeated", async () => {
      const socket = await connect(echo);
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
      const socket = await connect(echo);
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
      const socket = await connect(silent);
      const server = await silent.nextConnection();
      const pending = socket.read();
      server.end();
      assert.equal(await pending, null);
      assert.equal(await socket.read(), null);
      socket.close();
    });

    test("bytes sent before the FIN are read before null", async () => {
      const socket = await connect(silent);
      const server = await silent.nextConnection();
      server.end("last words");
      assert.equal(new TextDecoder().decode(await readExactly(socket, 10)), "last words");
      assert.equal(await socket.read(), null);
      socket.close();
    });

    test("read() rejects after the peer resets the connection", async () => {
      const socket = await connect(silent);
      const server = await silent.nextConnection();
      const pending = socket.read();
      server.resetAndDestroy();
      await assert.rejects(pending);
      socket.close();
    });

    test("close() settles a pending read, frees the socket and is idempotent", async () => {
      const socket = await connect(silent);
      await silent.nextConnection();
      const before = silent.open.size;
      const pending = socket.read().then(() => "settled", () => "settled");
      socket.close();
      socket.close();
      assert.equal(await pending, "settled");
      await silent.waitForOpen(before - 1);
      await assert.rejects(socket.write(encoder.encode("after close")));
    });

    test("closeWrite() sends FIN and the reply can still be read", async () => {
      const socket = await connect(silent);
      const server = await silent.nextConnection();
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

    test("a refused connect rejects with code ECONNREFUSED", async () => {
      const closed = await TestUpstream.start();
      const port = closed.port;
      await closed.close();
      await assert.rejects(
        getTransport().connect(resolveAddress({ hostname: "127.0.0.1", port }), {}),
        (error: { code?: string }) => error.code === "ECONNREFUSED",
      );
    });

    test("an unresolvable host rejects with a DNS code", async () => {
      await assert.rejects(
        getTransport().connect(resolveAddress({ hostname: "no-such-host.invalid", port: 80 }), {}),
        (error: { code?: string }) => /^(ENOTFOUND|EAI_)/.test(String(error.code)),
      );
    });

    test("an aborted signal rejects the connect and leaves no socket open", async () => {
      const controller = new AbortController();
      controller.abort();
      await assert.rejects(
        getTransport().connect(resolveAddress(silent.address), { signal: controller.signal }),
      );
      const late = new AbortController();
      const pending = getTransport().connect(resolveAddress(silent.address), {
        signal: late.signal,
      });
      late.abort();
      await pending.then((socket) => socket.close(), () => {});
      await silent.waitForOpen(0);
    });

    for (
      const [what, provoke] of [
        ["bytes", (server: net.Socket) => onceWritten(server, "x")],
        ["a FIN", (server: net.Socket) => onceEnded(server)],
      ] as const
    ) {
      test(`settle() delivers ${what} already received to a pending read (300 times)`, async () => {
        let missed = 0;
        for (let i = 0; i < 300; i++) {
          const socket = await connect(silent);
          const server = await silent.nextConnection();
          let delivered = false;
          socket.read().then(() => delivered = true, () => delivered = true);
          // Give the idle read time to be truly pending, as in the pool.
          await new Promise((resolve) => setTimeout(resolve, 0));
          assert.equal(delivered, false, "nothing was sent yet");
          await provoke(server);
          // The bytes are in the client's receive buffer now; JavaScript may not have them.
          await getTransport().settle();
          if (!delivered) missed++;
          socket.close();
          server.destroy();
        }
        assert.equal(missed, 0, `settle() missed ${what} ${missed} times out of 300`);
      });
    }

    test("an unref'd connection with a pending read lets the process exit", async () => {
      const result = await runFixture("idle_transport", [options.fixtureName, String(silent.port)]);
      assert.equal(result.killed, false, `process was kept alive (stdout: ${result.stdout})`);
      assert.equal(result.stdout.trim(), "idle", result.stderr);
      assert.equal(result.code, 0, result.stderr);
    });
  });
}
