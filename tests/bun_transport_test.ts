import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { describeTransportContract, NETWORKS } from "./_transport_contract.ts";
import { bunTransport } from "../src/transports/bun.ts";
import type { TransportConnection } from "../src/transports/transport.ts";
import { resolveAddress } from "../src/address.ts";
import { runtime } from "./_runtime.ts";
import { pattern, sameBytes } from "./_bytes.ts";
import { TestUpstream, useUpstreamPair } from "./_upstream.ts";
import { deadline, delay } from "./_async.ts";

// Over TCP, over Unix sockets and over TLS.
for (const network of NETWORKS) {
  describeTransportContract("bun", () => bunTransport, {
    skip: runtime !== "bun",
    fixtureName: "bun",
    network,
  });
}

/** Reads to EOF and returns everything, checking that no chunk is empty. */
async function readAll(socket: TransportConnection): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (let chunk = await socket.read(); chunk !== null; chunk = await socket.read()) {
    assert.ok(chunk.length > 0, "read() resolved an empty chunk");
    chunks.push(chunk);
    size += chunk.length;
  }
  const all = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    all.set(chunk, offset);
    offset += chunk.length;
  }
  return all;
}

describe("bun transport", { skip: runtime !== "bun" }, () => {
  const upstreams = useUpstreamPair();
  const connect = (upstream: TestUpstream): Promise<TransportConnection> =>
    bunTransport.connect(resolveAddress(upstream.address), {});

  test("concurrent settle() callers share one turn", () => {
    assert.equal(bunTransport.settle(), bunTransport.settle());
  });

  // Connects go through node:net, then the native socket is taken over; a
  // Bun whose node:net changed would silently fall back to the slower
  // net.Socket path (NodeConnection). Catch that here.
  test("a connection runs on the native Bun socket, not on the net.Socket", async () => {
    for (const upstream of [upstreams.echo, await TestUpstream.start({ tls: true })]) {
      const socket = await connect(upstream);
      assert.equal(socket.constructor.name, "BunConnection");
      await socket.write(new Uint8Array([1, 2, 3]));
      assert.deepEqual([...(await socket.read())!], [1, 2, 3]);
      socket.close();
      if (upstream !== upstreams.echo) await upstream.close();
    }
  });

  test("a write larger than the socket buffers resolves only once Bun took every byte", async () => {
    const socket = await connect(upstreams.silent);
    const server = await upstreams.silent.nextConnection();
    server.pause();
    const payload = pattern(32 * 1024 * 1024, 7);
    let state = "pending";
    const written = socket.write(payload).then(() => state = "resolved", () => state = "rejected");
    await delay(50);
    assert.equal(state, "pending", "write() resolved before the peer could take the bytes");
    const received: Uint8Array[] = [];
    let size = 0;
    const all = new Promise<void>((resolve) => {
      server.on("data", (chunk: Uint8Array) => {
        received.push(chunk);
        size += chunk.length;
        if (size >= payload.length) resolve();
      });
    });
    server.resume();
    await deadline(written, 5000, "write after drain");
    assert.equal(state, "resolved");
    await deadline(all, 5000, "server receiving everything");
    const joined = new Uint8Array(size);
    let offset = 0;
    for (const chunk of received) {
      joined.set(chunk, offset);
      offset += chunk.length;
    }
    assert.ok(sameBytes(joined, payload), "the server received other bytes than were written");
    socket.close();
  });

  test("close() rejects a write still waiting for 'drain'", async () => {
    const socket = await connect(upstreams.silent);
    const server = await upstreams.silent.nextConnection();
    server.pause();
    const pending = socket.write(new Uint8Array(32 * 1024 * 1024));
    await delay(20);
    socket.close();
    await assert.rejects(pending, /closed/);
    server.destroy();
  });

  test("writes issued back to back while one waits for 'drain' arrive in order", async () => {
    const socket = await connect(upstreams.echo);
    const first = pattern(8 * 1024 * 1024, 3);
    const second = pattern(1024, 5);
    const third = pattern(3 * 1024 * 1024, 11);
    const reading = (async () => {
      const out = new Uint8Array(first.length + second.length + third.length);
      let filled = 0;
      while (filled < out.length) {
        const chunk = await socket.read();
        assert.ok(chunk !== null, "EOF before every byte was echoed");
        out.set(chunk, filled);
        filled += chunk.length;
      }
      return out;
    })();
    await Promise.all([socket.write(first), socket.write(second), socket.write(third)]);
    const received = await deadline(reading, 5000, "echo");
    const expected = new Uint8Array(received.length);
    expected.set(first, 0);
    expected.set(second, first.length);
    expected.set(third, first.length + second.length);
    assert.ok(sameBytes(received, expected), "echoed bytes differ or are out of order");
    socket.close();
  });

  test("closeWrite() behind a write waiting for 'drain' sends the FIN after every byte", async () => {
    const socket = await connect(upstreams.silent);
    const server = await upstreams.silent.nextConnection();
    server.pause();
    const payload = pattern(16 * 1024 * 1024, 13);
    let size = 0;
    let bytesAtEnd = -1;
    server.on("data", (chunk: Uint8Array) => size += chunk.length);
    const ended = new Promise<void>((resolve) => {
      server.once("end", () => {
        bytesAtEnd = size;
        resolve();
      });
    });
    const written = socket.write(payload);
    const halfClosed = socket.closeWrite();
    assert.equal(socket.closeWrite(), halfClosed, "a second closeWrite() waits for the same FIN");
    await assert.rejects(socket.write(new Uint8Array([1])), /write side/);
    server.resume();
    await deadline(Promise.all([written, halfClosed, ended]), 5000, "write, FIN and end");
    assert.equal(bytesAtEnd, payload.length);
    socket.close();
  });

  test("a reader that falls behind pauses the socket, and no byte is lost", async () => {
    const socket = await connect(upstreams.silent);
    const server = await upstreams.silent.nextConnection();
    const payload = pattern(32 * 1024 * 1024, 17);
    let flushed = false;
    server.write(payload, () => flushed = true);
    const first = await socket.read();
    assert.ok(first !== null);
    // Nobody reads: once 64 KiB are queued the socket is paused, the kernel
    // buffers fill up and the server cannot flush its write.
    await delay(100);
    assert.equal(flushed, false, "the client kept reading into memory");
    server.end();
    const rest = await deadline(readAll(socket), 5000, "reading to EOF");
    const all = new Uint8Array(first.length + rest.length);
    all.set(first, 0);
    all.set(rest, first.length);
    assert.ok(sameBytes(all, payload), "bytes were lost, repeated or reordered");
    socket.close();
  });

  test("a FIN is noticed while a read is pending after the socket was paused", async () => {
    const socket = await connect(upstreams.silent);
    const server = await upstreams.silent.nextConnection();
    const payload = pattern(512 * 1024, 19);
    await new Promise<void>((resolve) => server.write(payload, () => resolve()));
    await delay(50); // the queue passes 64 KiB: paused
    let received = 0;
    while (received < payload.length) {
      const chunk = await deadline(socket.read(), 2000, "read of queued bytes");
      assert.ok(chunk !== null);
      received += chunk.length;
    }
    assert.equal(received, payload.length);
    // The queue is empty now; this read is pending and must see the FIN.
    const pending = socket.read();
    await delay(20);
    server.end();
    assert.equal(await deadline(pending, 2000, "read at EOF"), null);
    socket.close();
  });

  test("a reset keeps Bun's error code, and later reads and writes reject", async () => {
    const socket = await connect(upstreams.silent);
    const server = await upstreams.silent.nextConnection();
    const pending = socket.read();
    server.resetAndDestroy();
    await assert.rejects(pending, (error: { code?: string }) => error.code === "ECONNRESET");
    await assert.rejects(socket.read(), (error: { code?: string }) => error.code === "ECONNRESET");
    await assert.rejects(socket.write(new Uint8Array([1])));
    await assert.rejects(socket.closeWrite());
    socket.close();
  });

  test("an abort rejects with the signal's reason and leaves no socket open", async () => {
    const upstream = await TestUpstream.start({ mode: "silent" });
    try {
      const reason = new Error("gave up");
      await assert.rejects(
        bunTransport.connect(resolveAddress(upstream.address), {
          signal: AbortSignal.abort(reason),
        }),
        (error) => error === reason,
      );
      assert.equal(upstream.accepted, 0, "an already aborted signal must not connect at all");
      const late = new AbortController();
      const pending = bunTransport.connect(resolveAddress(upstream.address), {
        signal: late.signal,
      });
      late.abort(reason);
      await assert.rejects(pending, (error) => error === reason);
      // Cancelled before the SYN went out, or closed right after: nothing stays open.
      await delay(50);
      assert.ok(upstream.accepted <= 1);
      await upstream.waitForOpen(0);
    } finally {
      await upstream.close();
    }
  });

  test("reads after close() resolve null", async () => {
    const socket = await connect(upstreams.echo);
    await socket.write(new Uint8Array([1, 2, 3]));
    socket.close();
    assert.equal(await socket.read(), null);
    await assert.rejects(socket.closeWrite(), /closed/);
  });

  test("chunks are Uint8Arrays that stay valid after later reads", async () => {
    const socket = await connect(upstreams.silent);
    const server = await upstreams.silent.nextConnection();
    server.write("first");
    const first = await socket.read();
    server.write("second");
    const second = await socket.read();
    assert.ok(first instanceof Uint8Array && second instanceof Uint8Array);
    assert.equal(new TextDecoder().decode(first), "first");
    assert.equal(new TextDecoder().decode(second), "second");
    socket.close();
  });
});

describe("bun transport outside Bun", { skip: runtime === "bun" }, () => {
  test("the module loads, and connect rejects with a clear error", async () => {
    assert.equal(bunTransport.name, "bun");
    await assert.rejects(
      bunTransport.connect(resolveAddress({ hostname: "127.0.0.1", port: 9 }), {}),
      /not Bun/,
    );
  });
});
