/**
 * Benchmark 5, detection: how fast an idle connection that the upstream
 * closed leaves the pool, and whether any acquire ever gets a dead one.
 *
 * 1. Latency: the upstream (in this process, so both ends share one clock)
 *    closes one idle connection at a time; the time runs from its close
 *    call to the pool closing that connection on its side, which the pool
 *    does the moment its idle read sees the EOF. A wrapper around the
 *    runtime's transport timestamps that call, so nothing polls. Side by
 *    side, interleaved: the same close seen by a raw native socket's own
 *    EOF notification (Deno's pending `conn.read`, Bun's `end` callback,
 *    Node's `'end'` event), what the runtime itself needs to tell; and a
 *    read pending on a connection of this library's transport, without
 *    the pool, which shows where any difference comes from.
 * 2. Churn: callers loop acquire → round trip → retain while the upstream
 *    closes connections: right after some replies (a share of them), and a
 *    random open one every millisecond. This upstream runs in a Node child
 *    process and prints `closed ID` after each close; each connection first
 *    sends its id, so every failed round trip is traced to its connection.
 *    A dead handoff is an acquire that got a connection whose close line
 *    had been read before that acquire began: by then the FIN was already
 *    in this process's socket buffer, and the pool's check before reuse
 *    should have seen it (target: zero). A connection that failed with no
 *    close line read before the acquire began is a race that no pool can
 *    win (closed during the borrow, or too recently to tell): counted apart.
 *
 * Run `deno run --allow-all bench/detection.ts`, `bun bench/detection.ts`
 * or `node npm/esm/bench/detection.js`. Options: `--quick`,
 * `--samples=300`, `--acquires=40000`, `--callers=16`.
 *
 * @module
 */
import {
  ConnectionPool,
  detectTransport,
  resolveAddress,
  type Transport,
  type TransportConnection,
} from "../mod.ts";
import { checkReply, listenEcho } from "./_echo.ts";
import { connectNative } from "./_native.ts";
import { emitResult, parseOptions, printTable, runMain, runtime } from "./_report.ts";
import { startUpstreams } from "./_spawn.ts";
import { maximum, median, percentile } from "./_stats.ts";

/** Share of replies after which the churn upstream closes the connection. */
const CLOSE_AFTER_REPLY = 0.02;
/** Every this many ms, the churn upstream closes one open connection at random. */
const RANDOM_CLOSE_MS = 1;
const REQUEST_BYTES = 16;

interface WatchOptions {
  /** Each connection first writes its id (4 bytes), so the upstream knows which one it closes. */
  hello: boolean;
  onConnect?: (connection: WatchedConnection) => void;
  /** Called when the pool closes the connection, before it is closed. */
  onClose?: (connection: WatchedConnection) => void;
}

/** A transport whose connections have ids and report when the pool closes them. */
function watchedTransport(inner: Transport, options: WatchOptions): Transport {
  let ids = 0;
  return {
    name: `${inner.name}, watched`,
    async connect(address, connectOptions) {
      const connection = await inner.connect(address, connectOptions);
      const id = ++ids;
      if (options.hello) await connection.write(new Uint8Array(new Uint32Array([id]).buffer));
      const watched = new WatchedConnection(connection, id, options.onClose ?? (() => {}));
      options.onConnect?.(watched);
      return watched;
    },
    settle: () => inner.settle(),
  };
}

class WatchedConnection implements TransportConnection {
  readonly id: number;
  /** The sequence number of the last request written, from its first four bytes. */
  lastRequest = -1;
  readonly #inner: TransportConnection;
  readonly #onClose: (connection: WatchedConnection) => void;
  #closed = false;

  constructor(
    inner: TransportConnection,
    id: number,
    onClose: (connection: WatchedConnection) => void,
  ) {
    this.#inner = inner;
    this.id = id;
    this.#onClose = onClose;
  }

  read(): Promise<Uint8Array | null> {
    return this.#inner.read();
  }

  write(chunk: Uint8Array): Promise<void> {
    if (chunk.length >= 4) {
      this.lastRequest = new DataView(chunk.buffer, chunk.byteOffset, 4).getUint32(0, true);
    }
    return this.#inner.write(chunk);
  }

  closeWrite(): Promise<void> {
    return this.#inner.closeWrite();
  }

  close(): void {
    if (!this.#closed) {
      this.#closed = true;
      this.#onClose(this);
    }
    this.#inner.close();
  }

  ref(): void {
    this.#inner.ref();
  }

  unref(): void {
    this.#inner.unref();
  }
}

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves with the time of the next call of the returned `notify`. */
class NextEvent {
  #waiting: ((at: number) => void) | null = null;

  next(): Promise<number> {
    return new Promise((resolve) => this.#waiting = resolve);
  }

  notify = (at: number): void => {
    const waiting = this.#waiting;
    this.#waiting = null;
    waiting?.(at);
  };
}

/** Where the close latency is measured: the pool, the transport alone, a raw native socket. */
type Side = "pool" | "transport" | "raw";
const SIDES: Side[] = ["pool", "transport", "raw"];

async function closeLatency(
  transport: Transport,
  samples: number,
): Promise<Record<Side, Float64Array>> {
  const upstreams = {
    pool: await listenEcho(),
    transport: await listenEcho(),
    raw: await listenEcho(),
  };
  const seen = { pool: new NextEvent(), transport: new NextEvent(), raw: new NextEvent() };
  const pool = new ConnectionPool({
    transport: watchedTransport(transport, {
      hello: false,
      onClose: () => seen.pool.notify(performance.now()),
    }),
  });
  const closers: Array<() => void> = [];
  try {
    const address = resolveAddress({ hostname: "127.0.0.1", port: upstreams.pool.port });
    const direct = resolveAddress({ hostname: "127.0.0.1", port: upstreams.transport.port });
    for (let i = 0; i < samples; i++) {
      await pool.add(address);
      const connection = await transport.connect(direct, {});
      connection.read().then(() => seen.transport.notify(performance.now()), () => {});
      closers.push(() => connection.close());
      const client = await connectNative(upstreams.raw.port);
      client.waitForEnd().then(seen.raw.notify, () => {});
      closers.push(() => client.close());
    }
    const results = {
      pool: new Float64Array(samples),
      transport: new Float64Array(samples),
      raw: new Float64Array(samples),
    };
    const serverSockets = {
      pool: [...upstreams.pool.sockets],
      transport: [...upstreams.transport.sockets],
      raw: [...upstreams.raw.sockets],
    };
    for (let i = 0; i < samples; i++) {
      // The order rotates; the event loop goes idle before each close.
      for (let step = 0; step < SIDES.length; step++) {
        const side = SIDES[(i + step) % SIDES.length]!;
        await pause(1 + Math.random());
        const next = seen[side].next();
        const closed = performance.now();
        serverSockets[side][i]!.destroy();
        results[side][i] = (await withTimeout(next, 2000, side) - closed) * 1000;
      }
    }
    const { idle, totals } = pool.stats();
    if (idle !== 0 || totals.broken !== samples) {
      throw new Error(`The pool has ${idle} idle left and counted ${totals.broken} broken`);
    }
    return results;
  } finally {
    for (const close of closers) close();
    await pool.close();
    await Promise.all(Object.values(upstreams).map((upstream) => upstream.close()));
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no close seen within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

interface ChurnCounts {
  acquires: number;
  reused: number;
  closes: number;
  deadHandoffs: number;
  races: number;
  failedNew: number;
  broken: number;
  dropped: number;
}

async function churn(
  transport: Transport,
  acquires: number,
  callers: number,
): Promise<ChurnCounts> {
  // The upstream runs in a Node process of its own and prints `closed ID`
  // after each close: once that line is read here, the FIN has been sent.
  const closedAt = new Map<number, number>();
  const upstream = await startUpstreams(
    1,
    [`--churn=${CLOSE_AFTER_REPLY},${RANDOM_CLOSE_MS}`],
    (line) => {
      const match = /^closed (\d+)$/.exec(line);
      if (match !== null) closedAt.set(Number(match[1]), performance.now());
    },
  );
  const connections: WatchedConnection[] = [];
  const watched = watchedTransport(transport, {
    hello: true,
    onConnect: (connection) => connections.push(connection),
  });
  const pool = new ConnectionPool({ transport: watched });
  const address = resolveAddress({ hostname: "127.0.0.1", port: upstream.ports[0]! });
  const counts: ChurnCounts = {
    acquires: 0,
    reused: 0,
    closes: 0,
    deadHandoffs: 0,
    races: 0,
    failedNew: 0,
    broken: 0,
    dropped: 0,
  };
  let requests = 0;
  const deadline = performance.now() + 30_000;
  const caller = async (): Promise<void> => {
    const request = new Uint8Array(REQUEST_BYTES);
    const view = new DataView(request.buffer);
    while (counts.acquires < acquires && performance.now() < deadline) {
      const number = requests++;
      view.setUint32(0, number, true);
      for (let i = 4; i < REQUEST_BYTES; i++) request[i] = (number + i) & 0xff;
      const began = performance.now();
      const { created, connection } = await pool.acquire(address);
      counts.acquires++;
      if (!created) counts.reused++;
      try {
        await connection.write(request);
        for (let received = 0; received < request.length;) {
          const chunk = await connection.read();
          if (chunk === null) throw new Error("EOF");
          received = checkReply(request, received, chunk);
        }
      } catch {
        pool.release(connection);
        if (created) {
          counts.failedNew++;
          continue;
        }
        // Which connection carried this request, and when did the upstream close it?
        const carrier = connections.find((each) => each.lastRequest === number);
        const closed = carrier === undefined ? undefined : closedAt.get(carrier.id);
        // No close line yet: it closed too recently to prove that it preceded the acquire.
        if (carrier !== undefined && (closed === undefined || closed >= began)) counts.races++;
        else counts.deadHandoffs++;
        continue;
      }
      pool.retain(connection);
    }
  };
  try {
    await Promise.all(Array.from({ length: callers }, caller));
  } finally {
    counts.closes = closedAt.size;
    counts.broken = pool.stats().totals.broken;
    counts.dropped = pool.stats().totals.dropped;
    await pool.close();
    await upstream.close();
  }
  return counts;
}

async function main(args: string[]): Promise<void> {
  const options = parseOptions(
    args,
    { samples: 300, acquires: 40_000, callers: 16 },
    { samples: 60, acquires: 4000, callers: 16 },
  );
  const transport = await detectTransport();
  console.log(`upstream-pool detection, ${runtime().name}, transport "${transport.name}"`);
  console.log(
    "upstreams: node:net on 127.0.0.1; latency: in this process; churn: a Node child process\n",
  );
  const latency = await closeLatency(transport, options.samples);
  const row = (label: string, values: Float64Array): string[] => [
    label,
    median(values).toFixed(1),
    percentile(values, 99).toFixed(1),
    maximum(values).toFixed(1),
  ];
  printTable([
    [
      `upstream closes an idle connection (${options.samples} times)`,
      "median µs",
      "p99 µs",
      "max µs",
    ],
    row("until the pool has removed it", latency.pool),
    row("until this library's transport reads EOF (no pool)", latency.transport),
    row("until a raw native socket reports EOF", latency.raw),
  ]);

  const counts = await churn(transport, options.acquires, options.callers);
  console.log("");
  printTable([
    [`churn: ${options.callers} callers`, "count"],
    ["acquires", String(counts.acquires)],
    ["  of which reused an idle connection", String(counts.reused)],
    ["connections the upstream closed", String(counts.closes)],
    ["  seen idle and removed by the pool", String(counts.broken)],
    ["  found at retain and closed", String(counts.dropped)],
    ["dead handoffs (closed before the acquire began)", String(counts.deadHandoffs)],
    ["closed during the borrow (after the acquire began)", String(counts.races)],
    ["new connections that failed", String(counts.failedNew)],
  ]);
  const deadShare = counts.deadHandoffs / counts.acquires;
  console.log(`\nshare of acquires that got a dead connection: ${(deadShare * 100).toFixed(3)}%`);
  emitResult({
    bench: "detection",
    setup: `latency: ${options.samples} closes of idle connections by an in-process node:net ` +
      `upstream, pool, transport and raw native socket interleaved; churn: ${options.callers} callers, ` +
      "upstream in a Node child process, " +
      `${counts.acquires} acquires of ${REQUEST_BYTES}-byte echo requests, the upstream closing ` +
      `after ${CLOSE_AFTER_REPLY * 100}% of replies and one random connection every ` +
      `${RANDOM_CLOSE_MS} ms`,
    ratios: [
      {
        key: "detection.latency",
        label: "close seen: pool removed it ÷ raw socket's EOF, median",
        value: median(latency.pool) / median(latency.raw),
        better: "lower",
      },
      {
        key: "detection.dead-handoffs",
        label: "churn: acquires that got a connection closed before they began",
        value: counts.deadHandoffs,
        target: 0,
        better: "lower",
        unit: "acquires",
      },
    ],
    figures: [
      { label: "close → removed from the pool, median", value: median(latency.pool), unit: "µs" },
      {
        label: "close → removed from the pool, p99",
        value: percentile(latency.pool, 99),
        unit: "µs",
      },
      {
        label: "close → transport reads EOF (no pool), median",
        value: median(latency.transport),
        unit: "µs",
      },
      { label: "close → raw socket EOF, median", value: median(latency.raw), unit: "µs" },
      { label: "close → raw socket EOF, p99", value: percentile(latency.raw, 99), unit: "µs" },
      { label: "churn: acquires", value: counts.acquires, unit: "" },
      { label: "churn: connections closed by the upstream", value: counts.closes, unit: "" },
      { label: "churn: closed during the borrow (races)", value: counts.races, unit: "" },
      {
        label: "churn: share of acquires that got a dead connection",
        value: deadShare * 100,
        unit: "%",
      },
    ],
    notes: counts.deadHandoffs === 0 ? [] : [
      `${counts.deadHandoffs} acquires (${(deadShare * 100).toFixed(3)}%) got a connection the ` +
      "upstream had closed before the acquire began: target zero missed",
    ],
  });
}

await runMain("detection", main);
