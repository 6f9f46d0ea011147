import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type * as net from "node:net";
import { describeTransportContract, NETWORKS } from "./_transport_contract.ts";
import { denoTransport } from "../src/transports/deno.ts";
import type { TransportConnection } from "../src/transports/transport.ts";
import { resolveAddress } from "../src/address.ts";
import { runtime } from "./_runtime.ts";
import { pattern } from "./_bytes.ts";
import { TestUpstream } from "./_upstream.ts";
import { deadline, delay } from "./_async.ts";
import { spawnSync } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

// Deno's own test runner can check for leaked resources and ops; node:test
// cannot. Looked up at run time so that tsc compiles this file without Deno's types.
// Registered first so that it runs first, before any test has opened the pair.
interface DenoTestRunner {
  test(definition: {
    name: string;
    sanitizeResources: boolean;
    sanitizeOps: boolean;
    fn: () => Promise<void>;
  }): void;
}
const denoRunner = (globalThis as unknown as { Deno?: DenoTestRunner }).Deno;
denoRunner?.test({
  name: "deno transport: nothing is left open once every connection is closed",
  sanitizeResources: true,
  sanitizeOps: true,
  async fn() {
    const upstream = await TestUpstream.start({ mode: "echo" });
    const socket = await denoTransport.connect(resolveAddress(upstream.address), {});
    await denoTransport.settle(); // opens the loopback pair behind settle()
    await socket.write(new TextEncoder().encode("ping"));
    assert.ok(await socket.read());
    socket.close();
    await upstream.close();
  },
});

// Over TCP, over Unix sockets and over TLS.
for (const network of NETWORKS) {
  describeTransportContract("deno", () => denoTransport, {
    skip: runtime !== "deno",
    fixtureName: "deno",
    network,
  });
}

function allEnded(sockets: net.Socket[]): Promise<void> {
  return Promise.all(sockets.map((s) => new Promise<void>((resolve) => s.end(resolve))))
    .then(() => {});
}

describe("deno transport", { skip: runtime !== "deno" }, () => {
  let silent: TestUpstream;
  before(async () => {
    silent = await TestUpstream.start({ mode: "silent" });
  });
  after(async () => {
    await silent.close();
  });
  const connect = (): Promise<TransportConnection> =>
    denoTransport.connect(resolveAddress(silent.address), {});

  test("a DNS failure keeps Deno's error and gains code ENOTFOUND", async () => {
    const address = resolveAddress({ hostname: "no-such-host.invalid", port: 80 });
    await assert.rejects(denoTransport.connect(address, {}), (error: Error & { code?: string }) => {
      assert.ok(error instanceof Error);
      assert.match(error.message, /failed to lookup address information/);
      assert.equal(error.code, "ENOTFOUND");
      return true;
    });
  });

  test("write() finishes a write that the kernel takes in parts", async () => {
    const socket = await connect();
    const server = await silent.nextConnection();
    server.pause();
    const payload = pattern(32 * 1024 * 1024, 11);
    let written = false;
    const writing = socket.write(payload).then(() => written = true);
    await delay(50);
    assert.equal(written, false, "32 MiB cannot fit in the socket buffers of a paused peer");
    const chunks: Buffer[] = [];
    let received = 0;
    const all = new Promise<void>((resolve) => {
      server.on("data", (chunk: Buffer) => {
        chunks.push(chunk);
        received += chunk.length;
        if (received >= payload.length) resolve();
      });
    });
    server.resume();
    await deadline(Promise.all([writing, all]), 10_000, "the 32 MiB write");
    const joined = new Uint8Array(received);
    let offset = 0;
    for (const chunk of chunks) {
      joined.set(chunk, offset);
      offset += chunk.length;
    }
    assert.equal(received, payload.length);
    assert.ok(joined.every((byte, i) => byte === payload[i]), "bytes differ");
    socket.close();
    server.destroy();
  });

  test("a small chunk is a copy, not a view that pins the read buffer", async () => {
    const socket = await connect();
    const server = await silent.nextConnection();
    server.write("hi");
    const chunk = await socket.read();
    assert.ok(chunk !== null);
    assert.equal(chunk.buffer.byteLength, chunk.length);
    socket.close();
    server.destroy();
  });

  test("write() and closeWrite() reject after close()", async () => {
    const socket = await connect();
    const server = await silent.nextConnection();
    socket.close();
    await assert.rejects(socket.write(new Uint8Array(0)), /closed/);
    await assert.rejects(socket.closeWrite(), /closed/);
    assert.equal(await socket.read(), null);
    socket.ref();
    socket.unref();
    server.destroy();
  });

  // Half the cost of a TCP ping; the contract tests above prove it misses nothing.
  test("on Linux with --allow-net, settle() pings over an abstract Unix socket", {
    skip: process.platform !== "linux",
  }, async () => {
    const socket = await connect();
    const server = await silent.nextConnection();
    await denoTransport.settle();
    const sockets = await readFile("/proc/self/net/unix", "utf8");
    assert.match(sockets, /@upstream-pool-[0-9a-f-]{36}\n/);
    socket.close();
    server.destroy();
  });

  test("concurrent settle() callers share one turn", async () => {
    const socket = await connect();
    const server = await silent.nextConnection();
    const first = denoTransport.settle();
    assert.equal(denoTransport.settle(), first);
    await first;
    socket.close();
    server.destroy();
  });

  // Deno completes at most 128 I/O operations per turn of its event loop;
  // a single ping would overtake the EOFs still waiting behind that budget.
  // (On Deno 2.9.6 one ping left none of 600 EOFs behind, but 85-341 of 2,000.)
  test("settle() delivers the EOFs of 2000 idle connections ended at once", async () => {
    const count = 2000;
    const sockets: TransportConnection[] = [];
    const servers: net.Socket[] = [];
    for (let i = 0; i < count; i += 100) {
      sockets.push(...await Promise.all(Array.from({ length: 100 }, connect)));
      for (let j = 0; j < 100; j++) servers.push(await silent.nextConnection());
    }
    let delivered = 0;
    for (const socket of sockets) {
      socket.unref(); // idle, as the pool leaves it
      socket.read().then(async () => {
        await null; // a pool adds a few steps before it notices
        delivered++;
      }, () => delivered++);
    }
    await delay(5);
    assert.equal(delivered, 0);
    await allEnded(servers);
    await denoTransport.settle();
    assert.equal(count - delivered, 0, `settle() left ${count - delivered} EOFs undelivered`);
    for (const socket of sockets) socket.close();
  });
});

// A Deno.listen server's write and closeWrite on a Unix socket reach the
// client's receive buffer before they return (a node:net server's only
// later, and loopback TCP may hand a segment to the kernel's softirq
// thread): bytes or a FIN sent just before settle() then reach epoll
// together with settle()'s own ping, the hardest case for it. What arrived
// is noticed a few promise steps later, as a pool would; settle() must wait
// for those too.
interface DenoServerApi {
  listen(options: { transport: "unix"; path: string }): {
    accept(): Promise<DenoPeer>;
    close(): void;
  };
}

interface DenoPeer {
  write(p: Uint8Array): Promise<number>;
  closeWrite(): Promise<void>;
  close(): void;
}

async function countSameTurnMisses(what: "bytes" | "a FIN", rounds: number): Promise<number> {
  const directory = await mkdtemp(path.join(os.tmpdir(), "upstream-pool-"));
  const socketPath = path.join(directory, "upstream.sock");
  const listener = (globalThis as unknown as { Deno: DenoServerApi }).Deno
    .listen({ transport: "unix", path: socketPath });
  const address = resolveAddress({ path: socketPath });
  const accept = () => Promise.all([denoTransport.connect(address, {}), listener.accept()]);
  // Open throughout, as in a pool: the last connection to close takes
  // settle()'s socket pair with it, and each round would open a new one.
  const [keeper, keeperPeer] = await accept();
  let missed = 0;
  try {
    for (let i = 0; i < rounds; i++) {
      const [socket, peer] = await accept();
      socket.unref();
      let delivered = false;
      socket.read().then(async () => {
        for (let step = 0; step < 5; step++) await null;
        delivered = true;
      }, () => delivered = true);
      await delay(0);
      // Right after another settle(): its ping was just read, and reading
      // the next one must still wait for epoll.
      await denoTransport.settle();
      // Written at once (Deno tries the syscall first), or, on a socket not
      // known writable yet, once it is: then settle() is only asked after.
      if (what === "bytes") await peer.write(new Uint8Array([1]));
      else await peer.closeWrite();
      await denoTransport.settle();
      if (!delivered) missed++;
      socket.close();
      peer.close();
    }
  } finally {
    keeper.close();
    keeperPeer.close();
    listener.close();
    await rm(directory, { recursive: true, force: true });
  }
  return missed;
}

describe("deno transport: settle() and what arrives with its ping", {
  skip: runtime !== "deno",
}, () => {
  const rounds = 300;
  for (const what of ["bytes", "a FIN"] as const) {
    test(`${what} sent just before settle() are seen (${rounds} times)`, async () => {
      const missed = await countSameTurnMisses(what, rounds);
      assert.equal(missed, 0, `settle() missed ${what} ${missed} times out of ${rounds}`);
    });
  }
});

describe("deno transport off Deno", { skip: runtime === "deno" }, () => {
  test("connect() rejects with a TypeError naming the missing runtime", async () => {
    const address = resolveAddress({ hostname: "127.0.0.1", port: 9 });
    await assert.rejects(denoTransport.connect(address, {}), TypeError);
  });
});

describe("deno transport with restricted net permissions", { skip: runtime !== "deno" }, () => {
  // Each permission set leaves settle() one way to wait for the reactor.
  const cases = [
    { allowNet: (port: number) => `127.0.0.1:${port}`, pingAllowed: false, via: "timer turns" },
    { allowNet: () => "127.0.0.1", pingAllowed: true, via: "the TCP ping" },
  ];
  for (const { allowNet, pingAllowed, via } of cases) {
    test(`settle() falls back to ${via} and still sees bytes and FIN already received`, async () => {
      // A free port, then a child allowed to use only what the case grants.
      const probe = await TestUpstream.start();
      const port = probe.port;
      await probe.close();
      const file = fileURLToPath(new URL("./_fixtures/deno_restricted_settle.ts", import.meta.url));
      const child = spawnSync(
        process.execPath,
        ["run", `--allow-net=${allowNet(port)}`, "--no-prompt", file, String(port)],
        { encoding: "utf8", timeout: 20_000 },
      );
      assert.equal(child.status, 0, child.stderr);
      const report = JSON.parse(child.stdout.trim());
      assert.equal(report.pingAllowed, pingAllowed, "the child's permissions are not the case's");
      assert.equal(report.unixPingAllowed, false, "the child could ping over Unix sockets");
      assert.equal(report.missed, 0, `settle() missed ${report.missed} of ${report.rounds}`);
    });
  }
});
