/**
 * Benchmark 2, reuse: request/response through the pool against opening a
 * connection per request (connect, round trip, close, through this
 * library's transport for the runtime), sequentially and with 32
 * concurrent callers, interleaved in rounds.
 *
 * One request is a 64-byte echo round trip, checked byte for byte. The
 * sequential variants are timed per request; the concurrent ones per batch
 * (32 callers, each running its share of requests back to back), reported
 * as requests per second. The echo upstream runs in this process.
 *
 * Every comparison is one call of {@linkcode compareReuse} with an address
 * and a way to start its upstream: plain TCP, then TLS (a `node:tls` echo
 * server with a certificate minted by `openssl` for the run). A TLS
 * connection per request offers the session of the one before (a resumed,
 * abbreviated handshake) where the runtime can (Node, Bun; not Deno), as
 * the pool does for its own new connections: the cheapest a connection per
 * request can be.
 *
 * Run `deno run --allow-all bench/reuse.ts`, `bun bench/reuse.ts` or
 * `node npm/esm/bench/reuse.js`. Options: `--quick`, `--rounds=9`,
 * `--trips=1500` (sequential pooled requests per round; a connection per
 * request gets a quarter as many), `--callers=32`.
 *
 * @module
 */
import {
  type Address,
  ConnectionPool,
  detectTransport,
  resolveAddress,
  type Transport,
} from "../mod.ts";
import { exchange, listenEcho, PAYLOAD_BYTES, Payloads, roundTrip } from "./_echo.ts";
import {
  emitResult,
  type Figure,
  type Options,
  parseOptions,
  printTable,
  type Ratio,
  runMain,
  runtime,
} from "./_report.ts";
import { interleave, spread, type Timing } from "./_stats.ts";
import { TlsSessions } from "../src/tls_sessions.ts";
import { testCertificates } from "../tests/_certs.ts";

/** A connection per request is slow and leaves a TIME_WAIT socket: fewer of them. */
const FRESH_SHARE = 4;

type ReuseOptions = Options<{ rounds: number; trips: number; callers: number }>;

/** An upstream to compare on, started fresh for the comparison. */
export interface ReuseUpstream {
  /** What `acquire` and the connection per request connect to. */
  readonly address: Address;
  close(): Promise<void>;
}

async function startTcpEcho(): Promise<ReuseUpstream> {
  const upstream = await listenEcho();
  return { address: { hostname: "127.0.0.1", port: upstream.port }, close: upstream.close };
}

async function startTlsEcho(): Promise<ReuseUpstream> {
  const certificates = testCertificates();
  const upstream = await listenEcho(undefined, certificates.server);
  return {
    address: { hostname: "127.0.0.1", port: upstream.port, tls: { caCerts: [certificates.ca] } },
    close: upstream.close,
  };
}

/** Runs `each` on `callers` concurrent loops of `perCaller` requests; resolves when all are done. */
async function concurrently(
  callers: number,
  perCaller: number,
  each: () => Promise<void>,
): Promise<void> {
  const loop = async (): Promise<void> => {
    for (let i = 0; i < perCaller; i++) await each();
  };
  await Promise.all(Array.from({ length: callers }, loop));
}

/** Measures pooled requests against a connection per request on one kind of upstream. */
export async function compareReuse(
  kind: string,
  startUpstream: () => Promise<ReuseUpstream>,
  transport: Transport,
  options: ReuseOptions,
): Promise<{ ratios: Ratio[]; figures: Figure[] }> {
  const upstream = await startUpstream();
  const address = resolveAddress(upstream.address);
  const payloads = new Payloads();
  const sequentialPool = new ConnectionPool({ transport });
  const concurrentPool = new ConnectionPool({ transport });
  try {
    const pooled = (pool: ConnectionPool) => async (): Promise<void> => {
      const { connection } = await pool.acquire(address);
      await exchange(pool, connection, payloads.next());
    };
    const tlsSessions = new TlsSessions();
    const fresh = async (): Promise<void> => {
      const connection = await transport.connect(address, { tlsSessions });
      try {
        await roundTrip(connection, payloads.next());
      } finally {
        connection.close();
      }
    };
    const { callers } = options;
    const perCaller = Math.max(1, Math.round(options.trips / callers * 2));
    const freshPerCaller = Math.max(1, Math.round(perCaller / FRESH_SHARE));
    const variants = (trips: number) => [
      { label: `${kind} sequential, pool`, count: trips, once: pooled(sequentialPool) },
      {
        label: `${kind} sequential, connection per request`,
        count: Math.ceil(trips / FRESH_SHARE),
        once: fresh,
      },
      {
        label: `${kind} ${callers} callers, pool`,
        count: 1,
        once: () => concurrently(callers, perCaller, pooled(concurrentPool)),
      },
      {
        label: `${kind} ${callers} callers, connection per request`,
        count: 1,
        once: () => concurrently(callers, freshPerCaller, fresh),
      },
    ];
    await interleave(variants(Math.ceil(options.trips / 4)), 1); // warm-up, not reported
    const [sequential, sequentialFresh, parallel, parallelFresh] = await interleave(
      variants(options.trips),
      options.rounds,
    ) as [Timing, Timing, Timing, Timing];

    const created = sequentialPool.stats().totals.created;
    const createdConcurrent = concurrentPool.stats().totals.created;
    if (created !== 1 || createdConcurrent > callers) {
      throw new Error(
        `The pools opened ${created} and ${createdConcurrent} connections; ` +
          `expected 1 and at most ${callers}`,
      );
    }
    const rate = (requests: number, batchMicros: number): number => requests / batchMicros * 1e6;
    const pooledRate = rate(callers * perCaller, parallel.median);
    const freshRate = rate(callers * freshPerCaller, parallelFresh.median);
    printTable([
      ["variant", "median", "", "round medians"],
      ...[sequential, sequentialFresh].map((result) => [
        result.label,
        result.median.toFixed(2),
        "µs/request",
        `${spread(result)} µs`,
      ]),
      [parallel.label, pooledRate.toFixed(0), "requests/s", `${spread(parallel, 0)} µs/batch`],
      [
        parallelFresh.label,
        freshRate.toFixed(0),
        "requests/s",
        `${spread(parallelFresh, 0)} µs/batch`,
      ],
    ]);
    const key = kind.toLowerCase();
    return {
      ratios: [
        {
          key: `reuse.${key}.sequential`,
          label: `${kind} sequential: connection per request ÷ pool, time per request`,
          value: sequentialFresh.median / sequential.median,
          better: "higher",
          contest: true,
        },
        {
          key: `reuse.${key}.concurrent`,
          label: `${kind} ${callers} callers: pool ÷ connection per request, requests/s`,
          value: pooledRate / freshRate,
          better: "higher",
          contest: true,
        },
      ],
      figures: [
        { label: `${kind} sequential, pool`, value: sequential.median, unit: "µs" },
        {
          label: `${kind} sequential, connection per request`,
          value: sequentialFresh.median,
          unit: "µs",
        },
        { label: `${kind} ${callers} callers, pool`, value: pooledRate, unit: "req/s" },
        {
          label: `${kind} ${callers} callers, connection per request`,
          value: freshRate,
          unit: "req/s",
        },
      ],
    };
  } finally {
    await Promise.all([sequentialPool.close(), concurrentPool.close()]);
    await upstream.close();
  }
}

async function main(args: string[]): Promise<void> {
  const options = parseOptions(
    args,
    { rounds: 9, trips: 1500, callers: 32 },
    { rounds: 3, trips: 300, callers: 32 },
  );
  const transport = await detectTransport();
  console.log(`upstream-pool reuse, ${runtime().name}, transport "${transport.name}"`);
  console.log(
    `${PAYLOAD_BYTES}-byte echo requests to an in-process node:net (TLS: node:tls) upstream; ` +
      `${options.rounds} interleaved rounds\n`,
  );
  const tcp = await compareReuse("TCP", startTcpEcho, transport, options);
  // A TLS handshake per request costs about 1-3 ms: fewer trips keep the run short.
  const tlsOptions = { ...options, trips: Math.max(100, Math.round(options.trips / 3)) };
  const secure = await compareReuse("TLS", startTlsEcho, transport, tlsOptions);
  emitResult({
    bench: "reuse",
    setup: `${PAYLOAD_BYTES}-byte echo requests, in-process node:net (TLS: node:tls) upstream; ` +
      `${options.rounds} interleaved rounds; sequential: ${options.trips} pooled and ` +
      `${Math.ceil(options.trips / FRESH_SHARE)} connection-per-request requests per round; ` +
      `${options.callers} concurrent callers: one timed batch per round`,
    ratios: [...tcp.ratios, ...secure.ratios],
    figures: [...tcp.figures, ...secure.figures],
  });
}

await runMain("reuse", main);
