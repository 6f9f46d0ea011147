import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { describeTransportContract, NETWORKS } from "./_transport_contract.ts";
import { nodeTransport } from "../src/transports/node.ts";
import type { TransportConnection } from "../src/transports/transport.ts";
import { resolveAddress } from "../src/address.ts";
import { runtime } from "./_runtime.ts";
import { type TestUpstream, useUpstreamPair } from "./_upstream.ts";
import { deadline, delay } from "./_async.ts";

// Over TCP, over Unix sockets and over TLS.
for (const network of NETWORKS) {
  describeTransportContract("node", () => nodeTransport, {
    skip: runtime !== "node",
    fixtureName: "node",
    network,
  });
}

describe("node transport", { skip: runtime !== "node" }, () => {
  const upstreams = useUpstreamPair();
  const connect = (upstream: TestUpstream): Promise<TransportConnection> =>
    nodeTransport.connect(resolveAddress(upstream.address), {});

  test("concurrent settle() callers share one turn", () => {
    assert.equal(nodeTransport.settle(), nodeTransport.settle());
  });

  test("a reader that stops reading pauses the socket, and no byte is lost", async () => {
    const socket = await connect(upstreams.silent);
    const server = await upstreams.silent.nextConnection();
    const size = 32 * 1024 * 1024;
    const payload = new Uint8Array(size);
    for (let i = 0; i < size; i++) payload[i] = (i * 13 + (i >> 16)) & 0xff;
    server.end(payload);
    const chunks = [await socket.read()];
    await delay(100); // nobody reads: the kernel buffers fill up, then the server's
    assert.ok(server.writableLength > 0, "the client kept reading into memory");
    for (let chunk = await socket.read(); chunk !== null; chunk = await socket.read()) {
      chunks.push(chunk);
    }
    let offset = 0;
    for (const chunk of chunks) {
      assert.ok(chunk !== null && chunk.length > 0);
      assert.ok(
        chunk.every((byte, i) => byte === payload[offset + i]),
        `bytes differ after ${offset}`,
      );
      offset += chunk.length;
    }
    assert.equal(offset, size);
    socket.close();
  });

  test("write() waits for 'drain' while the peer does not read; close() rejects it", async () => {
    const socket = await connect(upstreams.silent);
    const server = await upstreams.silent.nextConnection();
    server.pause();
    let state = "pending";
    const big = new Uint8Array(64 * 1024 * 1024);
    const first = socket.write(big).then(() => state = "resolved", () => state = "rejected");
    await delay(50);
    assert.equal(state, "pending", "write() resolved before the bytes were taken");
    server.resume();
    await deadline(first, 5000, "write after drain");
    assert.equal(state, "resolved");
    server.pause();
    const second = socket.write(big);
    await delay(20);
    socket.close();
    await assert.rejects(second);
    server.destroy();
  });

  test("a reset keeps Node's error code, and later reads and writes reject", async () => {
    const socket = await connect(upstreams.silent);
    const server = await upstreams.silent.nextConnection();
    const pending = socket.read();
    server.resetAndDestroy();
    await assert.rejects(pending, (error: { code?: string }) => error.code === "ECONNRESET");
    await assert.rejects(socket.read(), (error: { code?: string }) => error.code === "ECONNRESET");
    await assert.rejects(socket.write(new Uint8Array([1])));
    socket.close();
  });

  test("closeWrite() twice resolves; a write after it rejects", async () => {
    const socket = await connect(upstreams.echo);
    await socket.write(new TextEncoder().encode("ab"));
    await socket.closeWrite();
    await socket.closeWrite();
    await assert.rejects(socket.write(new Uint8Array([1])), /write side/);
    let text = "";
    for (let chunk = await socket.read(); chunk !== null; chunk = await socket.read()) {
      text += new TextDecoder().decode(chunk);
    }
    assert.equal(text, "ab");
    socket.close();
  });

  test("an abort rejects with the signal's reason", async () => {
    const before = upstreams.silent.open.size;
    const reason = new Error("gave up");
    await assert.rejects(
      nodeTransport.connect(resolveAddress(upstreams.silent.address), {
        signal: AbortSignal.abort(reason),
      }),
      (error) => error === reason,
    );
    const late = new AbortController();
    const pending = nodeTransport.connect(resolveAddress(upstreams.silent.address), {
      signal: late.signal,
    });
    late.abort(reason);
    await assert.rejects(pending, (error) => error === reason);
    await upstreams.silent.waitForOpen(before);
  });

  test("reads after close() resolve null", async () => {
    const socket = await connect(upstreams.echo);
    await socket.write(new Uint8Array([1, 2, 3]));
    socket.close();
    assert.equal(await socket.read(), null);
  });
});
