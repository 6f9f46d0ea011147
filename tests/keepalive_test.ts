// TCP keepalive (issue 11): the option reaches the transport, the kernel
// sees it on the pooled sockets of the runtime that runs the suite (read
// back with `ss -tnoe`), and a peer that stops answering without FIN or RST
// is found dead, in a network namespace of its own, and never handed out.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { ConnectionPool, type ConnectionPoolOptions } from "../mod.ts";
import { type MemoryPeer, MemoryTransport } from "../src/transports/memory.ts";
import { TestUpstream } from "./_upstream.ts";
import { delay } from "./_async.ts";
import { runtime } from "./_runtime.ts";

const A = { hostname: "a.test", port: 1 };
const B = { hostname: "b.test", port: 2 };

describe("keepAlive reaches the transport", () => {
  async function keepAliveSeen(
    options: ConnectionPoolOptions,
    address: typeof A,
  ): Promise<number | false> {
    const transport = new MemoryTransport();
    const peers: MemoryPeer[] = [];
    for (const upstream of [A, B]) transport.listen(upstream, (peer) => peers.push(peer));
    const pool = new ConnectionPool({ ...options, transport });
    const { connection } = await pool.acquire(address);
    pool.release(connection);
    await pool.close();
    assert.equal(peers.length, 1);
    return peers[0]!.keepAlive;
  }

  test("30 s by default, the pool's value, or false", async () => {
    assert.equal(await keepAliveSeen({}, A), 30_000);
    assert.equal(await keepAliveSeen({ keepAlive: 5_000 }, A), 5_000);
    assert.equal(await keepAliveSeen({ keepAlive: false }, A), false);
    assert.equal(await keepAliveSeen({ keepAlive: Infinity }, A), false);
  });

  test("perAddress overrides the pool's value for its address only", async () => {
    const options = { keepAlive: false, perAddress: [{ address: B, keepAlive: 2_000 }] } as const;
    assert.equal(await keepAliveSeen(options, A), false);
    assert.equal(await keepAliveSeen(options, B), 2_000);
    const off = { perAddress: [{ address: B, keepAlive: false }] } as const;
    assert.equal(await keepAliveSeen(off, A), 30_000);
    assert.equal(await keepAliveSeen(off, B), false);
  });
});

// ---------------------------------------------------------------------------
// What the kernel sees: `ss -tnoe` lists each socket's pending timer, e.g.
// `timer:(keepalive,29sec,0)`: kind, time left, probes sent.

/** One `ss` line for a client socket: its keepalive time left in ms, if any. */
interface SocketTimer {
  line: string;
  /** Whether ss shows any timer: keepalive, or `on` while data is in flight. */
  anyTimer: boolean;
  keepAliveLeftMs: number | undefined;
  /** How coarse ss printed the time: 60 s past 10 min, else 1 s or less. */
  resolutionMs: number;
}

// CI installs iproute2 and nftables (.ci/run) and runs as root, where
// namespaces work: there a missing tool or namespace is a failure, not a skip.
const mustRun = process.env.CI === "true" && process.getuid?.() === 0;

const ssMissing = spawnSync("ss", ["-V"]).error === undefined
  ? undefined
  : "`ss` (iproute2) is not installed, so the kernel's view cannot be read";
if (ssMissing !== undefined) {
  console.warn(`keepalive_test: ${mustRun ? "failing" : "skipping"} the ss tests: ${ssMissing}`);
}

function run(command: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { encoding: "utf8", maxBuffer: 64 << 20 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${command} ${args.join(" ")}: ${stderr || error.message}`));
      else resolve(stdout);
    });
  });
}

// ss prints timers as `119min`, `1min5sec`, `29sec`, `4.500ms` (4.5 s) or `992ms`.
function parseSsTime(text: string): { ms: number; resolutionMs: number } | undefined {
  const match = /^(?:(\d+)min)?(?:(\d+)(sec|\.))?(?:(\d+)ms)?$/.exec(text);
  if (match === null || text === "") return undefined;
  const [, minutes = "0", seconds = "0", , ms = "0"] = match;
  return {
    ms: (Number(minutes) * 60 + Number(seconds)) * 1000 + Number(ms),
    resolutionMs: Number(minutes) > 9 ? 60_000 : 1_000,
  };
}

/**
 * The established TCP sockets to `peerPort` whose local port is in `ports`,
 * by local port. (A local port is unique only per peer: other tests' sockets
 * to other peers may have the same one.)
 */
async function socketTimers(ports: number[], peerPort: number): Promise<Map<number, SocketTimer>> {
  const portOf = (endpoint: string): number =>
    Number(endpoint.slice(endpoint.lastIndexOf(":") + 1));
  const found = new Map<number, SocketTimer>();
  // Filtered by the peer's port: unfiltered, other suites' thousands of
  // sockets once overflowed execFile's output buffer.
  const listing = await run("ss", ["-tnoeH", "state", "established", "dport", "=", `:${peerPort}`]);
  for (const line of listing.split("\n")) {
    const [, , local = "", peer = ""] = line.trim().split(/\s+/);
    const port = portOf(local);
    if (!ports.includes(port) || portOf(peer) !== peerPort) continue;
    const timer = /timer:\(keepalive,([^,]+),\d+\)/.exec(line)?.[1];
    const left = timer === undefined ? undefined : parseSsTime(timer);
    found.set(port, {
      line: line.trim(),
      anyTimer: line.includes("timer:("),
      keepAliveLeftMs: left?.ms,
      resolutionMs: left?.resolutionMs ?? 1_000,
    });
  }
  return found;
}

/** The kernel's keepalive idle time, which Deno's on/off keepalive uses. */
function kernelKeepAliveMs(): number {
  return Number(fs.readFileSync("/proc/sys/net/ipv4/tcp_keepalive_time", "utf8").trim()) * 1000;
}

/**
 * Opens two pooled connections with `options`, leaves them idle, and
 * returns what ss shows for them once it shows the expected state (or after
 * 2 s, whatever it shows then).
 */
async function pooledSocketTimers(
  options: ConnectionPoolOptions,
  tls: boolean,
  expect: (timer: SocketTimer | undefined) => boolean,
): Promise<SocketTimer[]> {
  const upstream = await TestUpstream.start({ mode: "echo", tls });
  const pool = new ConnectionPool(options);
  try {
    const leases = await Promise.all([1, 2].map(() => pool.acquire(upstream.address)));
    for (const { connection } of leases) pool.retain(connection);
    // The server counts a TLS connection once its side of the handshake is done, maybe later.
    for (let i = 0; i < 100 && upstream.open.size < 2; i++) await delay(20);
    const ports = [...upstream.open].map((socket) => socket.remotePort!);
    const upstreamPort = (upstream.address as { port: number }).port;
    let timers = await socketTimers(ports, upstreamPort);
    // A socket with data in flight shows its retransmit timer instead, briefly.
    const until = Date.now() + 2_000;
    while (Date.now() < until && !ports.every((port) => expect(timers.get(port)))) {
      await delay(50);
      timers = await socketTimers(ports, upstreamPort);
    }
    assert.equal(timers.size, 2, `ss did not list the pooled sockets ${ports.join(", ")}`);
    return ports.map((port) => timers.get(port)!);
  } finally {
    await pool.close();
    await upstream.close();
  }
}

/**
 * Whether ss shows a keepalive timer of about `expectedMs` (it counts down
 * from there, in whole seconds); no timer at all when it is `false`.
 */
function hasKeepAlive(timer: SocketTimer | undefined, expectedMs: number | false): boolean {
  if (timer === undefined) return false;
  const left = timer.keepAliveLeftMs;
  if (expectedMs === false) return !timer.anyTimer;
  if (left === undefined) return false;
  return left <= expectedMs && left > expectedMs - timer.resolutionMs - 3_000;
}

describe(
  `TCP keepalive on ${runtime} sockets, as ss shows it`,
  { skip: ssMissing !== undefined && !mustRun ? ssMissing : false },
  () => {
    // Node and Bun set the idle time per socket; Deno only switches keepalive
    // on, and the kernel's idle time applies.
    const idleMs = (ms: number): number => runtime === "deno" ? kernelKeepAliveMs() : ms;

    const cases: Array<[string, ConnectionPoolOptions, boolean, number | false]> = [
      ["the default (30 s)", {}, false, 30_000],
      ["keepAlive: 5000", { keepAlive: 5_000 }, false, 5_000],
      ["keepAlive: 7000 over TLS", { keepAlive: 7_000 }, true, 7_000],
      ["keepAlive: false", { keepAlive: false }, false, false],
      ["keepAlive: false over TLS", { keepAlive: false }, true, false],
    ];
    for (const [name, options, tls, ms] of cases) {
      const expected = ms === false ? false : idleMs(ms);
      const title = expected === false
        ? "no keepalive timer"
        : `a keepalive timer of ${expected / 1000} s`;
      test(`${name}: ${title}`, { timeout: 20_000 }, async () => {
        const timers = await pooledSocketTimers(options, tls, (t) => hasKeepAlive(t, expected));
        console.log(`keepalive_test: ${name}: ${timers.map((timer) => timer.line).join(" | ")}`);
        for (const timer of timers) {
          assert.ok(
            hasKeepAlive(timer, expected),
            `expected ${expected} ms, ss shows: ${timer.line}`,
          );
        }
      });
    }

    test("a Unix-socket upstream: keepAlive is ignored, connections work", async () => {
      const upstream = await TestUpstream.start({ mode: "echo", unix: true });
      const pool = new ConnectionPool({ keepAlive: 5_000 });
      try {
        const { connection } = await pool.acquire(upstream.address);
        await connection.write(new TextEncoder().encode("x"));
        assert.equal(new TextDecoder().decode((await connection.read())!), "x");
        pool.retain(connection);
      } finally {
        await pool.close();
        await upstream.close();
      }
    });
  },
);

// ---------------------------------------------------------------------------
// A silent peer, in a network namespace of its own: tests/_fixtures/silent_peer.ts.

/** Why a namespace with nftables cannot be had here, or undefined if it can. */
function namespaceUnavailable(): string | undefined {
  if (process.platform !== "linux") return "network namespaces need Linux";
  const probe = spawnSync(
    "unshare",
    [
      "-n",
      "sh",
      "-c",
      "ip link set lo up && nft list tables && sysctl -n net.ipv4.tcp_keepalive_time",
    ],
    { encoding: "utf8" },
  );
  if (probe.error !== undefined) return `unshare is not available (${probe.error.message})`;
  if (probe.status !== 0) {
    return `a network namespace with nftables is not permitted here (unshare -n, ip, nft, sysctl: ${
      probe.stderr.trim().slice(0, 200)
    })`;
  }
  return undefined;
}

const noNamespace = namespaceUnavailable();
if (noNamespace !== undefined) {
  console.warn(
    `keepalive_test: ${mustRun ? "failing" : "skipping"} the silent-peer test: ${noNamespace}`,
  );
}

interface SilentPeerReport {
  keepAlive: number;
  ids: Record<"kept" | "bare" | "validated", number[]>;
  detectedMs: number;
  keptClosed: Array<{ id: number; reason: string; afterDropMs: number }>;
  keptIdleAfter: number;
  keptAcquire: { reused: boolean; echo: string | null };
  bareAcquire: { idleBefore: number; reused: boolean; echo: string | null };
  validatedAcquire: { reused: boolean; ms: number; validationFailed: number; echo: string | null };
  gone: { reused: boolean | undefined; code: string | undefined };
  sysctl: { time: string; intvl: string; probes: string };
}

/** Runs the fixture under this runtime inside `unshare -n`, after `setup` (shell). */
function runInNamespace(
  setup: string,
  args: string[],
  timeoutMs: number,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const file = fileURLToPath(
    new URL(`./_fixtures/silent_peer${runtime === "node" ? ".js" : ".ts"}`, import.meta.url),
  );
  const argv = runtime === "deno"
    ? ["run", "--allow-all", file, ...args]
    : runtime === "bun"
    ? ["run", file, ...args]
    : [file, ...args];
  // `exec "$0" "$@"`: the runtime and its arguments, unquoted by nobody.
  const script = `ip link set lo up && ${setup} exec "$0" "$@"`;
  return new Promise((resolve, reject) => {
    const child = spawn("unshare", ["-n", "sh", "-c", script, process.execPath, ...argv], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => stdout += d);
    child.stderr.on("data", (d) => stderr += d);
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

test(
  `a silent peer: idle connections are found dead and never handed out (${runtime})`,
  { skip: noNamespace !== undefined && !mustRun ? noNamespace : false, timeout: 60_000 },
  async () => {
    if (noNamespace !== undefined) assert.fail(`CI runs as root, yet ${noNamespace}`);
    // Node and Bun: idle 1 s, then libuv's and Bun's fixed probes, 1 s apart,
    // 10 of them, so dead after 10-11 s. Deno only switches keepalive on:
    // the namespace's own sysctls make the kernel probe after 1 s idle,
    // 1 s apart, 2 of them, so dead after 2-3 s.
    const deno = runtime === "deno";
    const setup = deno
      ? "sysctl -qw net.ipv4.tcp_keepalive_time=1 net.ipv4.tcp_keepalive_intvl=1 net.ipv4.tcp_keepalive_probes=2 &&"
      : "";
    const [fastest, slowest] = deno ? [1_900, 6_000] : [9_900, 16_000];
    const result = await runInNamespace(setup, ["1000", String(slowest)], 40_000);
    assert.equal(result.code, 0, `the fixture failed: ${result.stderr}${result.stdout}`);
    const report = JSON.parse(result.stdout.trim().split("\n").pop()!) as SilentPeerReport;
    const context = JSON.stringify(report);
    console.log(`keepalive_test: silent peer on ${runtime}: ${context}`);

    // Found dead by keepalive, in the time the probes take.
    const broken = report.keptClosed.filter((event) => event.reason === "broken");
    assert.deepEqual(
      broken.map((event) => event.id).sort(),
      [...report.ids.kept].sort(),
      `both idle connections should close as broken: ${context}`,
    );
    for (const { afterDropMs } of broken) {
      assert.ok(
        afterDropMs >= fastest && afterDropMs <= slowest,
        `detected at ${afterDropMs} ms, expected ${fastest}-${slowest}: ${context}`,
      );
    }
    assert.equal(report.keptIdleAfter, 0);
    // Then an acquire gets a new, working connection, never a dead one.
    assert.deepEqual(report.keptAcquire, { reused: false, echo: "after" }, context);
    // Without keepalive, the dead ones look idle and healthy: one is handed out and never answers.
    assert.deepEqual(report.bareAcquire, { idleBefore: 2, reused: true, echo: null }, context);
    // validate, with a timeout, finds them dead at hand-out: the acquire moves on to a new one.
    assert.equal(report.validatedAcquire.reused, false, context);
    assert.equal(report.validatedAcquire.validationFailed, 2, context);
    assert.equal(report.validatedAcquire.echo, "after", context);
    // A peer gone entirely: a clean connect error, not a dead connection.
    assert.deepEqual(report.gone, { code: "CONNECT_TIMEOUT" }, context);
  },
);
