// The TLS identity in pool keys (issue 9, item 6): exact (different texts,
// different keys; equal texts, equal keys, in every pool and at any time),
// free of key material, and kept nowhere: the memory that certificate and
// key texts take returns once the pool that used them is closed.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { ConnectionPool, resolveAddress } from "../mod.ts";
import { MemoryTransport } from "../src/transports/memory.ts";
import { base64url, sha256 } from "../src/_sha256.ts";
import { runtime } from "./_runtime.ts";

const key = (tls: unknown): string =>
  resolveAddress({ hostname: "db.test", port: 5432, tls } as never).key;

describe("the TLS identity in the key is exact and holds no key material", () => {
  test("equal texts give equal keys, whenever and wherever resolved", () => {
    const first = key({ caCerts: ["CA ONE"], cert: "CERT", key: "KEY" });
    // A different object and different string objects with the same text.
    const again = key({ caCerts: ["CA " + "ONE"], cert: "CE" + "RT", key: "K" + "EY" });
    assert.equal(again, first);
    assert.ok(!/CA ONE|CERT|KEY/.test(first), first);
  });

  test("any change to a text, however small, changes the key", () => {
    const pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    const keys = [
      key({ caCerts: [pem] }),
      key({ caCerts: [pem.trimEnd()] }), // the same certificate, another text
      key({ caCerts: [`comment\n${pem}`] }),
      key({ caCerts: [pem, pem] }),
      key({ caCerts: [pem + pem] }),
      key({ cert: pem, key: "KEY" }),
      key({ cert: pem, key: "KEY\n" }),
      key({ cert: `${pem}K`, key: "EY" }), // the same texts, split elsewhere
      key({ caCerts: [pem], cert: pem, key: "KEY" }),
    ];
    assert.equal(new Set(keys).size, keys.length, keys.join("\n"));
  });

  test("10,000 distinct CAs give 10,000 distinct keys", () => {
    const keys = new Set<string>();
    for (let i = 0; i < 10_000; i++) keys.add(key({ caCerts: [`CA ${i}`] }));
    assert.equal(keys.size, 10_000);
  });

  test("a CA changed in place in the same options object changes the key", () => {
    const tls = { caCerts: ["CA ONE"] };
    const before = key(tls);
    tls.caCerts[0] = "CA TWO";
    assert.notEqual(key(tls), before);
    assert.equal(key(tls), key({ caCerts: ["CA TWO"] }));
  });

  test("perAddress options for a TLS address apply to equal options given anew", async () => {
    const transport = new MemoryTransport();
    const make = () => ({ hostname: "db.test", port: 5432, tls: { caCerts: ["C" + "A"] } });
    transport.listen(make(), () => {});
    const pool = new ConnectionPool({
      transport,
      maxPerHost: 5,
      perAddress: [{ address: make(), maxPerHost: 1, maxWaiting: 0 }],
    });
    const held = await pool.acquire(make());
    const error = await pool.acquire(make()).catch((e) => e);
    assert.equal(error.code, "QUEUE_FULL", `${error}`); // the per-address limit of 1 applied
    pool.release(held.connection);
    await pool.close();
  });

  test("sha256 agrees with node:crypto on 300 seeded inputs", () => {
    let seed = 7;
    const next = (): number => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
    for (let n = 0; n < 300; n++) {
      const length = n < 150 ? n : Math.floor(next() * 5000);
      const bytes = new Uint8Array(length).map(() => Math.floor(next() * 256));
      const expected = createHash("sha256").update(bytes).digest("base64url");
      assert.equal(base64url(sha256(bytes)), expected, `length ${length}, seed ${seed}`);
    }
    assert.equal(
      base64url(sha256("abc")),
      createHash("sha256").update("abc").digest("base64url"),
    );
  });
});

describe("certificate and key texts are not kept", () => {
  // A few seconds, more on a busy machine (Bun's default limit is 5 s).
  const LONG = { timeout: 60_000 };
  test("5,000 distinct CAs and client keys: the heap returns after close()", LONG, async () => {
    const result = await runWithCollector("tls_identity_memory", ["5000"]);
    const { count, idle, textBytes, start, open, closed } = result;
    assert.equal(idle, count);
    const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
    const report = `texts ${mib(textBytes)}, heap at start ${mib(start)}, ` +
      `open and empty ${mib(open)}, closed ${mib(closed)}`;
    // Before: a module-level table kept every text (open: +35 MiB, closed: +57 MiB).
    assert.ok(open - start < textBytes / 2, `grew while the pool was open: ${report}`);
    assert.ok(closed - start < textBytes / 8, `not returned after close(): ${report}`);
  });
});

interface MemoryReport {
  count: number;
  idle: number;
  textBytes: number;
  start: number;
  open: number;
  closed: number;
}

/** Runs a fixture with a garbage collector it can call, and parses its last line. */
function runWithCollector(name: string, args: string[]): Promise<MemoryReport> {
  const ext = runtime === "node" ? ".js" : ".ts";
  const file = fileURLToPath(new URL(`./_fixtures/${name}${ext}`, import.meta.url));
  const argv = runtime === "deno"
    ? ["run", "--allow-all", "--v8-flags=--expose-gc", file, ...args]
    : runtime === "bun"
    ? ["run", file, ...args]
    : ["--expose-gc", file, ...args];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, argv, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk) => stdout += chunk);
    child.stderr.on("data", (chunk) => stderr += chunk);
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      const last = stdout.trim().split("\n").pop() ?? "";
      try {
        resolve(JSON.parse(last));
      } catch {
        reject(new Error(`${name} exited with ${code}: ${stdout}\n${stderr}`));
      }
    });
  });
}
