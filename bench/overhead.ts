/**
 * Benchmark 1, overhead: what the pool adds to a request, against the same
 * echo round trips on one raw connection driven with the runtime's fastest
 * native API (Deno `conn.read`/`conn.write`, Bun socket callbacks, Node
 * socket events), in the same process. Target: the pool costs at most 5%
 * over raw.
 *
 * Variants, each timed per operation and interleaved in rounds (the order
 * rotates every round, so machine noise spreads over all of them):
 * 1. raw native: write 64 bytes, read the 64 back;
 * 2. raw transport: the same on one connection of this library's transport
 *    for the runtime, without the pool (what the transport layer costs);
 * 3. pool: acquire, the same round trip, retain (one connection reused);
 * 4. the same through a pool whose transport's `settle()` does nothing,
 *    which isolates what the check before each reuse costs;
 * 5. `settle()` alone, with idle connections open;
 * 6. on Deno only: the same round trip as 1 through Deno's own `node:net`
 *    (native since Deno 2.8), the other API the Deno transport could use,
 *    and the one it must not be slower than.
 *
 * Every reply is checked byte for byte (consecutive requests carry different
 * bytes), and every pool must have opened exactly the connections expected.
 * The echo upstream (`node:net`, on 127.0.0.1) runs in this process: a
 * child-process upstream made the raw round trip swing by a factor of two
 * from one round to the next on the 2-core development machine.
 *
 * Run `npm run bench` for all benchmarks on all three runtimes, or one of
 * `deno run --allow-all bench/overhead.ts`, `bun bench/overhead.ts`,
 * `node npm/esm/bench/overhead.js` (after `npm run build:npm`).
 * Options: `--quick`, `--rounds=9`, `--trips=3000` (round trips per variant
 * and round).
 *
 * @module
 */
import { ConnectionPool, detectTransport, resolveAddress, type Transport } from "../mod.ts";
import { exchange, listenEcho, PAYLOAD_BYTES, Payloads, roundTrip } from "./_echo.ts";
import { connectNative, connectNodeNet, type NativeClient } from "./_native.ts";
import {
  emitResult,
  parseOptions,
  printTable,
  runMain,
  runtime,
  type RuntimeInfo,
} from "./_report.ts";
import { interleave, spread, type Timing } from "./_stats.ts";

const IDLE_CONNECTIONS = 4;

async function main(args: string[]): Promise<void> {
  const options = parseOptions(args, { rounds: 9, trips: 3000 }, { rounds: 3, trips: 400 });
  const transport = await detectTransport();
  const upstream = await listenEcho();
  const address = resolveAddress({ hostname: "127.0.0.1", port: upstream.port });
  const payloads = new Payloads();
  const next = (): Uint8Array => payloads.next();

  const native = await connectNative(upstream.port);
  const info = runtime();
  const nodeNet: NativeClient | undefined = info.key === "deno"
    ? await connectNodeNet(upstream.port)
    : undefined;
  const raw = await transport.connect(address, {});
  const pool = new ConnectionPool();
  const unsettled: Transport = {
    name: `${transport.name} without settle`,
    connect: transport.connect.bind(transport),
    settle: () => Promise.resolve(),
  };
  const unsettledPool = new ConnectionPool({ transport: unsettled });
  const idlePool = new ConnectionPool();
  try {
    for (let i = 0; i < IDLE_CONNECTIONS; i++) await idlePool.add(address);
    const pooled = (from: ConnectionPool) => async (): Promise<void> => {
      const { connection } = await from.acquire(address);
      await exchange(from, connection, next());
    };
    const variants = (count: number) => [
      { label: "raw native API: write, read", count, once: () => native.roundTrip(next()) },
      { label: "raw transport: write, read", count, once: () => roundTrip(raw, next()) },
      { label: "pool: acquire, write, read, retain", count, once: pooled(pool) },
      { label: "pool with a no-op settle()", count, once: pooled(unsettledPool) },
      {
        label: `settle() alone, ${IDLE_CONNECTIONS} idle connections`,
        count,
        once: () => transport.settle(),
      },
      ...(nodeNet === undefined ? [] : [{
        label: "raw node:net (Deno's own): write, read",
        count,
        once: () => nodeNet.roundTrip(next()),
      }]),
    ];

    const warmup = Math.ceil(options.trips / 4);
    await interleave(variants(warmup), 1); // JIT and connection set-up, not reported
    const results = await interleave(variants(options.trips), options.rounds);

    const roundTrips = warmup + options.trips * options.rounds;
    expectTotals(pool, "reusing", roundTrips);
    expectTotals(unsettledPool, "no-op settle()", roundTrips);
    if (idlePool.stats().idle !== IDLE_CONNECTIONS) {
      throw new Error("An idle connection was dropped while settle() was measured");
    }
    report(options, info, transport, results);
  } finally {
    native.close();
    nodeNet?.close();
    raw.close();
    await Promise.all([pool, unsettledPool, idlePool].map((each) => each.close()));
    await upstream.close();
  }
}

function expectTotals(pool: ConnectionPool, what: string, roundTrips: number): void {
  const totals = pool.stats().totals;
  if (totals.created !== 1 || totals.reused !== roundTrips - 1 || totals.failed !== 0) {
    throw new Error(
      `The ${what} pool opened ${totals.created} and reused ${totals.reused} connections ` +
        `(${totals.failed} failed); expected 1 and ${roundTrips - 1}`,
    );
  }
}

function report(
  options: { rounds: number; trips: number },
  info: RuntimeInfo,
  transport: Transport,
  results: Timing[],
): void {
  const [native, raw, pooled, unsettled, settleAlone, nodeNet] = results as [
    Timing,
    Timing,
    Timing,
    Timing,
    Timing,
    Timing | undefined,
  ];
  console.log(`upstream-pool overhead, ${info.name}, transport "${transport.name}"`);
  console.log("echo upstream: node:net on 127.0.0.1, in this process");
  console.log(
    `${PAYLOAD_BYTES}-byte round trips; ${options.rounds} rounds × ${options.trips} per variant; ` +
      "medians in µs\n",
  );
  printTable([
    ["variant", "median µs", "p99 µs", "÷ native", "round medians µs"],
    ...results.map((result) => [
      result.label,
      result.median.toFixed(2),
      result.p99.toFixed(1),
      `${(result.median / native.median).toFixed(3)}×`,
      spread(result),
    ]),
  ]);
  const overhead = pooled.median - native.median;
  const settleCost = pooled.median - unsettled.median;
  const percent = (value: number): string => `${(value / native.median * 100).toFixed(1)}%`;
  console.log(
    `\npool overhead per round trip: ${overhead.toFixed(2)} µs = ${percent(overhead)} of raw; ` +
      `of which settle(): ${settleCost.toFixed(2)} µs = ${percent(settleCost)}; ` +
      `our transport alone: ${(raw.median - native.median).toFixed(2)} µs = ` +
      percent(raw.median - native.median),
  );
  if (nodeNet !== undefined) {
    console.log(
      `our transport ÷ Deno's node:net round trip: ${(raw.median / nodeNet.median).toFixed(3)}×`,
    );
  }
  emitResult({
    bench: "overhead",
    setup: `${PAYLOAD_BYTES}-byte echo round trips on one connection to an in-process node:net ` +
      `upstream; ${options.rounds} interleaved rounds × ${options.trips} per variant`,
    ratios: [
      {
        key: "overhead",
        label: "pool ÷ raw native round trip",
        value: pooled.median / native.median,
        target: 1.05,
        better: "lower",
      },
      ...(nodeNet === undefined ? [] : [{
        key: "overhead.node_net",
        label: "this library's transport ÷ the runtime's node:net, round trip",
        value: raw.median / nodeNet.median,
        target: 1,
        better: "lower" as const,
      }]),
    ],
    figures: [
      { label: "raw native API round trip", value: native.median, unit: "µs" },
      { label: "raw, this library's transport", value: raw.median, unit: "µs" },
      { label: "pool: acquire, round trip, retain", value: pooled.median, unit: "µs" },
      { label: "pool with a no-op settle()", value: unsettled.median, unit: "µs" },
      { label: "settle() alone", value: settleAlone.median, unit: "µs" },
      ...(nodeNet === undefined
        ? []
        : [{ label: "raw node:net round trip (Deno's own)", value: nodeNet.median, unit: "µs" }]),
      { label: "pool − raw native", value: overhead, unit: "µs" },
      { label: "of which settle()", value: settleCost, unit: "µs" },
    ],
  });
}

await runMain("overhead", main);
