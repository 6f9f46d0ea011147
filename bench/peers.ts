/**
 * Benchmark 7, peers: this library against the pools people use instead,
 * side by side in one process, as HTTP/1.1 clients of the same nginx
 * (started here on a free port, `keepalive_timeout 300s`; one worker; `/`
 * answers a 17-byte static body with a Content-Length). Every client keeps
 * at most 32 keep-alive connections and sends GET `/` in a loop:
 *
 * - upstream-pool (`maxPerHost: 32`): acquire → write the request → read a
 *   complete response → retain;
 * - undici `Pool` (`connections: 32`; `keepAliveTimeout` 60 s, so that it
 *   does not drop its idle connections between its turns);
 * - `node:http` with a keep-alive `Agent` (`maxSockets: 32`);
 * - generic-pool (`max: 32`) over raw `node:net` sockets, whose `validate`
 *   reads a flag the socket's events set and does no check before reuse.
 *
 * Each with 1 caller and with 32 concurrent callers; the ratios are peer ÷
 * upstream-pool requests/s (lower is better for the pool; the goal is at
 * most 1). The new figure for the load a pool exists for: 32 callers
 * through the pool ÷ the same 32 callers each on its own raw connection
 * (the runtime's native socket API; goal at least 0.95).
 *
 * The floors, measured in the same rounds so the report can say where a
 * missed goal's time goes: the same pool with a transport whose `settle()`
 * resolves at once (no check before reuse, as generic-pool; 1 and 32
 * callers), and each of the 32 callers on its own connection through this
 * library's transport without the pool, and (Deno, Bun) through the
 * runtime's `node:net`. They are printed as "floor, ..." figures.
 *
 * Every variant runs for a fixed time per round, in rounds whose order
 * rotates; each requests/s figure is the median over the rounds, and each
 * ratio the median over the rounds of that round's ratio, so that a burst
 * of load from elsewhere that spans a round falls on both sides of it.
 * Many short rounds rather than a few long ones: with one caller, client
 * and nginx wake each other for every request, and on a 2-core machine a
 * round's rate depends on whether the other core was idle (seen here:
 * 10,000 and 50,000 requests/s for the same client in consecutive rounds).
 * nginx's stub_status counts the connections each variant opened (all of
 * them during the warm-up when the client pools). A peer that cannot run
 * on this runtime is left out and the output says why.
 *
 * Run `deno run --allow-all bench/peers.ts`, `bun bench/peers.ts` or
 * `node npm/esm/bench/peers.js`. Options: `--quick`, `--rounds=25`,
 * `--seconds=0.15` (per variant and round), `--callers=32`,
 * `--connections=32`.
 *
 * @module
 */
import process from "node:process";
import { detectTransport, type Transport } from "../mod.ts";
import { startNginx } from "./_nginx.ts";
import type { HttpClient } from "./_peers/client.ts";
import { describeFailure } from "./_peers/client.ts";
import { genericPoolClient } from "./_peers/generic_pool.ts";
import { nodeAgentClient } from "./_peers/node_agent.ts";
import {
  connectRaw,
  connectRawNodeNet,
  connectRawTransport,
  type RawHttpConnection,
} from "./_peers/raw.ts";
import { loadUndici, undiciClient } from "./_peers/undici.ts";
import { upstreamPoolClient } from "./_peers/upstream_pool.ts";
import {
  emitResult,
  type Figure,
  parseOptions,
  printTable,
  type Ratio,
  runMain,
  runtime,
} from "./_report.ts";
import { median } from "./_stats.ts";

interface Peer {
  readonly key: "pool" | "undici" | "agent" | "generic";
  readonly name: string;
  /** Absent if it cannot run here; `unavailable` says why. */
  client?: HttpClient;
  unavailable?: string;
}

/**
 * What a variant that is no peer measures: the pool without its check
 * before reuse, or one raw connection per caller through this library's
 * transport, the runtime's `node:net`, or its native API.
 */
type Floor = "unchecked" | "raw" | "raw-transport" | "raw-node-net";

interface Variant {
  readonly label: string;
  readonly peer: Peer | undefined;
  readonly floor?: Floor;
  readonly callers: number;
  readonly get: (caller: number) => Promise<void>;
  rates: number[];
  /** Connections nginx accepted while this variant ran: warm-up, measured rounds. */
  openedWarming: number;
  opened: number;
  failed?: string;
}

/** `callers` loops of `get` until `seconds` have passed; requests/s. */
async function drive(
  get: (caller: number) => Promise<void>,
  callers: number,
  seconds: number,
): Promise<number> {
  let requests = 0;
  const started = performance.now();
  const deadline = started + seconds * 1000;
  await Promise.all(Array.from({ length: callers }, async (_, caller) => {
    while (performance.now() < deadline) {
      await get(caller);
      requests++;
    }
  }));
  return requests / ((performance.now() - started) / 1000);
}

/** `drive`, bounded: a client that stops answering fails instead of holding the run. */
async function driveBounded(variant: Variant, seconds: number): Promise<number> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const limitMs = seconds * 1000 * 4 + 10_000;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`no progress within ${limitMs / 1000} s`)),
      limitMs,
    );
  });
  try {
    return await Promise.race([drive(variant.get, variant.callers, seconds), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function main(args: string[]): Promise<void> {
  const options = parseOptions(
    args,
    { rounds: 25, seconds: 0.15, callers: 32, connections: 32 },
    { rounds: 2, seconds: 0.2, callers: 32, connections: 32 },
  );
  const { callers, connections } = options;
  const nginx = await startNginx({ keepaliveTimeout: "300s" });
  const { port } = nginx;
  const undici = await loadUndici();
  const peers: Peer[] = [
    { key: "pool", name: "upstream-pool", client: upstreamPoolClient(port, connections) },
    typeof undici === "string" ? { key: "undici", name: "undici Pool", unavailable: undici } : {
      key: "undici",
      name: "undici Pool",
      client: undiciClient(undici, port, connections, { keepAliveTimeout: 60_000 }),
    },
    { key: "agent", name: "node:http Agent", client: nodeAgentClient(port, connections) },
    {
      key: "generic",
      name: "generic-pool + node:net",
      client: genericPoolClient(port, connections),
    },
  ];
  // The floors: the same pool with a settle() that resolves at once (no
  // check before reuse: what the check costs), and each caller on its own
  // connection through this library's transport and through node:net (on
  // Node, node:net is the native API already).
  const transport = await detectTransport();
  const unchecked: Transport = {
    name: `${transport.name} without settle`,
    connect: transport.connect.bind(transport),
    settle: () => Promise.resolve(),
  };
  const uncheckedClient = upstreamPoolClient(port, connections, { transport: unchecked });
  const withNodeNet = runtime().key !== "node";
  const raws: RawHttpConnection[] = [];
  const viaTransport: RawHttpConnection[] = [];
  const viaNodeNet: RawHttpConnection[] = [];
  try {
    for (let i = 0; i < callers; i++) {
      raws.push(await connectRaw(port));
      viaTransport.push(await connectRawTransport(transport, port));
      if (withNodeNet) viaNodeNet.push(await connectRawNodeNet(port));
    }
    const variants: Variant[] = [];
    for (const peer of peers) {
      const client = peer.client;
      if (client === undefined) continue;
      for (const count of [1, callers]) {
        variants.push({
          label: `${peer.name}, ${count} caller${count === 1 ? "" : "s"}`,
          peer,
          callers: count,
          get: () => client.get(),
          rates: [],
          openedWarming: 0,
          opened: 0,
        });
      }
    }
    const floor = (
      kind: Floor,
      label: string,
      count: number,
      get: (caller: number) => Promise<void>,
    ): Variant => ({
      label,
      peer: undefined,
      floor: kind,
      callers: count,
      get,
      rates: [],
      openedWarming: 0,
      opened: 0,
    });
    const raw = floor(
      "raw",
      `own raw connection each, ${callers} callers`,
      callers,
      (caller) => raws[caller]!.get(),
    );
    variants.push(raw);
    for (const count of [1, callers]) {
      variants.push(floor(
        "unchecked",
        `upstream-pool with a no-op settle(), ${count} caller${count === 1 ? "" : "s"}`,
        count,
        () => uncheckedClient.get(),
      ));
    }
    variants.push(floor(
      "raw-transport",
      `own connection each through this library's transport, ${callers} callers`,
      callers,
      (caller) => viaTransport[caller]!.get(),
    ));
    if (withNodeNet) {
      variants.push(floor(
        "raw-node-net",
        `own node:net connection each, ${callers} callers`,
        callers,
        (caller) => viaNodeNet[caller]!.get(),
      ));
    }

    const run = async (variant: Variant, seconds: number, measured: boolean): Promise<void> => {
      if (variant.failed !== undefined) return;
      const before = await nginx.accepted();
      try {
        const rate = await driveBounded(variant, seconds);
        if (measured) variant.rates.push(rate);
      } catch (error) {
        variant.failed = describeFailure(error);
        console.error(`${variant.label}: failed: ${variant.failed}`);
        return;
      }
      const opened = await nginx.accepted() - before;
      if (measured) variant.opened += opened;
      else variant.openedWarming += opened;
    };
    for (const variant of variants) await run(variant, options.seconds / 2, false); // warm-up
    for (let round = 0; round < options.rounds; round++) {
      for (let step = 0; step < variants.length; step++) {
        await run(variants[(round + step) % variants.length]!, options.seconds, true);
      }
    }

    const rate = (variant: Variant | undefined): number =>
      variant === undefined || variant.failed !== undefined ? NaN : median(variant.rates);
    /** The median over the rounds of `a`'s rate ÷ `b`'s in the same round. */
    const paired = (a: Variant | undefined, b: Variant | undefined): number =>
      a === undefined || b === undefined || a.failed !== undefined || b.failed !== undefined
        ? NaN
        : median(a.rates.map((each, round) => each / b.rates[round]!));
    const find = (key: Peer["key"], count: number): Variant | undefined =>
      variants.find((variant) => variant.peer?.key === key && variant.callers === count);
    const findFloor = (kind: Floor, count = callers): Variant | undefined =>
      variants.find((variant) => variant.floor === kind && variant.callers === count);
    /** The median over the rounds of `a`'s time per request minus `b`'s, in µs (one caller each). */
    const pairedCost = (a: Variant | undefined, b: Variant | undefined): number =>
      a === undefined || b === undefined || a.failed !== undefined || b.failed !== undefined
        ? NaN
        : median(a.rates.map((each, round) => 1e6 / each - 1e6 / b.rates[round]!));

    console.log(`upstream-pool peers, ${runtime().name}, ${nginx.version} on 127.0.0.1:${port}`);
    console.log(
      `HTTP/1.1 keep-alive GET, at most ${connections} connections per client; ` +
        `${options.rounds} interleaved rounds of ${options.seconds} s per variant\n`,
    );
    printTable([
      ["variant", "requests/s", "rounds min – max", "opened: warm-up", "measured"],
      ...variants.map((variant) => [
        variant.label,
        variant.failed === undefined ? rate(variant).toFixed(0) : "failed",
        variant.rates.length === 0
          ? "—"
          : `${Math.min(...variant.rates).toFixed(0)} – ${Math.max(...variant.rates).toFixed(0)}`,
        String(variant.openedWarming),
        String(variant.opened),
      ]),
    ]);

    const notes: string[] = [];
    for (const peer of peers) {
      if (peer.unavailable !== undefined) {
        notes.push(`${peer.name} not run: ${peer.unavailable}`);
        console.log(`\n${peer.name} cannot run on ${runtime().name}: ${peer.unavailable}`);
      }
    }
    for (const variant of variants) {
      if (variant.failed !== undefined) notes.push(`${variant.label} failed: ${variant.failed}`);
    }
    if (runtime().key === "bun" && typeof undici !== "string") {
      notes.push(
        "undici is the npm package imported by file path: Bun's built-in `undici` module is a " +
          "stub whose `Pool.request` does nothing",
      );
    }
    const ratios: Ratio[] = [];
    for (const count of [1, callers]) {
      for (const peer of peers.filter((each) => each.key !== "pool")) {
        const value = paired(find(peer.key, count), find("pool", count));
        if (!Number.isFinite(value)) continue;
        const who = `${count} caller${count === 1 ? "" : "s"}`;
        ratios.push({
          key: `peers.${peer.key}.${count === 1 ? "1" : "many"}`,
          label: `${peer.name} ÷ upstream-pool, requests/s, ${who}`,
          column: `${who}: ${peer.name}`,
          value,
          target: 1,
          better: "lower",
          contest: true,
        });
      }
    }
    const pooledVsRaw = paired(find("pool", callers), raw);
    if (Number.isFinite(pooledVsRaw)) {
      ratios.push({
        key: "peers.pool-vs-raw",
        label: `${callers} callers: pool ÷ own raw connection each, requests/s`,
        column: `${callers} callers: pool ÷ own raw connection each`,
        value: pooledVsRaw,
        target: 0.95,
        better: "higher",
      });
    }
    const figures: Figure[] = variants.flatMap((variant) => [
      { label: variant.label, value: rate(variant), unit: "req/s" },
    ]);
    // The floors, as figures (medians of per-round ratios): what the pool
    // would do without its check before reuse, what the check costs, and how
    // much of "pool ÷ own raw connection each" the transport layer accounts for.
    const floors: Figure[] = [];
    for (const count of [1, callers]) {
      const who = `${count} caller${count === 1 ? "" : "s"}`;
      const unchecked = findFloor("unchecked", count);
      floors.push({
        label: `floor, ${who}: generic-pool + node:net ÷ upstream-pool with a no-op settle()`,
        value: paired(find("generic", count), unchecked),
        unit: "×",
      }, {
        label: `floor, ${who}: upstream-pool ÷ upstream-pool with a no-op settle()`,
        value: paired(find("pool", count), unchecked),
        unit: "×",
      });
      // With one caller, what the check adds to each request. (With 32, the
      // settle turn also gathers the callers' hand-outs into one burst of
      // writes, and the pool with the check can be the faster one.)
      if (count === 1) {
        floors.push({
          label: "floor, 1 caller: the check before reuse, per request",
          value: pairedCost(find("pool", 1), unchecked),
          unit: "µs",
        });
      }
    }
    floors.push({
      label:
        `floor, ${callers} callers: upstream-pool with a no-op settle() ÷ own raw connection each`,
      value: paired(findFloor("unchecked"), raw),
      unit: "×",
    }, {
      label:
        `floor, ${callers} callers: own connection each, this library's transport ÷ native API`,
      value: paired(findFloor("raw-transport"), raw),
      unit: "×",
    });
    if (withNodeNet) {
      floors.push({
        label: `floor, ${callers} callers: own connection each, node:net ÷ native API`,
        value: paired(findFloor("raw-node-net"), raw),
        unit: "×",
      });
    }
    for (const each of floors) {
      console.log(`${each.label}: ${each.value.toFixed(each.unit === "×" ? 3 : 2)}${each.unit}`);
    }
    figures.push(...floors);
    for (const peer of peers.filter((each) => each.client !== undefined)) {
      const own = variants.filter((variant) => variant.peer === peer);
      const sum = (count: (variant: Variant) => number): number =>
        own.reduce((total, variant) => total + count(variant), 0);
      figures.push({
        label: `${peer.name}: connections opened, warm-up included`,
        value: sum((variant) => variant.openedWarming + variant.opened),
        unit: "",
      }, {
        label: `${peer.name}: connections opened in the measured rounds`,
        value: sum((variant) => variant.opened),
        unit: "",
      });
    }
    emitResult({
      bench: "peers",
      setup: `HTTP/1.1 keep-alive GET / to nginx (${nginx.version}, one worker, a 17-byte body), ` +
        `at most ${connections} connections per client, 1 and ${callers} callers; ` +
        `${options.rounds} interleaved rounds of ${options.seconds} s per variant; ratios are ` +
        "medians of per-round ratios",
      ratios,
      figures,
      notes,
    });
  } finally {
    for (const raw of [...raws, ...viaTransport, ...viaNodeNet]) raw.close();
    // Bounded: undici's close waits for requests in flight, which a failed variant may have left.
    await Promise.race([
      Promise.all(
        [...peers.map((peer) => peer.client), uncheckedClient].map((client) =>
          client?.close().catch(() => {})
        ),
      ),
      new Promise((resolve) => setTimeout(resolve, 5000)),
    ]);
    await nginx.stop();
  }
}

await runMain("peers", main);
// A peer that left a socket or timer behind must not hold the run open.
process.exit();
