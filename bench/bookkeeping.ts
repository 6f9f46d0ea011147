/**
 * Benchmark 3, bookkeeping: the pool's own cost with no I/O at all.
 * `acquire` + `retain` cycles on the in-memory transport, against
 * generic-pool and tarn.js doing `acquire` + `release` of a trivial resource,
 * in the same process (both are dev dependencies, pinned in the lock file).
 * Target: at least 3× generic-pool's cycles per second.
 *
 * Each pool holds at most 10 resources and is driven by one sequential
 * caller, so every cycle reuses an idle resource. Batches of cycles are
 * timed, interleaved in rounds; the figure is the median batch. Our cycle
 * includes the `settle()` turn every reuse takes (the in-memory transport's
 * is a synchronous delivery plus one resolved promise). generic-pool's
 * `release` returns a promise that nothing needs to wait for: it is not
 * awaited, as tarn's `release` is synchronous and ours returns at once.
 *
 * Run `deno run --allow-all bench/bookkeeping.ts`, `bun bench/bookkeeping.ts`
 * or `node npm/esm/bench/bookkeeping.js`. Options: `--quick`, `--rounds=9`,
 * `--batches=30`, `--cycles=2000` (cycles per batch).
 *
 * @module
 */
import genericPool from "generic-pool";
import { Pool as TarnPool } from "tarn";
import { ConnectionPool } from "../mod.ts";
import { MemoryTransport } from "../src/transports/memory.ts";
import { emitResult, parseOptions, printTable, runMain, runtime } from "./_report.ts";
import { interleave, spread, type Timing } from "./_stats.ts";

const MAX_RESOURCES = 10;

async function main(args: string[]): Promise<void> {
  const options = parseOptions(
    args,
    { rounds: 9, batches: 30, cycles: 2000 },
    { rounds: 3, batches: 10, cycles: 1000 },
  );
  const transport = new MemoryTransport();
  const address = { hostname: "upstream.test", port: 1 };
  transport.listen(address, () => {}); // an upstream that never writes
  const ours = new ConnectionPool({ transport, maxPerHost: MAX_RESOURCES });
  const generic = genericPool.createPool(
    { create: () => Promise.resolve({}), destroy: () => Promise.resolve() },
    { max: MAX_RESOURCES, min: 0 },
  );
  const tarn = new TarnPool({
    create: (): object => ({}),
    destroy: (): void => {},
    min: 0,
    max: MAX_RESOURCES,
  });
  const { cycles } = options;
  try {
    const variants = (count: number) => [
      {
        label: "upstream-pool: acquire + retain (memory transport)",
        count,
        once: async (): Promise<void> => {
          for (let i = 0; i < cycles; i++) {
            const { connection } = await ours.acquire(address);
            ours.retain(connection);
          }
        },
      },
      {
        label: "generic-pool: acquire + release",
        count,
        once: async (): Promise<void> => {
          for (let i = 0; i < cycles; i++) {
            const resource = await generic.acquire();
            void generic.release(resource);
          }
        },
      },
      {
        label: "tarn.js: acquire + release",
        count,
        once: async (): Promise<void> => {
          for (let i = 0; i < cycles; i++) {
            const resource = await tarn.acquire().promise;
            tarn.release(resource);
          }
        },
      },
    ];
    await interleave(variants(Math.ceil(options.batches / 2)), 1); // warm-up, not reported
    const [upstream, generics, tarns] = await interleave(
      variants(options.batches),
      options.rounds,
    ) as [Timing, Timing, Timing];
    const created = ours.stats().totals.created;
    if (created !== 1) throw new Error(`upstream-pool opened ${created} connections, not 1`);

    const perSecond = (timing: Timing): number => cycles / timing.median * 1e6;
    console.log(`upstream-pool bookkeeping, ${runtime().name}`);
    console.log(
      `${options.rounds} interleaved rounds × ${options.batches} batches of ${cycles} ` +
        `sequential cycles; pools of ${MAX_RESOURCES}\n`,
    );
    printTable([
      ["pool", "cycles/s", "ns/cycle", "÷ generic-pool", "round medians µs/batch"],
      ...[upstream, generics, tarns].map((timing) => [
        timing.label,
        perSecond(timing).toFixed(0),
        (timing.median / cycles * 1000).toFixed(0),
        `${(perSecond(timing) / perSecond(generics)).toFixed(2)}×`,
        spread(timing, 0),
      ]),
    ]);
    emitResult({
      bench: "bookkeeping",
      setup: `sequential acquire + retain/release cycles, no I/O, pools of ${MAX_RESOURCES}; ` +
        `${options.rounds} interleaved rounds × ${options.batches} batches of ${cycles} cycles`,
      ratios: [
        {
          key: "bookkeeping.generic-pool",
          label: "upstream-pool ÷ generic-pool, cycles/s",
          value: perSecond(upstream) / perSecond(generics),
          target: 3,
          better: "higher",
          contest: true,
        },
        {
          key: "bookkeeping.tarn",
          label: "upstream-pool ÷ tarn.js, cycles/s",
          value: perSecond(upstream) / perSecond(tarns),
          better: "higher",
          contest: true,
        },
      ],
      figures: [
        { label: "upstream-pool acquire + retain", value: perSecond(upstream), unit: "cycles/s" },
        { label: "generic-pool acquire + release", value: perSecond(generics), unit: "cycles/s" },
        { label: "tarn.js acquire + release", value: perSecond(tarns), unit: "cycles/s" },
      ],
    });
  } finally {
    await ours.close();
    await generic.drain();
    await generic.clear();
    await tarn.destroy();
  }
}

await runMain("bookkeeping", main);
