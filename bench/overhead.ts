/**
 * What the pool adds to a request, measured against the runtime's own
 * transport on the same echo upstream, in the same process.
 *
 * Variants, each timed per operation and interleaved in rounds (the order
 * rotates every round, so machine noise spreads over all of them):
 * 1. raw: one transport connection, write 64 bytes, read the 64 back;
 * 2. pool: acquire, the same round trip, retain (one connection reused);
 * 3. the same through a pool whose transport's `settle()` does nothing,
 *    which isolates what the check before each reuse costs;
 * 4. `settle()` alone, with idle connections open;
 * 5. a new connection per request: acquire, round trip, release.
 *
 * Every reply is checked byte for byte (consecutive requests carry different
 * bytes), and every pool must have opened exactly the connections expected.
 *
 * Run `npm run bench` for all three runtimes, or one of:
 * `deno run --allow-all bench/overhead.ts`, `bun bench/overhead.ts`,
 * `node npm/esm/bench/overhead.js` (after `npm run build:npm`).
 * Options: `--server=inline|process`, `--rounds=7`, `--trips=2000` (round
 * trips per variant and round).
 *
 * The echo upstream (`node:net`, on 127.0.0.1) runs in this process by
 * default. `--server=process` runs it in a child process of the same
 * runtime instead; on the 2-core development machine that made the raw
 * round trip's median swing by a factor of two or more from one round to
 * the next, on every runtime (about 20 to 50 µs on Bun, 30 to 70 on Node,
 * 45 to 105 on Deno), where in-process rounds agree within a few percent.
 *
 * @module
 */
import { spawn } from "node:child_process";
import * as net from "node:net";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { ConnectionPool, detectTransport, resolveAddress, type Transport } from "../mod.ts";

const PAYLOAD_BYTES = 64;
const IDLE_CONNECTIONS = 4;
/** A new connection per request is slow and leaves a TIME_WAIT socket: fewer of them. */
const FRESH_SHARE = 4;
const ECHO_SERVER_FLAG = "--echo-server";

type ServerMode = "process" | "inline";

interface BenchOptions {
  server: ServerMode;
  rounds: number;
  trips: number;
}

/** What a raw connection and a pooled one have in common. */
interface ByteStream {
  read(): Promise<Uint8Array | null>;
  write(chunk: Uint8Array): Promise<void>;
}

interface EchoUpstream {
  readonly port: number;
  close(): Promise<void>;
}

interface Variant {
  readonly label: string;
  /** Operations per round. */
  readonly count: number;
  once(): Promise<void>;
}

interface Result {
  readonly label: string;
  /** Median of every operation of every round, in µs. */
  readonly median: number;
  /** Median of each round, in µs. */
  readonly rounds: number[];
}

function parseOptions(args: string[]): BenchOptions {
  const options: BenchOptions = { server: "inline", rounds: 7, trips: 2000 };
  for (const arg of args) {
    const [name, value = ""] = arg.split("=", 2);
    if (name === "--server") {
      if (value !== "process" && value !== "inline") {
        throw new TypeError(`Invalid --server "${value}": expected "process" or "inline"`);
      }
      options.server = value;
    } else if (name === "--rounds" || name === "--trips") {
      const number = Number(value);
      const min = name === "--rounds" ? 1 : FRESH_SHARE;
      if (!Number.isInteger(number) || number < min) {
        throw new RangeError(`Invalid ${name} "${value}": expected an integer of at least ${min}`);
      }
      options[name === "--rounds" ? "rounds" : "trips"] = number;
    } else {
      throw new TypeError(`Unknown argument "${arg}": use --server, --rounds or --trips`);
    }
  }
  return options;
}

function runtimeName(): string {
  const host = globalThis as { Deno?: { version: { deno: string } }; Bun?: { version: string } };
  if (host.Deno !== undefined) return `Deno ${host.Deno.version.deno}`;
  if (host.Bun !== undefined) return `Bun ${host.Bun.version}`;
  return `Node ${process.version}`;
}

/** Listens on 127.0.0.1 and writes back whatever arrives. */
async function listenEcho(): Promise<EchoUpstream> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    socket.setNoDelay(true);
    sockets.add(socket);
    socket.on("data", (chunk: Uint8Array) => socket.write(chunk));
    socket.on("error", () => {}); // a client that resets is not the server's problem
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** The child's side of `--server=process`: print the port, serve until stdin closes. */
async function serveEcho(): Promise<void> {
  const upstream = await listenEcho();
  process.stdout.write(`${upstream.port}\n`);
  process.stdin.on("end", () => void upstream.close());
  process.stdin.resume();
}

/** Starts this very script as an echo server under the same runtime. */
async function spawnEcho(): Promise<EchoUpstream> {
  const self = fileURLToPath(import.meta.url);
  const args = "Deno" in globalThis
    ? ["run", "--allow-net=127.0.0.1", self, ECHO_SERVER_FLAG]
    : [self, ECHO_SERVER_FLAG];
  const child = spawn(process.execPath, args, { stdio: ["pipe", "pipe", "inherit"] });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const port = await new Promise<number>((resolve, reject) => {
    let output = "";
    const done = (): void => {
      clearTimeout(timer);
      child.off("exit", onExit);
      child.stdout!.off("data", onData);
    };
    const fail = (why: string): void => {
      done();
      child.kill();
      reject(
        new Error(`Cannot start the echo server (${process.execPath} ${args.join(" ")}): ${why}`),
      );
    };
    const onExit = (code: number | null): void => fail(`it exited with ${code}`);
    const onData = (text: string): void => {
      output += text;
      if (!output.includes("\n")) return;
      const port = Number(output.trim());
      if (!Number.isInteger(port) || port <= 0) {
        return fail(`it printed ${JSON.stringify(output)} instead of a port`);
      }
      done();
      resolve(port);
    };
    const timer = setTimeout(() => fail("no port within 10 s"), 10_000);
    child.once("error", (error) => fail(error.message));
    child.once("exit", onExit);
    child.stdout!.setEncoding("utf8");
    child.stdout!.on("data", onData);
  });
  return {
    port,
    async close() {
      child.stdin!.end(); // the server closes when its stdin does
      const timer = setTimeout(() => child.kill(), 2000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Payloads that differ from one request to the next in every byte, so a stale reply shows. */
function makePayloads(): Uint8Array[] {
  return Array.from({ length: 256 }, (_, n) => {
    const payload = new Uint8Array(PAYLOAD_BYTES);
    for (let i = 0; i < PAYLOAD_BYTES; i++) payload[i] = (n + i * 3) & 0xff;
    return payload;
  });
}

/** Writes `payload` and reads until exactly its bytes came back. */
async function roundTrip(connection: ByteStream, payload: Uint8Array): Promise<void> {
  await connection.write(payload);
  let received = 0;
  while (received < payload.length) {
    const chunk = await connection.read();
    if (chunk === null) {
      throw new Error(`The upstream closed after ${received} of ${payload.length} reply bytes`);
    }
    if (received + chunk.length > payload.length) {
      throw new Error(`The reply has ${received + chunk.length} bytes, not ${payload.length}`);
    }
    for (let i = 0; i < chunk.length; i++) {
      if (chunk[i] !== payload[received + i]) {
        throw new Error(
          `Reply byte ${received + i} is ${chunk[i]}, expected ${payload[received + i]}`,
        );
      }
    }
    received += chunk.length;
  }
}

function median(values: ArrayLike<number>): number {
  const sorted = Float64Array.from(values).sort();
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** Runs every variant `rounds` times, in a rotating order, timing each operation. */
async function measure(variants: Variant[], rounds: number): Promise<Result[]> {
  const samples = variants.map((variant) => new Float64Array(variant.count * rounds));
  const roundMedians = variants.map((): number[] => []);
  for (let round = 0; round < rounds; round++) {
    for (let step = 0; step < variants.length; step++) {
      const index = (round + step) % variants.length;
      const variant = variants[index]!;
      const times = samples[index]!.subarray(round * variant.count, (round + 1) * variant.count);
      for (let i = 0; i < variant.count; i++) {
        const started = performance.now();
        await variant.once();
        times[i] = (performance.now() - started) * 1000;
      }
      roundMedians[index]!.push(median(times));
    }
  }
  return variants.map((variant, index) => ({
    label: variant.label,
    median: median(samples[index]!),
    rounds: roundMedians[index]!,
  }));
}

function expectTotals(pool: ConnectionPool, what: string, created: number, reused: number): void {
  const totals = pool.stats().totals;
  if (totals.created !== created || totals.reused !== reused || totals.failed !== 0) {
    throw new Error(
      `The ${what} pool opened ${totals.created} and reused ${totals.reused} connections ` +
        `(${totals.failed} failed); expected ${created} and ${reused}`,
    );
  }
}

async function bench(options: BenchOptions): Promise<void> {
  const transport = await detectTransport();
  const upstream = options.server === "process" ? await spawnEcho() : await listenEcho();
  const address = resolveAddress({ hostname: "127.0.0.1", port: upstream.port });
  const payloads = makePayloads();
  let sent = 0;
  const next = (): Uint8Array => payloads[sent++ & 0xff]!;

  const raw = await transport.connect(address, {});
  const pool = new ConnectionPool();
  const unsettled: Transport = {
    name: `${transport.name} without settle`,
    connect: transport.connect.bind(transport),
    settle: () => Promise.resolve(),
  };
  const unsettledPool = new ConnectionPool({ transport: unsettled });
  const idlePool = new ConnectionPool();
  const freshPool = new ConnectionPool();
  try {
    for (let i = 0; i < IDLE_CONNECTIONS; i++) await idlePool.add(address);
    // A failed round trip releases its connection: a borrowed one would
    // outlive close() and keep the process alive.
    const pooled = (from: ConnectionPool) => async (): Promise<void> => {
      const { connection } = await from.acquire(address);
      try {
        await roundTrip(connection, next());
      } catch (error) {
        from.release(connection);
        throw error;
      }
      if (!from.retain(connection)) throw new Error("The pool closed a clean connection");
    };
    const fresh = async (): Promise<void> => {
      const { created, connection } = await freshPool.acquire(address);
      try {
        if (!created) throw new Error("A connection was reused in the new-connection variant");
        await roundTrip(connection, next());
      } finally {
        freshPool.release(connection);
      }
    };
    const variants = (count: number): Variant[] => [
      { label: "raw transport: write, read", count, once: () => roundTrip(raw, next()) },
      { label: "pool: acquire, write, read, retain", count, once: pooled(pool) },
      { label: "pool with a no-op settle()", count, once: pooled(unsettledPool) },
      {
        label: `settle() alone, ${IDLE_CONNECTIONS} idle connections`,
        count,
        once: () => transport.settle(),
      },
      {
        label: "new connection per request",
        count: Math.ceil(count / FRESH_SHARE),
        once: fresh,
      },
    ];

    const warmup = Math.ceil(options.trips / 4);
    await measure(variants(warmup), 1); // JIT and connection set-up, not reported
    const results = await measure(variants(options.trips), options.rounds);

    const roundTrips = warmup + options.trips * options.rounds;
    expectTotals(pool, "reusing", 1, roundTrips - 1);
    expectTotals(unsettledPool, "no-op settle()", 1, roundTrips - 1);
    const freshTrips = Math.ceil(warmup / FRESH_SHARE) +
      Math.ceil(options.trips / FRESH_SHARE) * options.rounds;
    expectTotals(freshPool, "new-connection", freshTrips, 0);
    if (idlePool.stats().idle !== IDLE_CONNECTIONS) {
      throw new Error("An idle connection was dropped while settle() was measured");
    }
    report(options, transport, results);
  } finally {
    raw.close();
    await Promise.all([pool, unsettledPool, idlePool, freshPool].map((each) => each.close()));
    await upstream.close();
  }
}

function report(options: BenchOptions, transport: Transport, results: Result[]): void {
  const [raw, pooled, unsettled, settleAlone, fresh] = results as [
    Result,
    Result,
    Result,
    Result,
    Result,
  ];
  const server = options.server === "inline"
    ? "in this process (the default: steadier than --server=process)"
    : "in a child process of the same runtime (--server=process)";
  console.log(`upstream-pool overhead, ${runtimeName()}, transport "${transport.name}"`);
  console.log(`echo upstream: node:net on 127.0.0.1, ${server}`);
  console.log(
    `${PAYLOAD_BYTES}-byte round trips; ${options.rounds} rounds × ${options.trips} per variant ` +
      `(new connection: × ${Math.ceil(options.trips / FRESH_SHARE)}); medians in µs\n`,
  );
  const rows = [
    ["variant", "median µs", "vs raw", "round medians µs"],
    ...results.map((result) => [
      result.label,
      result.median.toFixed(2),
      `${(result.median / raw.median).toFixed(3)}×`,
      `${Math.min(...result.rounds).toFixed(2)} – ${Math.max(...result.rounds).toFixed(2)}`,
    ]),
  ];
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  for (const row of rows) {
    console.log(
      row.map((cell, column) =>
        column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!)
      ).join("   ").trimEnd(),
    );
  }
  const overhead = pooled.median - raw.median;
  const settleCost = pooled.median - unsettled.median;
  const percent = (value: number): string => `${(value / raw.median * 100).toFixed(1)}%`;
  console.log(
    `\npool overhead per round trip: ${overhead.toFixed(2)} µs = ${percent(overhead)} of raw ` +
      `(target ≤5%: ${overhead <= raw.median * 0.05 ? "met" : "missed"})`,
  );
  console.log(
    `settle() cost per reuse: ${settleCost.toFixed(2)} µs = ${percent(settleCost)} of a raw ` +
      `round trip`,
  );
  console.log(
    `  (pool minus pool with a no-op settle(); settle() alone: ${
      settleAlone.median.toFixed(2)
    } µs)`,
  );
  console.log(
    `a new connection per request costs ${(fresh.median / pooled.median).toFixed(1)}× ` +
      `a pooled round trip`,
  );
}

if (process.argv.includes(ECHO_SERVER_FLAG)) {
  await serveEcho();
} else {
  let options: BenchOptions | undefined;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (error) {
    console.error(`bench/overhead: ${(error as Error).message}`);
    process.exitCode = 2;
  }
  if (options !== undefined) {
    try {
      await bench(options);
    } catch (error) {
      console.error(error);
      process.exitCode = 1;
    }
  }
}
