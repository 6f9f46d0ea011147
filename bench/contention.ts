/**
 * Benchmark 6, contention: 256 callers share a pool limited to 8
 * connections (`maxPerHost: 8`), each looping acquire → 64-byte echo round
 * trip → retain for a fixed time. Reported: throughput, and how long
 * callers waited in line for a connection (median, p99, the longest), with
 * the longest wait ÷ the median wait as the fairness figure (first come,
 * first served keeps it low) and the spread of requests completed per
 * caller.
 *
 * Side by side, alternating in rounds: the same pool driven by 8 callers,
 * one per connection, so nobody waits. Its throughput is what 8
 * connections can carry here; 256 callers should get about as much.
 *
 * Run `deno run --allow-all bench/contention.ts`, `bun bench/contention.ts`
 * or `node npm/esm/bench/contention.js`. Options: `--quick`, `--rounds=5`,
 * `--seconds=1` (per variant and round), `--callers=256`, `--limit=8`.
 *
 * @module
 */
import { type Address, ConnectionPool } from "../mod.ts";
import { exchange, listenEcho, PAYLOAD_BYTES, Payloads } from "./_echo.ts";
import { emitResult, parseOptions, printTable, runMain, runtime } from "./_report.ts";
import { maximum, median, minimum, percentile } from "./_stats.ts";

interface Run {
  requests: number;
  seconds: number;
  /** Each acquire's wait, in µs. */
  waits: number[];
  /** Requests completed by each caller. */
  perCaller: number[];
}

/** `callers` loops of acquire → round trip → retain until `seconds` have passed. */
async function drive(
  pool: ConnectionPool,
  address: Address,
  callers: number,
  seconds: number,
): Promise<Run> {
  const payloads = new Payloads();
  const waits: number[] = [];
  const perCaller = new Array<number>(callers).fill(0);
  const started = performance.now();
  const deadline = started + seconds * 1000;
  const caller = async (index: number): Promise<void> => {
    while (performance.now() < deadline) {
      const asked = performance.now();
      const { connection } = await pool.acquire(address);
      waits.push((performance.now() - asked) * 1000);
      await exchange(pool, connection, payloads.next());
      perCaller[index]!++;
    }
  };
  await Promise.all(Array.from({ length: callers }, (_, index) => caller(index)));
  const elapsed = (performance.now() - started) / 1000;
  return { requests: waits.length, seconds: elapsed, waits, perCaller };
}

function merge(runs: Run[]): Run {
  return {
    requests: runs.reduce((sum, run) => sum + run.requests, 0),
    seconds: runs.reduce((sum, run) => sum + run.seconds, 0),
    waits: runs.flatMap((run) => run.waits),
    perCaller: runs.flatMap((run) => run.perCaller),
  };
}

async function main(args: string[]): Promise<void> {
  const options = parseOptions(
    args,
    { rounds: 5, seconds: 1, callers: 256, limit: 8 },
    { rounds: 2, seconds: 0.3, callers: 256, limit: 8 },
  );
  const { callers, limit } = options;
  const upstream = await listenEcho();
  const address = { hostname: "127.0.0.1", port: upstream.port };
  const pool = new ConnectionPool({ maxPerHost: limit });
  try {
    await drive(pool, address, callers, options.seconds / 4); // warm-up, not reported
    const crowded: Run[] = [];
    const alone: Run[] = [];
    for (let round = 0; round < options.rounds; round++) {
      const order = round % 2 === 0 ? [crowded, alone] : [alone, crowded];
      for (const runs of order) {
        runs.push(await drive(pool, address, runs === crowded ? callers : limit, options.seconds));
      }
    }
    const created = pool.stats().totals.created;
    if (created !== limit) throw new Error(`The pool opened ${created} connections, not ${limit}`);

    const many = merge(crowded);
    const few = merge(alone);
    const rate = (run: Run): number => run.requests / run.seconds;
    const waitMedian = median(many.waits);
    const waitMax = maximum(many.waits);
    // Per caller and round: requests completed (fairness across callers).
    const done = Float64Array.from(many.perCaller);
    console.log(`upstream-pool contention, ${runtime().name}`);
    console.log(
      `${callers} callers vs ${limit}, maxPerHost ${limit}; ${PAYLOAD_BYTES}-byte echo round ` +
        `trips to an in-process node:net upstream; ${options.rounds} alternating rounds of ` +
        `${options.seconds} s each\n`,
    );
    printTable([
      ["callers", "requests/s", "wait median µs", "wait p99 µs", "wait max µs", "max ÷ median"],
      ...[[callers, many], [limit, few]].map(([count, run]) => {
        const each = run as Run;
        const middle = median(each.waits);
        const longest = maximum(each.waits);
        return [
          String(count),
          rate(each).toFixed(0),
          middle.toFixed(1),
          percentile(each.waits, 99).toFixed(1),
          longest.toFixed(1),
          `${(longest / middle).toFixed(2)}×`,
        ];
      }),
    ]);
    console.log(
      `\nrequests per caller and round (${callers} callers): min ${minimum(done)}, ` +
        `median ${median(done)}, max ${maximum(done)}`,
    );
    emitResult({
      bench: "contention",
      setup: `${callers} callers looping acquire → ${PAYLOAD_BYTES}-byte echo → retain on a pool ` +
        `with maxPerHost ${limit}, against ${limit} callers on the same pool; ` +
        `${options.rounds} alternating rounds of ${options.seconds} s`,
      ratios: [
        {
          key: "contention.throughput",
          label: `requests/s, ${callers} callers ÷ ${limit} callers`,
          value: rate(many) / rate(few),
          better: "higher",
          contest: true,
        },
        {
          key: "contention.fairness",
          label: `longest wait ÷ median wait, ${callers} callers`,
          value: waitMax / waitMedian,
          better: "lower",
        },
      ],
      figures: [
        { label: `throughput, ${callers} callers`, value: rate(many), unit: "req/s" },
        { label: `throughput, ${limit} callers`, value: rate(few), unit: "req/s" },
        { label: "wait for a connection, median", value: waitMedian, unit: "µs" },
        { label: "wait for a connection, p99", value: percentile(many.waits, 99), unit: "µs" },
        { label: "wait for a connection, longest", value: waitMax, unit: "µs" },
        { label: "requests per caller and round, min", value: minimum(done), unit: "" },
        { label: "requests per caller and round, max", value: maximum(done), unit: "" },
      ],
    });
  } finally {
    await pool.close();
    await upstream.close();
  }
}

await runMain("contention", main);
