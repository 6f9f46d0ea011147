/**
 * Benchmark 4, scale: a pool holding 1,000 addresses × 10 idle connections
 * (10,000 sockets).
 *
 * - Time per acquire (an acquire and its retain, no I/O) cycling over the
 *   1,000 addresses, against a pool of 10 connections to one address, in
 *   the same process, interleaved in rounds. Target: within 1.5×.
 * - Memory per idle connection: growth of the process's resident set,
 *   after a garbage collection, divided by the connections, next to the
 *   same number of sockets opened with the runtime's native API and held
 *   open without a pool.
 *
 * Each of the two measurements runs in a fresh process of the same runtime
 * (`--part=pool`, `--part=raw`), so one's freed memory does not flatter the
 * other. The upstreams, one echo server per address plus one, run in a
 * Node child process: 10,000 client and 10,000 server sockets do not fit
 * in one process's open-file limit here (20,000).
 *
 * Run `deno run --allow-all bench/scale.ts`, `bun bench/scale.ts` or
 * `node npm/esm/bench/scale.js`; Deno and Bun need `node` on PATH for the
 * upstreams. Options: `--quick`, `--addresses=1000`, `--per-address=10`,
 * `--rounds=9`, `--acquires=3000` (per variant and round).
 *
 * @module
 */
import process from "node:process";
import { fileURLToPath } from "node:url";
import { ConnectionPool, resolveAddress, type ResolvedAddress } from "../mod.ts";
import { connectNative, connectNodeNet, type NativeClient } from "./_native.ts";
import { emitResult, type Options, parseOptions, printTable, runMain, runtime } from "./_report.ts";
import { collectGarbage, runPart, startUpstreams } from "./_spawn.ts";
import { interleave, type Timing } from "./_stats.ts";

const PART_PREFIX = "@@scale-part ";
/** How a part learns the upstreams' ports (a thousand of them make a long command line). */
const PORTS_VARIABLE = "UPSTREAM_POOL_BENCH_PORTS";
/** Connects in flight at once while filling: enough to be quick, few enough for any backlog. */
const CONNECTS_IN_FLIGHT = 64;

type ScaleOptions = Options<{
  addresses: number;
  perAddress: number;
  rounds: number;
  acquires: number;
}>;

/** What a part reports to the parent. */
interface PartResult {
  readonly connections: number;
  readonly rssGrowth: number;
  readonly heapGrowth: number;
  readonly collected: boolean;
  /** Median and p99 µs of acquire + retain, pool part only. */
  readonly many?: { median: number; p99: number };
  readonly one?: { median: number; p99: number };
}

/** Runs `task` for every index below `count`, at most `CONNECTS_IN_FLIGHT` at a time. */
async function forEachLimited(
  count: number,
  task: (index: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) await task(next++);
  };
  await Promise.all(Array.from({ length: Math.min(CONNECTS_IN_FLIGHT, count) }, worker));
}

function memory(): { rss: number; heap: number } {
  const usage = process.memoryUsage();
  return { rss: usage.rss, heap: usage.heapUsed };
}

/** Settles the heap as far as the runtime allows, then reads the memory use. */
async function settledMemory(): Promise<{ rss: number; heap: number; collected: boolean }> {
  let collected = false;
  for (let i = 0; i < 3; i++) {
    collected = collectGarbage();
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return { ...memory(), collected };
}

/** A fixed pseudo-random order of `count` indices, the same on every run. */
function shuffled(count: number): Uint32Array {
  const order = Uint32Array.from({ length: count }, (_, i) => i);
  let seed = 0x2545f491;
  for (let i = count - 1; i > 0; i--) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    const j = seed % (i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order;
}

async function poolPart(ports: number[], options: ScaleOptions): Promise<PartResult> {
  const addresses = ports.slice(0, options.addresses).map((port) =>
    resolveAddress({ hostname: "127.0.0.1", port })
  );
  const single = resolveAddress({ hostname: "127.0.0.1", port: ports[options.addresses]! });
  const total = addresses.length * options.perAddress;
  // The small pool exists before the baseline, so the growth is the big pool's alone.
  const one = new ConnectionPool();
  const many = new ConnectionPool();
  try {
    for (let i = 0; i < options.perAddress; i++) await one.add(single);
    const before = await settledMemory();
    await forEachLimited(total, (index) => many.add(addresses[index % addresses.length]!));
    const after = await settledMemory();

    const order = shuffled(addresses.length);
    let turn = 0;
    const cycle = (pool: ConnectionPool, address: () => ResolvedAddress) => async () => {
      const { connection } = await pool.acquire(address());
      if (!pool.retain(connection)) throw new Error("The pool closed a clean connection");
    };
    const variants = (count: number) => [
      {
        label: `${addresses.length} addresses × ${options.perAddress}`,
        count,
        once: cycle(many, () => addresses[order[turn++ % order.length]!]!),
      },
      { label: `1 address × ${options.perAddress}`, count, once: cycle(one, () => single) },
    ];
    await interleave(variants(Math.ceil(options.acquires / 4)), 1); // warm-up, not reported
    const [manyTiming, oneTiming] = await interleave(
      variants(options.acquires),
      options.rounds,
    ) as [Timing, Timing];
    const stats = many.stats();
    if (stats.idle !== total || stats.totals.created !== total) {
      throw new Error(
        `The big pool has ${stats.idle} idle of ${stats.totals.created} created connections; ` +
          `expected ${total} of ${total} (broken: ${stats.totals.broken})`,
      );
    }
    return {
      connections: total,
      rssGrowth: after.rss - before.rss,
      heapGrowth: after.heap - before.heap,
      collected: after.collected,
      many: { median: manyTiming.median, p99: manyTiming.p99 },
      one: { median: oneTiming.median, p99: oneTiming.p99 },
    };
  } finally {
    await Promise.all([one.close(), many.close()]);
  }
}

/**
 * Opens the sockets without a pool; `reading` keeps a read pending on each,
 * as EOF detection needs. `connect` is the runtime's native API, or
 * node:net (under Deno, whose node:net sockets always read).
 */
async function rawPart(
  ports: number[],
  options: ScaleOptions,
  reading: boolean,
  connect: (port: number) => Promise<NativeClient> = connectNative,
): Promise<PartResult> {
  const total = options.addresses * options.perAddress;
  const clients: NativeClient[] = [];
  try {
    // One connection opened and closed first, so the baseline has the socket code loaded.
    (await connect(ports[options.addresses]!)).close();
    const before = await settledMemory();
    await forEachLimited(total, async (index) => {
      const client = await connect(ports[index % options.addresses]!);
      clients.push(client);
      if (reading) client.waitForEnd().catch(() => {}); // closing interrupts it
    });
    const after = await settledMemory();
    return {
      connections: total,
      rssGrowth: after.rss - before.rss,
      heapGrowth: after.heap - before.heap,
      collected: after.collected,
    };
  } finally {
    for (const client of clients) client.close();
  }
}

async function main(args: string[]): Promise<void> {
  const part = args.find((arg) => arg.startsWith("--part="))?.slice("--part=".length);
  const options = parseOptions(
    args.filter((arg) => !arg.startsWith("--part=")),
    { addresses: 1000, perAddress: 10, rounds: 9, acquires: 3000 },
    { addresses: 200, perAddress: 10, rounds: 3, acquires: 500 },
  );
  if (part !== undefined) {
    const ports = (process.env[PORTS_VARIABLE] ?? "").split(",").map(Number);
    const result = part === "pool"
      ? await poolPart(ports, options)
      : part === "raw-node-net"
      ? await rawPart(ports, options, false, connectNodeNet)
      : await rawPart(ports, options, part === "raw-reading");
    console.log(PART_PREFIX + JSON.stringify(result));
    return;
  }

  const info = runtime();
  const total = options.addresses * options.perAddress;
  console.log(`upstream-pool scale, ${info.name}`);
  console.log(
    `${options.addresses} addresses × ${options.perAddress} idle connections = ${total}; ` +
      `upstreams: ${options.addresses + 1} echo ports in a Node child process\n`,
  );
  const upstreams = await startUpstreams(options.addresses + 1);
  let pooled: PartResult;
  let raw: PartResult;
  let rawReading: PartResult | undefined;
  let rawNodeNet: PartResult | undefined;
  try {
    const self = fileURLToPath(import.meta.url);
    const env = { [PORTS_VARIABLE]: upstreams.ports.join(",") };
    const run = async (name: string): Promise<PartResult> =>
      JSON.parse(await runPart(self, [`--part=${name}`, ...args], PART_PREFIX, 120_000, env));
    pooled = await run("pool");
    raw = await run("raw");
    // Bun's and Node's sockets read all the time (callbacks, events); Deno's only when asked.
    // Deno's own node:net sockets (what the Deno transport uses for TCP) read all the time too.
    if (info.key === "deno") {
      rawReading = await run("raw-reading");
      rawNodeNet = await run("raw-node-net");
    }
  } finally {
    await upstreams.close();
  }
  const many = pooled.many!;
  const one = pooled.one!;
  const perConnection = (result: PartResult): number => result.rssGrowth / result.connections;
  const heapPerConnection = (result: PartResult): number => result.heapGrowth / result.connections;
  printTable([
    ["acquire + retain", "median µs", "p99 µs"],
    [
      `${options.addresses} addresses × ${options.perAddress}`,
      many.median.toFixed(2),
      many.p99.toFixed(1),
    ],
    [`1 address × ${options.perAddress}`, one.median.toFixed(2), one.p99.toFixed(1)],
  ]);
  console.log("");
  printTable([
    [`${total} idle connections`, "RSS growth MiB", "B per connection", "JS heap B per conn."],
    ...[
      ["pool", pooled],
      ["raw native sockets, no pool", raw],
      ...(rawReading === undefined ? [] : [["the same, each with a read pending", rawReading]]),
      ...(rawNodeNet === undefined ? [] : [["node:net sockets (Deno's own), reading", rawNodeNet]]),
    ].map(([label, result]) => {
      const each = result as PartResult;
      return [
        label as string,
        (each.rssGrowth / 2 ** 20).toFixed(1),
        perConnection(each).toFixed(0),
        heapPerConnection(each).toFixed(0),
      ];
    }),
  ]);
  const notes = pooled.collected && raw.collected
    ? []
    : ["this runtime could not be made to collect garbage before reading memory"];
  emitResult({
    bench: "scale",
    setup: `${options.addresses} addresses × ${options.perAddress} idle connections (${total} ` +
      `sockets) to echo upstreams on ${options.addresses + 1} ports of a Node child process; ` +
      `acquire + retain: ${options.rounds} interleaved rounds × ${options.acquires}; memory ` +
      `after a GC, each side in a fresh process`,
    ratios: [
      {
        key: "scale.acquire",
        label: `acquire + retain, ${options.addresses} addresses ÷ 1 address`,
        value: many.median / one.median,
        target: 1.5,
        better: "lower",
      },
      {
        key: "scale.memory",
        label: "RSS per idle connection, pool ÷ raw native socket",
        value: perConnection(pooled) / perConnection(raw),
        better: "lower",
      },
    ],
    figures: [
      { label: `acquire + retain, ${options.addresses} addresses`, value: many.median, unit: "µs" },
      { label: "acquire + retain, 1 address", value: one.median, unit: "µs" },
      { label: "RSS per idle connection, pool", value: perConnection(pooled), unit: "B" },
      { label: "RSS per raw native socket", value: perConnection(raw), unit: "B" },
      ...(rawReading === undefined ? [] : [{
        label: "RSS per raw native socket with a read pending",
        value: perConnection(rawReading),
        unit: "B",
      }]),
      ...(rawNodeNet === undefined ? [] : [{
        label: "RSS per raw node:net socket (Deno's own), reading",
        value: perConnection(rawNodeNet),
        unit: "B",
      }]),
      { label: "JS heap per idle connection, pool", value: heapPerConnection(pooled), unit: "B" },
      { label: "JS heap per raw native socket", value: heapPerConnection(raw), unit: "B" },
    ],
    notes,
  });
}

await runMain("scale", main);
