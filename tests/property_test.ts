// Property-based tests (issue 9): random addresses, options and misuse
// sequences thrown at the pool, with fast-check, on every runtime. Whatever
// the input, the pool must answer with success or a TypeError, RangeError or
// PoolError with a code (or pass on the caller's own exception), through the
// promise of a method that returns one, with a message of bounded length;
// it must never hang, and after close() no socket and no timer of it may be
// left, with stats() agreeing with the transport and with its own events at
// every step.
//
// Seeded and replayable: every property runs from PROPERTY_SEED (a fixed
// default); a failure prints the seed, the shrunk counterexample and the
// command that replays it (PROPERTY_SEED, PROPERTY_ONLY, PROPERTY_PATH).
// PROPERTY_RUNS=<n> runs every property n times instead of its default.
//
// Most properties run over the in-memory transport, whose sockets can be
// counted exactly; the last one writes odd buffers on real loopback sockets
// through the transport of the runtime running it.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import { setImmediate } from "node:timers";
import fc from "fast-check";
import {
  type Acquired,
  ConnectionPool,
  PoolError,
  type PoolEvent,
  type PoolStats,
  resolveAddress,
  type ResolvedAddress,
  type UpstreamConnection,
} from "../mod.ts";
import { type MemoryPeer, MemoryTransport } from "../src/transports/memory.ts";
import { envNumber, envText } from "./_random.ts";
import { real, timerGlobals } from "./_timer_globals.ts";
import type {
  Transport,
  TransportConnection,
  TransportConnectOptions,
} from "../src/transports/transport.ts";
import {
  ADDRESS_OPTIONS,
  anyAddress,
  buildAddress,
  type Expect,
  expectOption,
  Hostile,
  hostileHostname,
  hostilePort,
  isDottedQuad,
  longString,
  ODD_ARRAY,
  oddArray,
  optionValue,
  POOL_OPTIONS,
  unknownKey,
  validAddress,
  validHostname,
  validPort,
  validTlsOptions,
} from "./_arbitraries.ts";
import { TestUpstream } from "./_upstream.ts";
import { show } from "../src/_show.ts";
import { runtime } from "./_runtime.ts";

// ---------------------------------------------------------------------------
// Settings

const DEFAULT_SEED = 20261201;
const SEED = Number(envText("PROPERTY_SEED") ?? DEFAULT_SEED);
const RUNS = envNumber("PROPERTY_RUNS");
const ONLY = envText("PROPERTY_ONLY");
const PATH = envText("PROPERTY_PATH");
const DEBUG = envText("PROPERTY_DEBUG") !== undefined;
const DEBUG_STEPS = envText("PROPERTY_DEBUG") === "steps";

/** Longest message a TypeError or RangeError may have, whatever the input's length. */
const MAX_ARGUMENT_MESSAGE = 600;
/** Longest message a PoolError may have (it names the address key, which is bounded too). */
const MAX_POOL_MESSAGE = 2_000;
/** A run that takes longer than this is a hang. */
const RUN_DEADLINE_MS = 10_000;

const CODES = new Set([
  "CONNECT_REFUSED",
  "HOST_NOT_FOUND",
  "CONNECT_TIMEOUT",
  "ACQUIRE_TIMEOUT",
  "QUEUE_FULL",
  "LIMIT_REACHED",
  "TLS_CERT_INVALID",
  "TLS_HANDSHAKE_FAILED",
  "TLS_UNSUPPORTED",
  "CONNECT_FAILED",
  "POOL_CLOSED",
  "NOT_BORROWED",
  "LEASE_ENDED",
  "CONNECTION_LOST",
  "SETUP_FAILED",
]);
const CONNECT_CODES = [
  "CONNECT_REFUSED",
  "HOST_NOT_FOUND",
  "CONNECT_TIMEOUT",
  "CONNECT_FAILED",
  "SETUP_FAILED",
];

/**
 * Runs `predicate` on `runs` values of `arbitrary` (PROPERTY_RUNS overrides
 * it) from the seed; on failure, throws fast-check's report (the shrunk
 * counterexample and the error) with the command that replays it.
 */
async function property<T>(
  name: string,
  runs: number,
  arbitrary: fc.Arbitrary<T>,
  predicate: (value: T) => Promise<void> | void,
): Promise<void> {
  const details = await fc.check(
    fc.asyncProperty(arbitrary, async (value) => {
      await within(Promise.resolve().then(() => predicate(value)), RUN_DEADLINE_MS, "the run");
    }),
    {
      seed: SEED,
      numRuns: RUNS ?? runs,
      ...(PATH !== undefined && ONLY !== undefined ? { path: PATH } : {}),
      // Shrinking a failure that involves timing can take long: report what it has by then.
      interruptAfterTimeLimit: 300_000,
      includeErrorInReport: true,
    },
  );
  if (!details.failed) return;
  const report = await fc.asyncDefaultReportMessage(details);
  throw new Error(
    `${name}: ${report}\n\nreplay: PROPERTY_SEED=${details.seed} PROPERTY_ONLY=${
      JSON.stringify(name)
    } PROPERTY_PATH=${JSON.stringify(details.counterexamplePath)}`,
  );
}

/** A test for each property; PROPERTY_ONLY=<part of a name> runs only those that match. */
function propertyTest(name: string, body: () => Promise<void>, timeout = 120_000): void {
  const skip = ONLY !== undefined && !name.includes(ONLY);
  test(name, { skip, timeout }, body);
}

// ---------------------------------------------------------------------------
// Timers, deadlines, turns

/**
 * Records every timer set through the globals while installed, until it
 * fires or is cleared, and every delay no runtime honours (NaN, negative,
 * past 2^31-1 ms). The test's own timers use `real` and are not seen.
 */
class TimerWatch {
  readonly live: Map<unknown, string> = new Map();
  readonly badDelays: string[] = [];
  set = 0;

  install(): void {
    const live = this.live;
    const note = (kind: string, ms: unknown): void => {
      this.set++;
      if (
        ms !== undefined &&
        (typeof ms !== "number" || Number.isNaN(ms) || ms < 0 || ms > 2 ** 31 - 1)
      ) {
        this.badDelays.push(`${kind}(${String(ms)})`);
      }
    };
    timerGlobals.setTimeout = (callback, ms, ...args) => {
      note("setTimeout", ms);
      const handle = real.setTimeout(() => {
        live.delete(handle);
        callback(...args);
      }, ms);
      live.set(handle, `setTimeout(${ms})`);
      return handle;
    };
    timerGlobals.setInterval = (callback, ms, ...args) => {
      note("setInterval", ms);
      const handle = real.setInterval(callback, ms, ...args);
      live.set(handle, `setInterval(${ms})`);
      return handle;
    };
    timerGlobals.clearTimeout = (handle) => {
      live.delete(handle);
      real.clearTimeout(handle);
    };
    timerGlobals.clearInterval = (handle) => {
      live.delete(handle);
      real.clearInterval(handle);
    };
  }

  restore(): void {
    Object.assign(timerGlobals, real);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => real.setTimeout(() => resolve(), ms));
}

function macrotask(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Rejects if `promise` has not settled within `ms` (on a timer the watch does not see). */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: unknown;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = real.setTimeout(() => reject(new Error(`hang: ${what} took over ${ms} ms`)), ms);
    }),
  ]).finally(() => real.clearTimeout(timer));
}

/** Lets microtasks, immediates and the memory transport's zero-delay turns run. */
async function quiesce(turns = 3): Promise<void> {
  for (let i = 0; i < turns; i++) {
    await macrotask();
    await sleep(0);
  }
}

// ---------------------------------------------------------------------------
// Errors

const ENGINE_MESSAGES =
  /Cannot read propert|is not a function|is not an object|is not iterable|Cannot convert|undefined is not|null is not|Cannot access|is not a constructor|Maximum call stack|is not defined|Cannot destructure|Cannot set propert|detached ArrayBuffer|Construct on/;

/** PoolErrors that cannot name an address: there is none. */
const ADDRESSLESS = new Set([
  "Cannot retain: this connection was not handed out by this pool",
  "Cannot release: this connection was not handed out by this pool",
]);

/** What a method may fail with. */
interface Allowed {
  codes?: readonly string[];
  /** TypeError (a wrong shape) and RangeError allowed. */
  argument?: boolean;
  /** The caller's own Hostile exception may come through. */
  hostile?: boolean;
  /** The signal's reasons, passed on as they are. */
  reasons?: readonly unknown[];
  /** Anything goes (the caller's function threw it): only the pool's own errors are checked. */
  anything?: boolean;
}

/** Describes what is wrong with `error` as a failure of `what`, or returns undefined. */
function errorProblem(what: string, error: unknown, allowed: Allowed): string | undefined {
  if (allowed.reasons?.includes(error)) return undefined;
  if (error instanceof Hostile) {
    return allowed.hostile || allowed.anything
      ? undefined
      : `${what}: turned into or let through a Hostile error where none could come`;
  }
  if (error instanceof PoolError) {
    if (!CODES.has(error.code)) return `${what}: PoolError with unknown code ${error.code}`;
    if (error.message.length > MAX_POOL_MESSAGE) {
      return `${what}: PoolError message of ${error.message.length} characters`;
    }
    if (typeof error.address === "string" && error.address.length > MAX_POOL_MESSAGE) {
      return `${what}: PoolError address of ${error.address.length} characters`;
    }
    // Issue 9: every PoolError names the address and the operation that failed.
    if (typeof error.operation !== "string" || error.operation === "") {
      return `${what}: ${error.code} names no operation: ${error.message.slice(0, 200)}`;
    }
    if (typeof error.address !== "string" && !ADDRESSLESS.has(error.message)) {
      return `${what}: ${error.code} names no address: ${error.message.slice(0, 200)}`;
    }
    if (!allowed.anything && !(allowed.codes ?? []).includes(error.code)) {
      return `${what}: unexpected ${error.code}: ${error.message.slice(0, 300)}`;
    }
    return undefined;
  }
  if (error instanceof TypeError || error instanceof RangeError) {
    if (error.message.length > MAX_ARGUMENT_MESSAGE) {
      return `${what}: ${error.name} message of ${error.message.length} characters`;
    }
    const fromPool = /^(Invalid |Cannot )/.test(error.message) &&
      !ENGINE_MESSAGES.test(error.message);
    if (!fromPool && !allowed.anything) {
      return `${what}: an error the pool did not make: ${error.name}: ${
        error.message.slice(0, 300)
      }\n${error.stack?.split("\n").slice(0, 6).join("\n")}`;
    }
    if (!allowed.argument && !allowed.anything) {
      return `${what}: unexpected ${error.name}: ${error.message.slice(0, 300)}`;
    }
    return undefined;
  }
  if (allowed.anything) return undefined;
  return `${what}: rejected with something else: ${String(error).slice(0, 300)}\n${
    (error as Error)?.stack?.split("\n").slice(0, 6).join("\n")
  }`;
}

/** Whether `error` is what `expect` says an input gets. */
function matches(error: unknown, expect: Expect): boolean {
  if (expect === "Hostile") return error instanceof Hostile;
  if (expect === "TypeError") return error instanceof TypeError;
  if (expect === "RangeError") return error instanceof RangeError;
  return false;
}

function describeError(error: unknown): string {
  if (error instanceof PoolError) return `PoolError ${error.code}: ${error.message.slice(0, 200)}`;
  if (error instanceof Error) return `${error.name}: ${error.message.slice(0, 200)}`;
  return String(error).slice(0, 200);
}

/** The library's way of quoting input in a message, written again: the first 64 characters. */
function quoted(text: string): string {
  return JSON.stringify(text.slice(0, 64));
}

type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown };

/**
 * Calls a method that returns a promise: a synchronous throw, or a return
 * value that is not a promise, is a problem in itself.
 */
function callAsync<T>(
  what: string,
  problems: string[],
  call: () => Promise<T>,
): Promise<Settled<T>> {
  let result: Promise<T>;
  try {
    result = call();
  } catch (error) {
    problems.push(`${what} threw synchronously: ${describeError(error)}`);
    return Promise.resolve({ ok: false, error });
  }
  if (!(result instanceof Promise)) {
    problems.push(`${what} returned ${typeof result}, not a promise`);
    return Promise.resolve({ ok: true, value: result as T });
  }
  return result.then((value) => ({ ok: true, value }), (error) => ({ ok: false, error }));
}

function callSync<T>(call: () => T): Settled<T> {
  try {
    return { ok: true, value: call() };
  } catch (error) {
    return { ok: false, error };
  }
}

// ---------------------------------------------------------------------------
// A memory transport that counts what the pool opened and closed

/**
 * The in-memory transport, counting the connects in progress and the
 * connections the pool opened and has not closed itself (a connection the
 * peer reset stays the pool's until it closes it). With `listenAll`, any
 * address but `*.invalid` ones gets an echo upstream on first connect.
 */
class CountingTransport implements Transport {
  readonly name = "memory";
  readonly memory: MemoryTransport = new MemoryTransport();
  readonly peers: MemoryPeer[] = [];
  pending = 0;
  opened = 0;
  closed = 0;
  readonly #listenAll: boolean;
  readonly #listening = new Set<string>();

  constructor(listenAll: boolean) {
    this.#listenAll = listenAll;
  }

  /** Connections open or opening, as the pool should count them. */
  get live(): number {
    return this.opened - this.closed + this.pending;
  }

  listen(
    address: Parameters<MemoryTransport["listen"]>[0],
    handler: (peer: MemoryPeer) => unknown,
    accept?: () => Promise<void> | void,
  ): void {
    this.memory.listen(address, (peer) => {
      this.peers.push(peer);
      return handler(peer);
    }, accept === undefined ? {} : { accept });
    this.#listening.add(resolveAddress(address).key);
  }

  connect(
    address: ResolvedAddress,
    options: TransportConnectOptions,
  ): Promise<TransportConnection> {
    if (
      this.#listenAll && !this.#listening.has(address.key) &&
      !(address.kind === "tcp" && address.hostname.endsWith(".invalid"))
    ) {
      this.listen(address, (peer) => peer.echo());
    }
    this.pending++;
    let settled = false;
    const done = (): void => {
      if (!settled) this.pending--;
      settled = true;
    };
    return this.memory.connect(address, options).then((connection) => {
      done();
      this.opened++;
      return this.#wrap(connection);
    }, (error) => {
      done();
      throw error;
    });
  }

  settle(): Promise<void> {
    return this.memory.settle();
  }

  #wrap(connection: TransportConnection): TransportConnection {
    let closed = false;
    return {
      read: () => connection.read(),
      write: (chunk) => connection.write(chunk),
      closeWrite: () => connection.closeWrite(),
      close: () => {
        if (!closed) this.closed++;
        closed = true;
        connection.close();
      },
      ref: () => connection.ref(),
      unref: () => connection.unref(),
      get tls() {
        return connection.tls;
      },
    };
  }
}

// ---------------------------------------------------------------------------
// Checks shared by the properties

const COUNT_FIELDS = [
  "idle",
  "borrowed",
  "connecting",
  "settingUp",
  "validating",
  "waiting",
] as const;
const CLOSE_TOTALS = [
  "broken",
  "dropped",
  "released",
  "expired",
  "validationFailed",
  "maxUses",
  "drained",
  "poolClosed",
  "setupFailed",
] as const;

/** Connections the pool has in every phase but connecting. */
function sockets(
  counts: Pick<PoolStats, "idle" | "borrowed" | "settingUp" | "validating">,
): number {
  return counts.idle + counts.borrowed + counts.settingUp + counts.validating;
}

/**
 * What stats() must satisfy at any moment between two macrotasks: every
 * count a non-negative integer, the addresses adding up to the totals, the
 * sockets matching what the transport has open, and the totals matching
 * what is open.
 */
function statsProblems(stats: PoolStats, transport: CountingTransport): string[] {
  const problems: string[] = [];
  for (const field of COUNT_FIELDS) {
    const value = stats[field];
    if (!Number.isInteger(value) || value < 0) problems.push(`stats().${field} is ${value}`);
    let sum = 0;
    for (const [key, counts] of Object.entries(stats.byAddress)) {
      const own = counts[field];
      if (!Number.isInteger(own) || own < 0) problems.push(`byAddress[${key}].${field} is ${own}`);
      sum += own;
    }
    if (sum !== value) problems.push(`byAddress adds up to ${sum} ${field}, stats() says ${value}`);
  }
  for (const [field, value] of Object.entries(stats.totals)) {
    const whole = field !== "waitedMs" && field !== "maxWaitMs";
    if (
      typeof value !== "number" || !(value >= 0) || !Number.isFinite(value) ||
      (whole && !Number.isInteger(value))
    ) {
      problems.push(`totals.${field} is ${value}`);
    }
  }
  if (stats.totals.maxWaitMs > stats.totals.waitedMs + 1e-6) {
    problems.push(`totals.maxWaitMs ${stats.totals.maxWaitMs} > waitedMs ${stats.totals.waitedMs}`);
  }
  const open = sockets(stats) + stats.connecting;
  if (open !== transport.live) {
    problems.push(
      `stats() counts ${open} connections (idle ${stats.idle}, borrowed ${stats.borrowed}, connecting ${stats.connecting}, settingUp ${stats.settingUp}, validating ${stats.validating}) but the transport has ${
        transport.opened - transport.closed
      } open and ${transport.pending} connecting`,
    );
  }
  const closedByReason = CLOSE_TOTALS.reduce((sum, field) => sum + stats.totals[field], 0);
  if (stats.totals.created - closedByReason !== sockets(stats)) {
    problems.push(
      `totals: ${stats.totals.created} created - ${closedByReason} closed != ${
        sockets(stats)
      } open`,
    );
  }
  return problems;
}

/** Every opened event has one closed event at most, after it, and events agree with totals. */
class EventLedger {
  readonly opened = new Set<number>();
  /** When each connection was opened (Date.now()). */
  readonly openedAt = new Map<number, number>();
  readonly closed = new Set<number>();
  readonly problems: string[] = [];

  readonly onEvent = (event: PoolEvent): void => {
    if (typeof event.address !== "string" || event.address.length > MAX_POOL_MESSAGE) {
      this.problems.push(`event ${event.type} with address ${String(event.address).slice(0, 80)}`);
    }
    if (event.type === "opened") {
      if (this.opened.has(event.id)) this.problems.push(`connection ${event.id} opened twice`);
      this.opened.add(event.id);
      this.openedAt.set(event.id, Date.now());
    } else if (event.type === "closed") {
      if (DEBUG_STEPS) console.log(`  closed ${event.id}: ${event.reason} ${event.detail ?? ""}`);
      if (!this.opened.has(event.id)) {
        this.problems.push(`connection ${event.id} closed, never opened`);
      }
      if (this.closed.has(event.id)) this.problems.push(`connection ${event.id} closed twice`);
      this.closed.add(event.id);
    }
  };

  check(stats: PoolStats): string[] {
    const problems = [...this.problems];
    if (this.opened.size !== stats.totals.created) {
      problems.push(`${this.opened.size} opened events, totals.created ${stats.totals.created}`);
    }
    const closedByReason = CLOSE_TOTALS.reduce((sum, field) => sum + stats.totals[field], 0);
    if (this.closed.size !== closedByReason) {
      problems.push(`${this.closed.size} closed events, ${closedByReason} closes in totals`);
    }
    return problems;
  }
}

/** After close() and everything given back: nothing open, nothing counted, no timer. */
async function leftovers(
  pool: ConnectionPool,
  transport: CountingTransport,
  timers: TimerWatch,
  ledger: EventLedger | undefined,
): Promise<string[]> {
  // The memory transport's delivery turns are zero-delay timers: let them run out.
  for (let i = 0; i < 20 && (timers.live.size > 0 || transport.live > 0); i++) await quiesce(1);
  const problems: string[] = [];
  const stats = pool.stats();
  if (!stats.closed) problems.push("stats().closed is false after close()");
  for (const field of COUNT_FIELDS) {
    if (stats[field] !== 0) problems.push(`after close(): stats().${field} is ${stats[field]}`);
  }
  if (Object.keys(stats.byAddress).length > 0) {
    problems.push(`after close(): byAddress still has ${Object.keys(stats.byAddress).join(", ")}`);
  }
  if (transport.live !== 0) {
    problems.push(
      `after close(): ${
        transport.opened - transport.closed
      } connections open, ${transport.pending} connecting`,
    );
  }
  if (transport.memory.openConnections !== 0) {
    problems.push(
      `after close(): the memory transport has ${transport.memory.openConnections} open`,
    );
  }
  if (timers.live.size > 0) {
    problems.push(`after close(): timers left: ${[...timers.live.values()].join(", ")}`);
  }
  if (timers.badDelays.length > 0) {
    problems.push(
      `timers armed with delays no runtime honours: ${timers.badDelays.slice(0, 5).join(", ")}`,
    );
  }
  problems.push(...statsProblems(stats, transport));
  if (ledger !== undefined) {
    problems.push(...ledger.check(stats));
    if (ledger.opened.size !== ledger.closed.size) {
      problems.push(`after close(): ${ledger.opened.size} opened, ${ledger.closed.size} closed`);
    }
  }
  return problems;
}

/** Runs `body` with the timer watch installed and unhandled rejections caught. */
async function watched<T>(
  body: (timers: TimerWatch, problems: string[]) => Promise<T>,
): Promise<T> {
  const timers = new TimerWatch();
  const problems: string[] = [];
  const onUnhandled = (reason: unknown): void => {
    problems.push(`unhandled rejection: ${describeError(reason)}`);
  };
  process.on("unhandledRejection", onUnhandled);
  timers.install();
  try {
    return await body(timers, problems);
  } finally {
    timers.restore();
    process.off("unhandledRejection", onUnhandled);
  }
}

function assertNone(problems: readonly string[], context: string): void {
  if (problems.length > 0) {
    assert.fail(`${context}:\n  ${[...new Set(problems)].slice(0, 12).join("\n  ")}`);
  }
}

// ---------------------------------------------------------------------------
// Property 1 and 2: addresses

/** resolveAddress's answer to an address, as data. */
function resolution(address: unknown): { key: string } | { error: unknown } {
  try {
    return { key: resolveAddress(address as never).key };
  } catch (error) {
    return { error };
  }
}

function sameFailure(error: unknown, expected: unknown, prefix = ""): boolean {
  if (expected instanceof Hostile) return error instanceof Hostile;
  if (!(expected instanceof Error) || !(error instanceof Error)) return false;
  return error.constructor === expected.constructor && error.message === prefix + expected.message;
}

async function checkAddress(description: Parameters<typeof buildAddress>[0]): Promise<void> {
  await watched(async (timers, problems) => {
    const transport = new CountingTransport(true);
    const ledger = new EventLedger();
    const pool = new ConnectionPool({ transport, onEvent: ledger.onEvent, acquireTimeout: 2_000 });
    const expected = resolution(buildAddress(description));
    const fresh = (): never => buildAddress(description) as never;
    if ("error" in expected) {
      const problem = errorProblem("resolveAddress", expected.error, {
        argument: true,
        hostile: true,
      });
      if (problem !== undefined) problems.push(problem);
      if (!(expected.error instanceof Hostile) && expected.error instanceof PoolError) {
        problems.push("resolveAddress threw a PoolError");
      }
    }
    const calls: Array<[string, Promise<Settled<unknown>>]> = [
      ["acquire", callAsync("acquire", problems, () => pool.acquire(fresh()))],
      ["add", callAsync("add", problems, () => pool.add(fresh()))],
      ["warm", callAsync("warm", problems, () => pool.warm(fresh(), 1))],
      [
        "exchange",
        callAsync(
          "exchange",
          problems,
          () => pool.exchange(fresh(), (connection) => connection.address.key),
        ),
      ],
    ];
    const drained = callSync(() => pool.drain(fresh()));
    const perAddress = callSync(() =>
      new ConnectionPool({ transport, perAddress: [{ address: fresh() }] })
    );
    const settled = await Promise.all(
      calls.map(async ([what, call]) => [what, await call] as const),
    );
    for (const [what, outcome] of settled) {
      if ("error" in expected) {
        if (outcome.ok) problems.push(`${what} accepted what resolveAddress refuses`);
        else if (!sameFailure(outcome.error, expected.error)) {
          problems.push(
            `${what} failed with ${describeError(outcome.error)}, resolveAddress with ${
              describeError(expected.error)
            }`,
          );
        }
        continue;
      }
      if (!outcome.ok) {
        const problem = errorProblem(what, outcome.error, { codes: ["HOST_NOT_FOUND"] });
        if (problem !== undefined) problems.push(problem);
        else if ((outcome.error as PoolError).address !== expected.key) {
          problems.push(
            `${what}: the error names ${(outcome.error as PoolError).address}, not ${expected.key}`,
          );
        }
        continue;
      }
      if (what === "acquire") {
        const { connection } = outcome.value as Acquired;
        if (connection.address.key !== expected.key) {
          problems.push(`acquire connected to ${connection.address.key}, not ${expected.key}`);
        }
        pool.retain(connection);
      }
      if (what === "exchange" && outcome.value !== expected.key) {
        problems.push(`exchange ran on ${outcome.value}, not ${expected.key}`);
      }
    }
    if ("error" in expected) {
      if (drained.ok) problems.push("drain accepted what resolveAddress refuses");
      else if (!sameFailure(drained.error, expected.error)) {
        problems.push(`drain: ${describeError(drained.error)} vs ${describeError(expected.error)}`);
      }
      if (perAddress.ok) problems.push("perAddress accepted what resolveAddress refuses");
      else if (
        !sameFailure(
          perAddress.error,
          expected.error instanceof Hostile ? new TypeError(`hostile`) : expected.error,
          "Invalid pool option perAddress[0].address: ",
        ) &&
        !(expected.error instanceof Hostile && perAddress.error instanceof Error &&
          /^Invalid pool option perAddress\[0\]\.address: hostile/.test(perAddress.error.message))
      ) {
        problems.push(
          `perAddress: ${describeError(perAddress.error)} vs ${describeError(expected.error)}`,
        );
      }
    } else {
      if (!drained.ok) problems.push(`drain threw ${describeError(drained.error)}`);
      if (!perAddress.ok) problems.push(`perAddress threw ${describeError(perAddress.error)}`);
      else await perAddress.value.close();
    }
    await pool.close();
    problems.push(...await leftovers(pool, transport, timers, ledger));
    assertNone(problems, "address");
  });
}

/** A hostname or port getter that answers from `values` in turn, logging each read. */
function changingAddress(
  field: "hostname" | "port",
  values: readonly unknown[],
  other: unknown,
  reads: unknown[],
): object {
  let next = 0;
  const address: Record<string, unknown> = field === "hostname"
    ? { port: other }
    : { hostname: other };
  Object.defineProperty(address, field, {
    get() {
      const value = values[next++ % values.length];
      reads.push(value);
      return value;
    },
    enumerable: true,
    configurable: true,
  });
  return address;
}

// ---------------------------------------------------------------------------
// Property 3: pool options

interface PoolOptionsDescription {
  shape: "plain" | "null-prototype" | "inherited" | "class-instance" | "array" | "null" | "map";
  fields: Record<string, unknown>;
  unknown?: string | undefined;
  perAddress?: unknown;
  transport: "memory" | "absent" | "null" | "no-settle";
  pollute: boolean;
}

interface PerAddressDescription {
  shape: "plain" | "inherited" | "null";
  address: Parameters<typeof buildAddress>[0];
  fields: Record<string, unknown>;
  /** A pool-wide option, or an unknown key. */
  extra?: string | undefined;
}

const POOL_WIDE_ONLY = [
  "maxTotal",
  "maxIdle",
  "acquireTimeout",
  "order",
  "leakTimeout",
  "transport",
  "onEvent",
  "perAddress",
];

/**
 * Valid values for the options of `kinds`, then up to two of them replaced
 * by anything: most runs have one mistake at most, so each check is met on
 * its own and not hidden behind another.
 */
function fieldsArbitrary(kinds: Record<string, string>): fc.Arbitrary<Record<string, unknown>> {
  const model: Record<string, fc.Arbitrary<unknown>> = {};
  for (const [name, kind] of Object.entries(kinds)) model[name] = optionValue(kind as never, true);
  const names = fc.constantFrom(...Object.keys(kinds));
  const mistake = fc.oneof(
    names.chain((name) =>
      optionValue(kinds[name] as never, false).map((value) => [name, value] as const)
    ),
    // The commonest careless value, from JSON configuration: null.
    names.map((name) => [name, null] as const),
  );
  return fc.tuple(fc.record(model, { requiredKeys: [] }), fc.array(mistake, { maxLength: 2 }))
    .map(([fields, mistakes]) => ({ ...fields, ...Object.fromEntries(mistakes) }));
}

const perAddressDescription: fc.Arbitrary<PerAddressDescription> = fc.record({
  shape: fc.constantFrom("plain", "plain", "plain", "plain", "plain", "plain", "inherited", "null"),
  address: fc.oneof(
    { weight: 3, arbitrary: validAddress.map((fields) => ({ shape: "plain" as const, fields })) },
    { weight: 1, arbitrary: anyAddress as fc.Arbitrary<Parameters<typeof buildAddress>[0]> },
  ),
  fields: fieldsArbitrary(ADDRESS_OPTIONS),
  extra: fc.option(fc.oneof(fc.constantFrom(...POOL_WIDE_ONLY), unknownKey), {
    nil: undefined,
    freq: 6,
  }),
});

const poolOptionsDescription: fc.Arbitrary<PoolOptionsDescription> = fc.record({
  shape: fc.constantFrom(
    ...Array<"plain">(30).fill("plain"),
    "null-prototype",
    "null-prototype",
    "inherited",
    "class-instance",
    "array",
    "null",
    "map",
  ),
  fields: fieldsArbitrary(POOL_OPTIONS),
  unknown: fc.option(
    fc.oneof(
      fc.constantFrom(
        "max",
        "maxSockets",
        "maxPerhost",
        "maxConnections",
        "maxTotalSockets",
        "ssl",
        "tls",
        "hostname",
        "timeout",
        "signal",
        "idleTimeoutMillis",
        "min",
        "address",
      ),
      unknownKey,
    ),
    { nil: undefined, freq: 10 },
  ),
  perAddress: fc.oneof(
    { weight: 8, arbitrary: fc.constant(undefined) },
    { weight: 4, arbitrary: fc.array(perAddressDescription, { minLength: 1, maxLength: 2 }) },
    { weight: 1, arbitrary: fc.constant(null) },
    {
      weight: 1,
      arbitrary: fc.constantFrom("sparse" as const, "endless" as const).map((kind) =>
        oddArray(kind, { address: { hostname: "a.test", port: 1 } })
      ),
    },
    { weight: 1, arbitrary: fc.constantFrom({}, "x", 1, true) },
  ),
  transport: fc.constantFrom(
    ...Array<"memory">(30).fill("memory"),
    "absent",
    "null",
    "no-settle",
  ),
  pollute: fc.boolean(),
});

/**
 * Keys that a polluted Object.prototype carries during a run, each of which
 * would change something if the pool read it. Not `signal`: the platform's
 * own `addEventListener(type, listener, { once: true })` reads that one.
 */
const POLLUTION: Record<string, unknown> = {
  maxPerHost: -1,
  perAddress: 5,
  tls: true,
  verify: false,
  path: "/polluted.sock",
  timeout: -1,
  idleTimeout: NaN,
  setup: 5,
  order: "sideways",
};

function withPollutedPrototype<T>(pollute: boolean, body: () => T): T {
  if (!pollute) return body();
  const proto = Object.prototype as Record<string, unknown>;
  for (const [key, value] of Object.entries(POLLUTION)) {
    Object.defineProperty(proto, key, {
      value,
      configurable: true,
      writable: true,
      enumerable: false,
    });
  }
  try {
    return body();
  } finally {
    for (const key of Object.keys(POLLUTION)) delete proto[key];
  }
}

/** Adds an own enumerable property, whatever its name (`__proto__` too). */
function define(target: object, key: string, value: unknown): void {
  Object.defineProperty(target, key, {
    value,
    enumerable: true,
    configurable: true,
    writable: true,
  });
}

/** Copies own properties as own properties (`Object.assign` would set a prototype for `__proto__`). */
function copyInto<T extends object>(target: T, fields: Record<string, unknown>): T {
  for (const key of Object.keys(fields)) define(target, key, fields[key]);
  return target;
}

/** A hook option's value, built from its description. */
function hookValue(value: unknown, kind: string, ledger: EventLedger): unknown {
  if (kind === "hook") {
    if (value === "async-ok") return async () => {};
    if (value === "sync-ok") return () => true;
  }
  if (kind === "onEvent" && value === "record") return ledger.onEvent;
  return value;
}

/**
 * Builds the options a description stands for, and what the README says of
 * them: for each mistake, the text the error message must contain and the
 * error class. No mistakes: the pool must be created.
 */
function buildPoolOptions(
  description: PoolOptionsDescription,
  transport: CountingTransport,
  ledger: EventLedger,
): { options: unknown; mistakes: Map<string, Expect> } {
  const mistakes = new Map<string, Expect>();
  const fields: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(description.fields)) {
    fields[name] = hookValue(value, POOL_OPTIONS[name]!, ledger);
    const expect = expectOption(POOL_OPTIONS[name] as never, fields[name]);
    if (expect !== "ok") mistakes.set(`option ${name}:`, expect);
  }
  if (!("onEvent" in fields)) fields.onEvent = ledger.onEvent;
  if (description.transport === "memory") fields.transport = transport;
  else if (description.transport === "null") {
    fields.transport = null;
    mistakes.set("option transport:", "TypeError");
  } else if (description.transport === "no-settle") {
    fields.transport = { name: "x", connect: () => Promise.reject(new Error("no")) };
    mistakes.set("option transport:", "TypeError");
  }
  minIdleMistakes(fields, undefined, "", mistakes);
  if (description.unknown !== undefined) {
    define(fields, description.unknown, 1);
    mistakes.set(`unknown option ${quoted(description.unknown)}`, "TypeError");
  }
  if (description.perAddress !== undefined) {
    const odd = (description.perAddress as { [ODD_ARRAY]?: string })?.[ODD_ARRAY];
    if (odd !== undefined) {
      // Its first item is a hole, or (endless) one valid entry.
      fields.perAddress = description.perAddress;
      if (odd === "sparse") mistakes.set("option perAddress[0]:", "TypeError");
    } else if (!Array.isArray(description.perAddress)) {
      fields.perAddress = description.perAddress;
      mistakes.set("option perAddress:", "TypeError");
    } else {
      fields.perAddress = description.perAddress.map((entry: PerAddressDescription, i: number) =>
        buildPerAddress(entry, i, fields, mistakes, ledger)
      );
    }
  }
  let options: unknown;
  switch (description.shape) {
    case "plain":
      options = fields;
      break;
    case "null-prototype":
      options = copyInto(Object.create(null), fields);
      break;
    case "inherited":
      options = Object.create(fields);
      break;
    case "class-instance":
      options = copyInto(new (class Options {})(), fields);
      break;
    case "array":
      options = copyInto([], fields);
      break;
    case "null":
      options = null;
      break;
    case "map":
      options = new Map(Object.entries(fields));
      break;
  }
  if (description.shape !== "plain" && description.shape !== "null-prototype") {
    mistakes.clear(); // nothing inside is looked at
    mistakes.set("pool options: expected", "TypeError");
  }
  return { options, mistakes };
}

function buildPerAddress(
  entry: PerAddressDescription,
  i: number,
  pool: Record<string, unknown>,
  mistakes: Map<string, Expect>,
  ledger: EventLedger,
): unknown {
  const prefix = `perAddress[${i}]`;
  if (entry.shape === "null") {
    mistakes.set(`option ${prefix}:`, "TypeError");
    return null;
  }
  const fields: Record<string, unknown> = { address: buildAddress(entry.address) };
  const resolved = resolution(buildAddress(entry.address));
  if ("error" in resolved) {
    mistakes.set(
      `option ${prefix}.address:`,
      resolved.error instanceof RangeError ? "RangeError" : "TypeError",
    );
  }
  for (const [name, value] of Object.entries(entry.fields)) {
    fields[name] = hookValue(value, ADDRESS_OPTIONS[name]!, ledger);
    const expect = expectOption(ADDRESS_OPTIONS[name] as never, fields[name]);
    if (expect !== "ok") mistakes.set(`option ${prefix}.${name}:`, expect);
  }
  minIdleMistakes(fields, pool, `${prefix}.`, mistakes);
  if (entry.extra !== undefined) {
    define(fields, entry.extra, 1);
    mistakes.set(`option ${prefix}: unknown option ${quoted(entry.extra)}`, "TypeError");
  }
  if (entry.shape === "inherited") {
    mistakes.set(`option ${prefix}: expected`, "TypeError");
    return Object.create(fields);
  }
  return fields;
}

/** minIdlePerHost above maxPerHost or maxIdlePerHost (after defaults) is a RangeError, if all three are valid. */
function minIdleMistakes(
  fields: Record<string, unknown>,
  base: Record<string, unknown> | undefined,
  prefix: string,
  mistakes: Map<string, Expect>,
): void {
  const value = (name: string, fallback: number): number | undefined => {
    const own = fields[name] ?? base?.[name];
    const kind = ADDRESS_OPTIONS[name] as never;
    if (own === undefined) return fallback;
    if (expectOption(kind, own) !== "ok") return undefined;
    if (
      base !== undefined && fields[name] === undefined && expectOption(kind, base[name]) !== "ok"
    ) {
      return undefined;
    }
    return own as number;
  };
  const min = value("minIdlePerHost", 0);
  const limits = [value("maxPerHost", Infinity), value("maxIdlePerHost", Infinity)];
  if (min === undefined || limits.includes(undefined)) return;
  if (limits.some((limit) => min > limit!)) {
    mistakes.set(`option ${prefix}minIdlePerHost:`, "RangeError");
  }
}

async function checkPoolOptions(description: PoolOptionsDescription): Promise<void> {
  await watched(async (timers, problems) => {
    const transport = new CountingTransport(true);
    const ledger = new EventLedger();
    const { options, mistakes } = buildPoolOptions(description, transport, ledger);
    const created = withPollutedPrototype(
      description.pollute,
      () => callSync(() => new ConnectionPool(options as never)),
    );
    if (!created.ok) {
      const error = created.error;
      const problem = errorProblem("new ConnectionPool", error, { argument: true });
      if (problem !== undefined) problems.push(problem);
      else if (mistakes.size === 0) problems.push(`refused valid options: ${describeError(error)}`);
      else if (
        ![...mistakes].some(([needle, expect]) =>
          matches(error, expect) && (error as Error).message.includes(needle)
        )
      ) {
        problems.push(
          `${describeError(error)} names none of the mistakes: ${
            [...mistakes].map(([n, e]) => `${e} ${n}`).join("; ")
          }`,
        );
      }
      assertNone(problems, "pool options");
      return;
    }
    if (mistakes.size > 0) {
      problems.push(
        `accepted options with mistakes: ${[...mistakes].map(([n, e]) => `${e} ${n}`).join("; ")}`,
      );
    }
    const pool = created.value;
    // A short workload: the options must let it finish, with errors only of the kinds allowed.
    const address = { hostname: "options.test", port: 1 };
    const entries = description.perAddress;
    const perAddress = Array.isArray(entries) && !(ODD_ARRAY in entries) && entries.length > 0
      ? buildAddress((entries[0] as PerAddressDescription).address)
      : address;
    const allowed: Allowed = {
      codes: ["ACQUIRE_TIMEOUT", "QUEUE_FULL", "LIMIT_REACHED", ...CONNECT_CODES],
    };
    for (const target of [address, perAddress, address]) {
      const first = withPollutedPrototype(
        description.pollute,
        () => callAsync("acquire", problems, () => pool.acquire(target as never)),
      );
      const outcome = await first;
      if (!outcome.ok) {
        const problem = errorProblem("acquire", outcome.error, allowed);
        if (problem !== undefined) problems.push(problem);
        continue;
      }
      const { connection } = outcome.value;
      const reply = await roundTrip(connection, "ping");
      if (reply !== "ping" && !(reply instanceof PoolError)) {
        problems.push(`echo answered ${String(reply)}`);
      }
      callSync(() => pool.retain(connection));
    }
    const exchanged = await callAsync(
      "exchange",
      problems,
      () =>
        pool.exchange(address, (connection) => roundTrip(connection, "x"), { idempotent: true }),
    );
    if (!exchanged.ok) {
      const problem = errorProblem("exchange", exchanged.error, {
        ...allowed,
        codes: [...allowed.codes!, "CONNECTION_LOST"],
      });
      if (problem !== undefined) problems.push(problem);
    }
    await sleep(3);
    if (timers.set > 2_000) problems.push(`${timers.set} timers set by a short workload: a storm`);
    problems.push(...statsProblems(pool.stats(), transport));
    const closing = await callAsync("close", problems, () => pool.close({ timeout: 0 }));
    if (!closing.ok) problems.push(`close failed: ${describeError(closing.error)}`);
    problems.push(...await leftovers(pool, transport, timers, ledger));
    assertNone(problems, "pool options");
  });
}

/** Writes `text` and reads the echo; a PoolError, or what came back. */
async function roundTrip(
  connection: UpstreamConnection,
  text: string,
): Promise<string | PoolError> {
  try {
    await connection.write(new TextEncoder().encode(text));
    let received = "";
    while (received.length < text.length) {
      const chunk = await connection.read();
      if (chunk === null) return received;
      received += new TextDecoder().decode(chunk);
    }
    return received;
  } catch (error) {
    if (error instanceof PoolError) return error;
    throw error;
  }
}

// ---------------------------------------------------------------------------
// Property 5: misuse sequences

const MISUSE_ADDRESSES = [
  { hostname: "echo.prop", port: 1 }, // echoes
  { hostname: "greet.prop", port: 2 }, // says "hi" at once, then echoes
  { hostname: "gate.prop", port: 3 }, // connects wait for a gate op
  { hostname: "down.prop", port: 4 }, // nobody listens
  { hostname: "nx.invalid", port: 5 }, // the name does not resolve
  { hostname: "flaky.prop", port: 6 }, // every other connect fails
  { path: "/tmp/property.sock" }, // an echo over a Unix socket
  { hostname: "echo.prop", port: 1, tls: true }, // another key for the echo upstream
] as const;
/** Addresses no acquire may ever get a connection to. */
const NEVER_CONNECTS = new Set([3, 4]);

const SETUP_KINDS = [
  "none",
  "ok",
  "ping",
  "throw",
  "reject",
  "hang",
  "slow",
  "unread",
  "release-self",
  "close-write",
  "capture",
  "state",
] as const;
const VALIDATE_KINDS = [
  "none",
  "true",
  "false",
  "throw",
  "hang",
  "non-boolean",
  "ping",
  "slow",
] as const;
const SIGNAL_KINDS = [
  "none",
  "none",
  "none",
  "pre",
  "micro",
  "soon",
  "late",
  "not-a-signal",
] as const;
const RUN_KINDS = [
  "echo",
  "throw",
  "noread",
  "release",
  "retain",
  "capture-slow",
  "read-abort",
  "write-detached",
  "close-write",
  "unread",
] as const;
const CHUNK_KINDS = [
  "bytes",
  "bytes",
  "empty",
  "subarray",
  "big",
  "detached",
  "string",
  "array",
  "dataview",
  "proxy",
  "null",
] as const;
const OPTS_KINDS = [
  "absent",
  "absent",
  "field",
  "field",
  "field",
  "empty",
  "null",
  "number",
  "array",
  "map",
  "inherited",
  "throwing-getter",
  "unknown-key",
  "proxy-throwing-keys",
] as const;

type SetupKind = typeof SETUP_KINDS[number];
type ValidateKind = typeof VALIDATE_KINDS[number];
type SignalKind = typeof SIGNAL_KINDS[number];
type RunKind = typeof RUN_KINDS[number];
type ChunkKind = typeof CHUNK_KINDS[number];
type OptsKind = typeof OPTS_KINDS[number];

interface MisuseConfig {
  maxPerHost: number;
  maxIdlePerHost: number;
  minIdlePerHost: number;
  maxTotal: number;
  maxIdle: number;
  maxWaiting: number;
  acquireTimeout: number;
  connectTimeout: number;
  idleTimeout: number;
  maxLifetime: number;
  validateAfter: number;
  maxUses: number;
  order: "lifo" | "fifo";
  leakTimeout: number;
  keepAlive: number | false;
  setup: SetupKind;
  validate: ValidateKind;
  /** Options of the echo address of its own. */
  echo?: { maxPerHost: number; setup: SetupKind; idleTimeout: number } | undefined;
}

type Op =
  | { op: "acquire"; a: number; signal: SignalKind; opts: OptsKind }
  | {
    op: "exchange";
    a: number;
    run: RunKind;
    idempotent: unknown;
    signal: SignalKind;
    idleTimeout: unknown;
    opts: OptsKind;
  }
  | { op: "add"; a: number }
  | { op: "warm"; a: number; n: unknown }
  | { op: "retain"; l: number; idleTimeout: unknown; opts: OptsKind }
  | { op: "release"; l: number }
  | { op: "dispose"; l: number }
  | { op: "write"; l: number; chunk: ChunkKind }
  | { op: "read"; l: number; signal: SignalKind; opts: OptsKind }
  | { op: "unread"; l: number; chunk: ChunkKind }
  | { op: "closeWrite"; l: number }
  | { op: "stream"; l: number; how: "read-cancel" | "write" | "close" | "abort" }
  | { op: "peer"; p: number; act: "write" | "end" | "reset" }
  | { op: "gate"; act: "open" | "fail" }
  | { op: "drain"; a: number }
  | { op: "sleep"; ms: number }
  | { op: "settle" }
  | { op: "close"; timeout: unknown; opts: OptsKind }
  | { op: "foreign"; how: "retain-object" | "release-null" | "retain-other-pool" };

const idleTimeoutValue = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(undefined, 1000, 2 ** 31, 1e10, Infinity) },
  { weight: 1, arbitrary: fc.constantFrom(0, 5, -1, NaN, "5", null) },
);

/**
 * The first value (the default, or the most ordinary) four times in five,
 * else any of them: a run has a few unusual settings, not all, and
 * fast-check shrinks a counterexample towards the defaults.
 */
function setting<T>(ordinary: T, ...others: T[]): fc.Arbitrary<T> {
  return fc.oneof(
    { weight: 4, arbitrary: fc.constant(ordinary) },
    { weight: 1, arbitrary: fc.constantFrom(ordinary, ...others) },
  );
}

const misuseConfig: fc.Arbitrary<MisuseConfig> = fc.record({
  maxPerHost: setting(Infinity, 3, 2, 1),
  maxIdlePerHost: setting(Infinity, 2, 1, 0),
  minIdlePerHost: setting(0, 1, 2),
  maxTotal: setting(Infinity, 4, 2),
  maxIdle: setting(Infinity, 3, 1, 0),
  maxWaiting: setting(Infinity, 1, 0),
  acquireTimeout: setting(2 ** 31, Infinity, 50, 15),
  connectTimeout: setting(10_000, 2 ** 31, Infinity, 40, 10),
  idleTimeout: setting(60_000, 2 ** 31, 1e10, Infinity, 30, 5),
  maxLifetime: setting(Infinity, 1e10, 15),
  validateAfter: setting(1000, 5, 0),
  maxUses: setting(Infinity, 2, 1),
  order: setting<"lifo" | "fifo">("lifo", "fifo"),
  leakTimeout: setting(Infinity, 2 ** 31, 5),
  keepAlive: setting<number | false>(30_000, false, 1000, Infinity),
  setup: setting<SetupKind>("none", ...SETUP_KINDS),
  validate: setting<ValidateKind>("none", ...VALIDATE_KINDS),
  echo: fc.option(
    fc.record({
      maxPerHost: fc.constantFrom(Infinity, 2, 1),
      setup: setting<SetupKind>("ok", ...SETUP_KINDS),
      idleTimeout: fc.constantFrom(60_000, Infinity, 5),
    }),
    { nil: undefined, freq: 3 },
  ),
}).map((config) => ({
  ...config,
  minIdlePerHost: Math.min(config.minIdlePerHost, config.maxPerHost, config.maxIdlePerHost),
}));

const leaseIndex = fc.nat({ max: 12 });
/** Mostly addresses that work: the echo, then the others. */
const addressIndex = fc.oneof(
  { weight: 8, arbitrary: fc.constant(0) },
  { weight: 6, arbitrary: fc.nat({ max: MISUSE_ADDRESSES.length - 1 }) },
);
const signalKind: fc.Arbitrary<SignalKind> = fc.oneof(
  { weight: 6, arbitrary: fc.constant<SignalKind>("none") },
  { weight: 2, arbitrary: fc.constantFrom(...SIGNAL_KINDS) },
);
/** Mostly options a careful caller gives (none, or well-formed), now and then a hostile shape. */
const optsKind: fc.Arbitrary<OptsKind> = fc.oneof(
  { weight: 12, arbitrary: fc.constantFrom<OptsKind>("absent", "field") },
  { weight: 4, arbitrary: fc.constantFrom(...OPTS_KINDS) },
);
const chunkKind = fc.constantFrom(...CHUNK_KINDS);

const misuseOp: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 14,
    arbitrary: fc.record({
      op: fc.constant("acquire" as const),
      a: addressIndex,
      signal: signalKind,
      opts: optsKind,
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant("exchange" as const),
      a: addressIndex,
      run: fc.constantFrom(...RUN_KINDS),
      idempotent: fc.constantFrom(true, false, undefined, "yes"),
      signal: signalKind,
      idleTimeout: idleTimeoutValue,
      opts: optsKind,
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("add" as const), a: addressIndex }) },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("warm" as const),
      a: addressIndex,
      n: fc.constantFrom(0, 1, 2, -1, 1.5, NaN, "1", 1e9, Infinity, null),
    }),
  },
  {
    weight: 8,
    arbitrary: fc.record({
      op: fc.constant("retain" as const),
      l: leaseIndex,
      idleTimeout: idleTimeoutValue,
      opts: optsKind,
    }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("release" as const), l: leaseIndex }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("dispose" as const), l: leaseIndex }) },
  {
    weight: 3,
    arbitrary: fc.record({ op: fc.constant("write" as const), l: leaseIndex, chunk: chunkKind }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant("read" as const),
      l: leaseIndex,
      signal: signalKind,
      opts: optsKind,
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ op: fc.constant("unread" as const), l: leaseIndex, chunk: chunkKind }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("closeWrite" as const), l: leaseIndex }) },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("stream" as const),
      l: leaseIndex,
      how: fc.constantFrom(
        "read-cancel" as const,
        "write" as const,
        "close" as const,
        "abort" as const,
      ),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant("peer" as const),
      p: fc.nat({ max: 12 }),
      act: fc.constantFrom("write" as const, "end" as const, "reset" as const),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("gate" as const),
      act: fc.constantFrom("open" as const, "fail" as const),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("drain" as const), a: addressIndex }) },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant("sleep" as const),
      ms: fc.integer({ min: 0, max: 12 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("settle" as const) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("close" as const),
      timeout: fc.constantFrom(undefined, 0, 5, 30, Infinity, -1, NaN, "5"),
      opts: optsKind,
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("foreign" as const),
      how: fc.constantFrom(
        "retain-object" as const,
        "release-null" as const,
        "retain-other-pool" as const,
      ),
    }),
  },
);

/** A connection handle the test holds, with what it knows of it. */
interface Held {
  connection: UpstreamConnection & Partial<Acquired>;
  /** Where it came from: an acquire, an exchange's function, or a hook. */
  kind: "acquire" | "exchange" | "hook";
  /** Borrowed, as far as the test's own calls tell (hook handles never are). */
  live: boolean;
  /** Chunks put back with unread() and not read since. */
  unread: Set<unknown>;
  /** A read was abandoned or the write side closed: retain must not pool it. */
  dirty: boolean;
  /** False once its streams were used: the test no longer knows what is unread. */
  tracked: boolean;
  /** Reads of its own still pending. */
  reads: number;
}

interface Pending {
  what: string;
  settled: boolean;
}

const encoder = new TextEncoder();

function detachedChunk(): Uint8Array {
  const chunk = new Uint8Array(8);
  structuredClone(chunk.buffer, { transfer: [chunk.buffer] });
  return chunk;
}

/** A chunk of the given kind, and what write() must do with it. */
function chunkOf(kind: ChunkKind): { chunk: unknown; expect: Expect } {
  switch (kind) {
    case "bytes":
      return { chunk: encoder.encode("data"), expect: "ok" };
    case "empty":
      return { chunk: new Uint8Array(0), expect: "ok" };
    case "subarray":
      return { chunk: new Uint8Array(64).fill(7).subarray(10, 20), expect: "ok" };
    case "big":
      return { chunk: new Uint8Array(64 * 1024).fill(1), expect: "ok" };
    case "detached":
      return { chunk: detachedChunk(), expect: "TypeError" };
    case "string":
      return { chunk: "data", expect: "TypeError" };
    case "array":
      return { chunk: [1, 2, 3], expect: "TypeError" };
    case "dataview":
      return { chunk: new DataView(new ArrayBuffer(4)), expect: "TypeError" };
    case "proxy":
      return { chunk: new Proxy(new Uint8Array(4), {}), expect: "TypeError" };
    case "null":
      return { chunk: null, expect: "TypeError" };
  }
}

/**
 * An options object of the given shape around `fields` (each with what it
 * alone must get), and what the call must do with it: "ok", or the classes
 * it may fail with.
 */
function optionsOf(
  kind: OptsKind,
  fields: Record<string, { value: unknown; expect: Expect }>,
): { options: unknown; expects: Set<Expect> } {
  const values: Record<string, unknown> = {};
  const expects = new Set<Expect>();
  for (const [name, field] of Object.entries(fields)) {
    if (field.value === undefined) continue;
    values[name] = field.value;
    if (field.expect !== "ok") expects.add(field.expect);
  }
  const first = Object.keys(fields)[0] ?? "signal";
  switch (kind) {
    case "absent":
      return { options: undefined, expects: new Set() };
    case "empty":
      return { options: {}, expects: new Set() };
    case "field":
      return { options: values, expects };
    case "null":
      return { options: null, expects: new Set(["TypeError"]) };
    case "number":
      return { options: 5, expects: new Set(["TypeError"]) };
    case "array":
      return { options: [], expects: new Set(["TypeError"]) };
    case "map":
      return { options: new Map(Object.entries(values)), expects: new Set(["TypeError"]) };
    case "inherited":
      return { options: Object.create(values), expects: new Set(["TypeError"]) };
    case "unknown-key":
      return { options: { ...values, sigal: 1 }, expects: new Set(["TypeError"]) };
    case "throwing-getter": {
      const options = { ...values };
      Object.defineProperty(options, first, {
        get() {
          throw new Hostile(`getter of ${first}`);
        },
        enumerable: true,
      });
      return { options, expects: new Set(["Hostile"]) };
    }
    case "proxy-throwing-keys":
      return {
        options: new Proxy({ ...values }, {
          ownKeys() {
            throw new Hostile("ownKeys trap");
          },
        }),
        expects: new Set(["Hostile"]),
      };
  }
}

function expectMs(value: unknown): { value: unknown; expect: Expect } {
  return { value, expect: expectOption("ms>=0", value) };
}

class MisuseWorld {
  readonly transport = new CountingTransport(false);
  readonly ledger = new EventLedger();
  readonly pool: ConnectionPool;
  readonly problems: string[];
  readonly held: Held[] = [];
  readonly pending: Pending[] = [];
  /** Abort reasons handed to the pool: passed on as they are. */
  readonly reasons: unknown[] = [];
  readonly gates: Array<{ resolve(): void; reject(error: unknown): void }> = [];
  readonly config: MisuseConfig;
  readonly log: string[] = [];
  #acquiring = 0;
  readonly #exchanges: Array<{ settled: boolean; inRun: boolean }> = [];
  #flaky = 0;
  #other: { pool: ConnectionPool; lease?: Acquired } | undefined;

  constructor(config: MisuseConfig, problems: string[]) {
    this.config = config;
    this.problems = problems;
    const listen = (
      i: number,
      handler: (peer: MemoryPeer) => unknown,
      accept?: () => Promise<void> | void,
    ) => this.transport.listen(MISUSE_ADDRESSES[i] as never, handler, accept);
    listen(0, (peer) => peer.echo());
    listen(1, (peer) => {
      peer.write("hi");
      return peer.echo();
    });
    listen(
      2,
      (peer) => peer.echo(),
      () => new Promise<void>((resolve, reject) => this.gates.push({ resolve, reject })),
    );
    listen(5, (peer) => peer.echo(), () => {
      if (this.#flaky++ % 2 === 1) {
        throw Object.assign(new Error("connection reset"), { code: "ECONNRESET" });
      }
    });
    listen(6, (peer) => peer.echo());
    listen(7, (peer) => peer.echo());
    const { setup, validate, echo, ...policy } = config;
    this.pool = new ConnectionPool({
      ...policy,
      transport: this.transport,
      onEvent: this.ledger.onEvent,
      ...this.#setup(setup),
      ...this.#validate(validate),
      ...(echo === undefined ? {} : {
        perAddress: [{
          address: MISUSE_ADDRESSES[0],
          maxPerHost: Math.max(echo.maxPerHost, config.minIdlePerHost),
          idleTimeout: echo.idleTimeout,
          ...this.#setup(echo.setup),
        }],
      }),
    });
  }

  #setup(kind: SetupKind): { setup?: (connection: UpstreamConnection) => Promise<void> | void } {
    const pool = (): ConnectionPool => this.pool;
    switch (kind) {
      case "none":
        return {};
      case "ok":
        return { setup: () => {} };
      case "ping":
        return {
          setup: async (connection) => {
            await exchangeText(connection, "ping");
          },
        };
      case "throw":
        return {
          setup: () => {
            throw new Hostile("setup");
          },
        };
      case "reject":
        return { setup: () => Promise.reject(new Hostile("setup")) };
      case "hang":
        return { setup: () => new Promise<void>(() => {}) };
      case "slow":
        return { setup: () => sleep(4) };
      case "unread":
        return {
          setup: async (connection) => {
            await connection.write(encoder.encode("u"));
            await sleep(2);
          },
        };
      case "release-self":
        return { setup: (connection) => pool().release(connection) };
      case "close-write":
        return { setup: (connection) => connection.closeWrite() };
      case "capture":
        return {
          setup: (connection) => {
            this.held.push(newHeld(connection, "hook", false));
          },
        };
      case "state":
        return {
          setup: (connection) => {
            connection.state = { db: 2 };
          },
        };
    }
  }

  #validate(
    kind: ValidateKind,
  ): { validate?: (connection: UpstreamConnection) => Promise<boolean> | boolean } {
    switch (kind) {
      case "none":
        return {};
      case "true":
        return { validate: () => true };
      case "false":
        return { validate: () => false };
      case "throw":
        return {
          validate: () => {
            throw new Hostile("validate");
          },
        };
      case "hang":
        return { validate: () => new Promise<boolean>(() => {}) };
      case "non-boolean":
        return { validate: () => "yes" as unknown as boolean };
      case "ping":
        return {
          validate: async (connection) => (await exchangeText(connection, "ping")) !== undefined,
        };
      case "slow":
        return { validate: () => sleep(4).then(() => true) };
    }
  }

  /** Watches a promise from the pool: it must settle (by the end), and how it settles is checked. */
  #track<T>(what: string, call: () => Promise<T>, check: (outcome: Settled<T>) => void): void {
    const entry: Pending = { what, settled: false };
    this.pending.push(entry);
    callAsync(what, this.problems, call).then((outcome) => {
      entry.settled = true;
      if (DEBUG) {
        this.log.push(
          `  ${what} -> ${outcome.ok ? "ok" : describeError(outcome.error).slice(0, 80)}`,
        );
      }
      try {
        check(outcome);
      } catch (error) {
        this.problems.push(`${what}: the check threw ${describeError(error)}`);
      }
    });
  }

  #problem(what: string, error: unknown, allowed: Allowed): void {
    const problem = errorProblem(what, error, { ...allowed, reasons: this.reasons });
    if (problem !== undefined) this.problems.push(problem);
  }

  #signal(kind: SignalKind): { value: unknown; expect: Expect } {
    if (kind === "none") return { value: undefined, expect: "ok" };
    if (kind === "not-a-signal") return { value: { aborted: false }, expect: "TypeError" };
    const controller = new AbortController();
    const reason = new Error(`aborted (${kind})`);
    this.reasons.push(reason);
    if (kind === "pre") controller.abort(reason);
    else if (kind === "micro") queueMicrotask(() => controller.abort(reason));
    else real.setTimeout(() => controller.abort(reason), kind === "soon" ? 3 : 40);
    return { value: controller.signal, expect: "ok" };
  }

  /** Hand-outs seen per connection id. */
  readonly #uses = new Map<number, number>();
  /** The idle deadline each pooled connection was retained with. */
  readonly #idleDeadlines = new Map<number, number>();

  /** idleTimeout of an address key, after its own options. */
  #idleTimeout(key: string): number {
    const echo = this.config.echo;
    return key === "echo.prop:1" && echo !== undefined ? echo.idleTimeout : this.config.idleTimeout;
  }

  /** A connection was retained (by the test, or by exchange()) with these options. */
  #retainedWith(connection: UpstreamConnection, idleTimeout: unknown, opts: OptsKind): void {
    const asked = opts === "field" && typeof idleTimeout === "number" && idleTimeout >= 0
      ? idleTimeout
      : Infinity;
    this.#idleDeadlines.set(
      connection.id,
      Math.min(asked, this.#idleTimeout(connection.address.key)),
    );
  }

  /**
   * Issues 10 and 11, at every hand-out: created on the first one only, with
   * idleMs 0; idleMs never at or past the connection's idle deadline; no
   * more hand-outs than maxUses; never older than maxLifetime.
   */
  #handedOut(connection: UpstreamConnection, acquired: Acquired | undefined): void {
    const id = connection.id;
    const uses = (this.#uses.get(id) ?? 0) + 1;
    this.#uses.set(id, uses);
    if (uses > this.config.maxUses) {
      this.problems.push(
        `connection ${id} handed out ${uses} times, maxUses is ${this.config.maxUses}`,
      );
    }
    const openedAt = this.ledger.openedAt.get(id);
    if (openedAt !== undefined && Date.now() - openedAt > this.config.maxLifetime + 2) {
      this.problems.push(
        `connection ${id} handed out ${
          Date.now() - openedAt
        } ms after it opened, maxLifetime is ${this.config.maxLifetime}`,
      );
    }
    if (acquired === undefined) return;
    if (acquired.created !== (uses === 1)) {
      this.problems.push(`connection ${id}: created is ${acquired.created} on hand-out ${uses}`);
    }
    // Not "0 on the first hand-out", as the JSDoc says: a connection that add()
    // or warm() opened reports the time it sat idle (left to the lead).
    if (!(acquired.idleMs >= 0) || !Number.isFinite(acquired.idleMs)) {
      this.problems.push(`connection ${id}: idleMs ${acquired.idleMs}`);
    }
    const deadline = this.#idleDeadlines.get(id) ?? this.#idleTimeout(connection.address.key);
    if (acquired.idleMs >= deadline) {
      this.problems.push(
        `connection ${id} handed out after ${acquired.idleMs} ms idle, its deadline was ${deadline} ms`,
      );
    }
  }

  /** maxPerHost of an address, after its own options. */
  #maxPerHost(a: number): number {
    const echo = this.config.echo;
    return a === 0 && echo !== undefined
      ? Math.max(echo.maxPerHost, this.config.minIdlePerHost)
      : this.config.maxPerHost;
  }

  /** The handle `l` places back from the newest (fast-check favours small `l`: recent handles). */
  #held(l: number): Held | undefined {
    const count = this.held.length;
    return count === 0 ? undefined : this.held[count - 1 - (l % count)];
  }

  async step(op: Op): Promise<void> {
    this.log.push(fc.stringify(op));
    this.#apply(op);
    if (op.op === "sleep") await sleep(op.ms);
    await macrotask();
    this.check(`after step ${this.log.length} (${op.op})`);
  }

  #apply(op: Op): void {
    const pool = this.pool;
    switch (op.op) {
      case "acquire": {
        const signal = this.#signal(op.signal);
        const { options, expects } = optionsOf(op.opts, { signal });
        const closed = pool.closed;
        const preAborted = op.signal === "pre" && op.opts === "field";
        this.#acquiring++;
        this.#track(
          `acquire(${op.a})`,
          () => pool.acquire(MISUSE_ADDRESSES[op.a] as never, options as never),
          (outcome) => {
            this.#acquiring--;
            if (outcome.ok) {
              this.held.push(newHeld(outcome.value.connection, "acquire", true));
              this.#handedOut(outcome.value.connection, outcome.value);
              if (expects.size > 0) {
                this.problems.push(
                  `acquire accepted options that must fail: ${[...expects]}`,
                );
              }
              if (NEVER_CONNECTS.has(op.a)) {
                this.problems.push(
                  `acquire got a connection to ${JSON.stringify(MISUSE_ADDRESSES[op.a])}`,
                );
              }
              if (closed) this.problems.push("acquire succeeded on a closed pool");
              return;
            }
            if (expects.size > 0) {
              if (![...expects].some((expect) => matches(outcome.error, expect))) {
                this.problems.push(
                  `acquire with bad options: ${describeError(outcome.error)}, expected ${[
                    ...expects,
                  ]}`,
                );
              }
              return;
            }
            if (
              closed &&
              !(outcome.error instanceof PoolError && outcome.error.code === "POOL_CLOSED")
            ) {
              this.problems.push(`acquire on a closed pool: ${describeError(outcome.error)}`);
            }
            if (!closed && preAborted && !this.reasons.includes(outcome.error)) {
              this.problems.push(`acquire with an aborted signal: ${describeError(outcome.error)}`);
            }
            this.#problem("acquire", outcome.error, {
              codes: ["POOL_CLOSED", "QUEUE_FULL", "ACQUIRE_TIMEOUT", ...CONNECT_CODES],
            });
          },
        );
        break;
      }
      case "exchange": {
        const signal = this.#signal(op.signal);
        const { options, expects } = optionsOf(op.opts, {
          signal,
          idempotent: {
            value: op.idempotent,
            expect: op.idempotent === undefined || typeof op.idempotent === "boolean"
              ? "ok"
              : "TypeError",
          },
          idleTimeout: expectMs(op.idleTimeout),
        });
        const record = { settled: false, inRun: false };
        this.#exchanges.push(record);
        this.#track(
          `exchange(${op.a}, ${op.run})`,
          () =>
            pool.exchange(MISUSE_ADDRESSES[op.a] as never, async (connection) => {
              record.inRun = true;
              const held = newHeld(connection, "exchange", true);
              this.#handedOut(connection, undefined);
              this.held.push(held);
              try {
                const value = await this.#run(op.run, connection, held);
                if (held.live) this.#retainedWith(connection, op.idleTimeout, op.opts);
                return value;
              } finally {
                record.inRun = false;
                held.live = false;
              }
            }, options as never),
          (outcome) => {
            record.settled = true;
            if (outcome.ok) {
              if (outcome.value !== "done") {
                this.problems.push(
                  `exchange resolved with ${String(outcome.value)}`,
                );
              }
              if (expects.size > 0) {
                this.problems.push(
                  `exchange accepted options that must fail: ${[...expects]}`,
                );
              }
              return;
            }
            if (expects.size > 0 && !record.inRun) {
              if (![...expects].some((expect) => matches(outcome.error, expect))) {
                this.problems.push(
                  `exchange with bad options: ${describeError(outcome.error)}, expected ${[
                    ...expects,
                  ]}`,
                );
              }
              return;
            }
            this.#problem("exchange", outcome.error, { anything: true });
          },
        );
        break;
      }
      case "add":
        this.#track(`add(${op.a})`, () => pool.add(MISUSE_ADDRESSES[op.a] as never), (outcome) => {
          if (!outcome.ok) {
            this.#problem("add", outcome.error, {
              codes: ["LIMIT_REACHED", "POOL_CLOSED", ...CONNECT_CODES],
            });
          } else if (NEVER_CONNECTS.has(op.a)) {
            this.problems.push("add connected to an address nobody listens on");
          }
        });
        break;
      case "warm":
        this.#track(
          `warm(${op.a}, ${String(op.n)})`,
          () => pool.warm(MISUSE_ADDRESSES[op.a] as never, op.n as number),
          (outcome) => {
            if (!outcome.ok) {
              this.#problem("warm", outcome.error, {
                codes: ["LIMIT_REACHED", "POOL_CLOSED", ...CONNECT_CODES],
                argument: typeof op.n !== "number" || !Number.isInteger(op.n) || op.n < 0 ||
                  op.n >
                    Math.min(
                      this.#maxPerHost(op.a),
                      this.config.maxIdlePerHost,
                      this.config.maxIdle,
                    ),
              });
            }
          },
        );
        break;
      case "retain":
      case "release": {
        const held = this.#held(op.l);
        if (held === undefined) break;
        const { options, expects } = op.op === "retain"
          ? optionsOf(op.opts, { idleTimeout: expectMs(op.idleTimeout) })
          : { options: undefined, expects: new Set<Expect>() };
        const before = pool.stats();
        const outcome = callSync(() =>
          op.op === "retain"
            ? pool.retain(held.connection, options as never)
            : pool.release(held.connection)
        );
        this.#givenBack(op.op, held, outcome, expects, before);
        if (op.op === "retain" && outcome.ok && outcome.value === true) {
          this.#retainedWith(held.connection, op.idleTimeout, op.opts);
        }
        if (DEBUG) {
          this.log.push(
            `  ${op.op} -> ${
              outcome.ok ? String(outcome.value) : describeError(outcome.error).slice(0, 80)
            }`,
          );
        }
        break;
      }
      case "dispose": {
        const held = this.#held(op.l);
        const dispose = held?.connection[Symbol.asyncDispose];
        if (held === undefined || dispose === undefined) break;
        const wasLive = held.live && held.kind !== "hook";
        this.#track("dispose", () => dispose.call(held.connection) as Promise<void>, (outcome) => {
          if (!outcome.ok) this.#problem("dispose", outcome.error, {});
        });
        if (wasLive) held.live = false; // released at once, synchronously
        break;
      }
      case "write": {
        const held = this.#held(op.l);
        if (held === undefined) break;
        const { chunk, expect } = chunkOf(op.chunk);
        const live = held.live && held.kind !== "hook";
        this.#track(
          `write(${op.chunk})`,
          () => held.connection.write(chunk as Uint8Array),
          (outcome) => {
            if (expect !== "ok") {
              if (outcome.ok || !matches(outcome.error, expect)) {
                this.problems.push(
                  `write of a ${op.chunk} chunk: ${
                    outcome.ok ? "resolved" : describeError(outcome.error)
                  }, expected ${expect}`,
                );
              }
              return;
            }
            if (outcome.ok) {
              if (!live && held.kind !== "hook") {
                this.problems.push(
                  "write on a connection given back resolved",
                );
              }
              return;
            }
            this.#problem("write", outcome.error, {
              codes: live || held.kind === "hook"
                ? ["CONNECTION_LOST", "LEASE_ENDED"]
                : ["LEASE_ENDED"],
            });
          },
        );
        break;
      }
      case "read": {
        const held = this.#held(op.l);
        if (held === undefined) break;
        const signal = this.#signal(op.signal);
        const { options, expects } = optionsOf(op.opts, { signal });
        const live = held.live && held.kind !== "hook";
        const another = held.reads > 0;
        held.reads++;
        this.#track(
          `read(${op.signal}, ${op.opts})`,
          () => held.connection.read(options as never),
          (outcome) => {
            held.reads--;
            if (outcome.ok) {
              const chunk = outcome.value;
              if (chunk !== null && !(chunk instanceof Uint8Array)) {
                this.problems.push(
                  `read resolved with ${typeof chunk}`,
                );
              }
              held.unread.delete(chunk);
              if (expects.size > 0) {
                this.problems.push(
                  `read accepted options that must fail: ${[...expects]}`,
                );
              }
              if (!live && held.kind !== "hook") {
                this.problems.push(
                  "read on a connection given back resolved",
                );
              }
              return;
            }
            if (this.reasons.includes(outcome.error)) {
              held.dirty = true;
              return;
            }
            if (
              expects.size > 0 && [...expects].some((expect) => matches(outcome.error, expect))
            ) return;
            if (
              expects.size > 0 && outcome.error instanceof PoolError &&
              outcome.error.code === "LEASE_ENDED"
            ) return;
            if (expects.size > 0) {
              this.problems.push(
                `read with bad options: ${describeError(outcome.error)}, expected ${[...expects]}`,
              );
              return;
            }
            this.#problem("read", outcome.error, {
              codes: live || held.kind === "hook"
                ? ["CONNECTION_LOST", "LEASE_ENDED"]
                : ["LEASE_ENDED"],
              argument: another || held.kind === "exchange", // its function may be reading too
            });
          },
        );
        break;
      }
      case "unread": {
        const held = this.#held(op.l);
        if (held === undefined) break;
        const { chunk, expect } = chunkOf(op.chunk);
        const outcome = callSync(() => held.connection.unread(chunk as Uint8Array));
        const live = held.live && held.kind !== "hook";
        if (outcome.ok) {
          if (expect !== "ok") {
            this.problems.push(`unread of a ${op.chunk} chunk was accepted`);
          }
          if (!live && held.kind !== "hook") {
            this.problems.push("unread on a connection given back was accepted");
          }
          if ((chunk as Uint8Array).length > 0) held.unread.add(chunk);
        } else if (expect !== "ok") {
          if (!matches(outcome.error, expect)) {
            this.problems.push(`unread of a ${op.chunk} chunk: ${describeError(outcome.error)}`);
          }
        } else {
          this.#problem("unread", outcome.error, { codes: live ? [] : ["LEASE_ENDED"] });
        }
        break;
      }
      case "closeWrite": {
        const held = this.#held(op.l);
        if (held === undefined) break;
        const live = held.live && held.kind !== "hook";
        if (live) held.dirty = true;
        this.#track("closeWrite", () => held.connection.closeWrite(), (outcome) => {
          if (!outcome.ok) {
            this.#problem("closeWrite", outcome.error, {
              codes: live || held.kind === "hook"
                ? ["CONNECTION_LOST", "LEASE_ENDED"]
                : ["LEASE_ENDED"],
            });
          } else if (!live && held.kind !== "hook") {
            this.problems.push("closeWrite on a connection given back resolved");
          }
        });
        break;
      }
      case "stream": {
        const held = this.#held(op.l);
        if (held === undefined) break;
        held.tracked = false;
        const connection = held.connection;
        this.#track(`stream(${op.how})`, async () => {
          if (op.how === "read-cancel") {
            const readable = connection.readable;
            if (readable.locked) return;
            const reader = readable.getReader();
            const read = reader.read().catch(() => {}); // errored, if the lease ended
            await macrotask();
            await reader.cancel().catch(() => {}); // rejects once the stream errored
            await read;
            reader.releaseLock();
            return;
          }
          const writable = connection.writable;
          if (writable.locked) return;
          const writer = writable.getWriter();
          try {
            if (op.how === "write") await writer.write(encoder.encode("w"));
            else if (op.how === "close") await writer.close();
            else await writer.abort(new Error("abort"));
          } finally {
            writer.releaseLock();
          }
        }, (outcome) => {
          if (!outcome.ok) this.#problem("stream", outcome.error, { anything: true });
        });
        break;
      }
      case "peer": {
        const peers = this.transport.peers;
        if (peers.length === 0) break;
        const peer = peers[op.p % peers.length]!;
        if (op.act === "write") peer.write("stray");
        else if (op.act === "end") peer.end();
        else peer.reset();
        break;
      }
      case "gate":
        for (const gate of this.gates.splice(0)) {
          if (op.act === "open") gate.resolve();
          else gate.reject(Object.assign(new Error("connection reset"), { code: "ECONNRESET" }));
        }
        break;
      case "drain": {
        const outcome = callSync(() => pool.drain(MISUSE_ADDRESSES[op.a] as never));
        if (!outcome.ok) this.problems.push(`drain threw ${describeError(outcome.error)}`);
        break;
      }
      case "sleep":
        break;
      case "settle":
        this.#track("settle", () => this.transport.settle(), () => {});
        break;
      case "close":
        this.#close(op);
        break;
      case "foreign":
        this.#foreign(op.how);
        break;
    }
  }

  #close(op: { timeout: unknown; opts: OptsKind }): void {
    const { options, expects } = optionsOf(op.opts, { timeout: expectMs(op.timeout) });
    const wasClosed = this.pool.closed;
    let timed = false;
    this.#track(`close(${String(op.timeout)})`, () => {
      const closing = this.pool.close(options as never);
      timed = expects.size === 0 && typeof op.timeout === "number" && op.opts === "field";
      if (expects.size > 0 && this.pool.closed !== wasClosed) {
        this.problems.push("close() with bad options closed the pool");
      }
      if (expects.size === 0 && !this.pool.closed) {
        this.problems.push("close() did not close the pool");
      }
      return closing;
    }, (outcome) => {
      if (outcome.ok) {
        if (expects.size > 0) {
          this.problems.push(`close accepted options that must fail: ${[...expects]}`);
        }
        // Whoever had not given a connection back by the timeout has lost it.
        if (timed) { for (const held of this.held) held.live = false; }
        return;
      }
      if (![...expects].some((expect) => matches(outcome.error, expect))) {
        this.problems.push(`close: ${describeError(outcome.error)}, expected ${[...expects]}`);
      }
    });
  }

  #foreign(how: "retain-object" | "release-null" | "retain-other-pool"): void {
    const pool = this.pool;
    const before = pool.stats();
    if (how === "retain-other-pool") {
      if (this.#other === undefined) {
        const transport = new CountingTransport(true);
        const other: { pool: ConnectionPool; lease?: Acquired } = {
          pool: new ConnectionPool({ transport }),
        };
        this.#other = other;
        this.#track(
          "acquire (other pool)",
          () => other.pool.acquire({ hostname: "other.prop", port: 1 }),
          (outcome) => {
            if (outcome.ok) other.lease = outcome.value;
          },
        );
        return;
      }
      const lease = this.#other.lease;
      if (lease === undefined) return;
      const outcome = callSync(() => pool.retain(lease.connection));
      if (
        outcome.ok || !(outcome.error instanceof PoolError && outcome.error.code === "NOT_BORROWED")
      ) {
        this.problems.push(
          `retain of another pool's connection: ${
            outcome.ok ? "accepted" : describeError(outcome.error)
          }`,
        );
      }
    } else {
      const outcome = callSync(() =>
        how === "retain-object" ? pool.retain({} as never) : pool.release(null as never)
      );
      const expected = how === "retain-object" ? "NOT_BORROWED" : "TypeError";
      if (
        outcome.ok ||
        !(expected === "TypeError"
          ? outcome.error instanceof TypeError
          : outcome.error instanceof PoolError && outcome.error.code === expected)
      ) {
        this.problems.push(`${how}: ${outcome.ok ? "accepted" : describeError(outcome.error)}`);
      } else this.#problem(how, outcome.error, { codes: ["NOT_BORROWED"], argument: true });
    }
    this.#unchanged(how, before);
  }

  /** What retain and release must do, by what the test knows of the connection. */
  #givenBack(
    verb: "retain" | "release",
    held: Held,
    outcome: Settled<unknown>,
    expects: Set<Expect>,
    before: PoolStats,
  ): void {
    const live = held.live && held.kind !== "hook";
    if (expects.size > 0) {
      if (outcome.ok) {
        this.problems.push(`${verb} accepted options that must fail: ${[...expects]}`);
      } else if (![...expects].some((expect) => matches(outcome.error, expect))) {
        this.problems.push(`${verb} with bad options: ${describeError(outcome.error)}`);
      } else this.#unchanged(`${verb} with bad options`, before);
      return;
    }
    if (!live) {
      if (outcome.ok) {
        this.problems.push(`${verb} of a connection not borrowed (${held.kind}) was accepted`);
      } else if (!(outcome.error instanceof PoolError && outcome.error.code === "NOT_BORROWED")) {
        this.problems.push(`${verb} of a connection not borrowed: ${describeError(outcome.error)}`);
      } else {
        this.#problem(verb, outcome.error, { codes: ["NOT_BORROWED"] });
        this.#unchanged(`${verb} of a connection not borrowed`, before);
      }
      return;
    }
    if (!outcome.ok) {
      this.problems.push(`${verb} of a borrowed connection threw ${describeError(outcome.error)}`);
      return;
    }
    held.live = false;
    if (verb === "retain") {
      if (typeof outcome.value !== "boolean") {
        this.problems.push(`retain returned ${String(outcome.value)}`);
      }
      const mustDrop = held.tracked && (held.dirty || held.unread.size > 0);
      if (outcome.value === true && mustDrop) {
        this.problems.push(
          `retain pooled a connection with ${held.unread.size} chunks put back unread${
            held.dirty ? ", a read abandoned or its write side closed" : ""
          }`,
        );
      }
      if (outcome.value === true && this.pool.closed) {
        this.problems.push("retain pooled a connection in a closed pool");
      }
    }
  }

  #unchanged(what: string, before: PoolStats): void {
    try {
      assert.deepEqual(this.pool.stats(), before);
    } catch {
      this.problems.push(`${what} changed stats()`);
    }
  }

  async #run(kind: RunKind, connection: UpstreamConnection, held: Held): Promise<string> {
    switch (kind) {
      case "echo":
        await exchangeText(connection, "ping");
        return "done";
      case "throw":
        throw new Hostile("exchange function");
      case "noread":
        await connection.write(encoder.encode("n"));
        return "done";
      case "release":
        this.pool.release(connection);
        held.live = false;
        return "done";
      case "retain":
        this.pool.retain(connection);
        held.live = false;
        return "done";
      case "capture-slow":
        await sleep(4);
        return "done";
      case "read-abort": {
        const reason = new Error("aborted (exchange)");
        this.reasons.push(reason);
        await connection.read({ signal: AbortSignal.abort(reason) });
        return "done";
      }
      case "write-detached":
        await connection.write(detachedChunk());
        return "done";
      case "close-write":
        await connection.closeWrite();
        return "done";
      case "unread": {
        await connection.write(encoder.encode("u"));
        const chunk = await readWithin(connection, 200);
        if (chunk instanceof Uint8Array) connection.unread(chunk);
        return "done";
      }
    }
  }

  /** The invariants of stats() against the transport, the events and the test's own bookkeeping. */
  check(when: string): void {
    const stats = this.pool.stats();
    const problems = [...statsProblems(stats, this.transport), ...this.ledger.check(stats)];
    const borrowed = this.held.filter((held) => held.live && held.kind !== "hook").length;
    if (stats.borrowed !== borrowed) {
      problems.push(`stats().borrowed is ${stats.borrowed}, the test holds ${borrowed}`);
    }
    const waiting = this.#acquiring +
      this.#exchanges.filter((record) => !record.settled && !record.inRun).length;
    if (stats.waiting !== waiting) {
      problems.push(`stats().waiting is ${stats.waiting}, ${waiting} acquires are pending`);
    }
    if (stats.closed !== this.pool.closed) {
      problems.push("stats().closed disagrees with pool.closed");
    }
    const ids = this.held.filter((held) => held.live && held.kind !== "hook").map((held) =>
      held.connection.id
    );
    if (new Set(ids).size !== ids.length) problems.push(`two borrowed handles share an id: ${ids}`);
    const config = this.config;
    let total = 0;
    for (const [key, counts] of Object.entries(stats.byAddress)) {
      const open = sockets(counts) + counts.connecting;
      total += open;
      const limit = this.#maxPerHost(key === "echo.prop:1" ? 0 : 1);
      if (open > limit) problems.push(`${key} has ${open} connections, maxPerHost is ${limit}`);
    }
    if (total > config.maxTotal) {
      problems.push(`${total} connections, maxTotal is ${config.maxTotal}`);
    }
    for (const problem of problems) this.problems.push(`${when}: ${problem}`);
  }

  /** Closes the pool, gives everything back, and checks that nothing is left. */
  async finish(timers: TimerWatch): Promise<void> {
    if (!this.pool.closed) {
      const closing = await within(
        callAsync("close", this.problems, () => this.pool.close()),
        3_000,
        "close()",
      );
      if (!closing.ok) this.problems.push(`close() failed: ${describeError(closing.error)}`);
    }
    for (const held of this.held) {
      if (!held.live || held.kind !== "acquire") continue;
      const outcome = callSync(() => this.pool.release(held.connection));
      if (!outcome.ok) this.problems.push(`release at the end: ${describeError(outcome.error)}`);
      held.live = false;
    }
    for (const gate of this.gates.splice(0)) gate.resolve();
    const deadline = Date.now() + 3_000;
    while (this.pending.some((entry) => !entry.settled) && Date.now() < deadline) await sleep(2);
    const hung = this.pending.filter((entry) => !entry.settled).map((entry) => entry.what);
    if (hung.length > 0) this.problems.push(`never settled after close(): ${hung.join(", ")}`);
    if (this.#other !== undefined) {
      if (this.#other.lease !== undefined) this.#other.pool.release(this.#other.lease.connection);
      await this.#other.pool.close();
    }
    this.problems.push(...await leftovers(this.pool, this.transport, timers, this.ledger));
  }
}

function newHeld(connection: UpstreamConnection, kind: Held["kind"], live: boolean): Held {
  return { connection, kind, live, unread: new Set(), dirty: false, tracked: true, reads: 0 };
}

/** A read that gives up after `ms` (the connection is then not reusable): a chunk, null, or undefined. */
async function readWithin(
  connection: UpstreamConnection,
  ms: number,
): Promise<Uint8Array | null | undefined> {
  const controller = new AbortController();
  const timer = real.setTimeout(() => controller.abort(new Error("read timed out")), ms);
  try {
    return await connection.read({ signal: controller.signal });
  } catch (error) {
    if (error instanceof PoolError) throw error;
    return undefined;
  } finally {
    real.clearTimeout(timer);
  }
}

/** Writes `text` and reads its echo (or what comes within 200 ms); undefined if nothing did. */
async function exchangeText(
  connection: UpstreamConnection,
  text: string,
): Promise<string | undefined> {
  await connection.write(encoder.encode(text));
  let received = "";
  while (!received.endsWith(text)) {
    const chunk = await readWithin(connection, 200);
    if (chunk === undefined) return undefined;
    if (chunk === null) return received;
    received += new TextDecoder().decode(chunk);
  }
  return received;
}

async function checkMisuse({ config, ops }: { config: MisuseConfig; ops: Op[] }): Promise<void> {
  await watched(async (timers, problems) => {
    const world = new MisuseWorld(config, problems);
    try {
      for (const op of ops) {
        await world.step(op);
        if (problems.length > 0) break;
      }
      await world.finish(timers);
      // Timers armed in all: a few per step and per connect (warm(address, 1e9) with
      // no limit opens 200 a second); a re-arming storm would be thousands more.
      const { created, failed } = world.pool.stats().totals;
      if (timers.set > 100 + 20 * ops.length + 4 * (created + failed)) {
        problems.push(
          `${timers.set} timers armed in ${ops.length} steps, ${
            created + failed
          } connects: a storm`,
        );
      }
      if (DEBUG) {
        if (DEBUG_STEPS) console.log(world.log.join("\n"));
        const stats = world.pool.stats();
        console.log(
          `run: ${ops.length} ops, ${world.held.length} handles, created ${stats.totals.created}, ` +
            `reused ${stats.totals.reused}, failed ${stats.totals.failed}, closes ${
              CLOSE_TOTALS.map((field) => `${field} ${stats.totals[field]}`).join(" ")
            }, ${timers.set} timers`,
        );
      }
    } finally {
      if (problems.length > 0) {
        problems.push(`steps:\n    ${world.log.join("\n    ")}`);
      }
    }
    assertNone(problems, "misuse");
  });
}

// ---------------------------------------------------------------------------
// Property 6: real sockets

/**
 * Writes a chunk of each kind to a loopback echo server through the
 * runtime's own transport: a good chunk goes through, a bad one is refused
 * with the TypeError the memory transport gets, and either way the
 * connection is still clean (a round trip works, retain pools it); a stale
 * handle gets LEASE_ENDED. Then close() leaves no socket open on the
 * server's side and no timer.
 */
async function checkLoopback(
  upstream: TestUpstream,
  steps: Array<{ chunk: ChunkKind; then: "retain" | "release" | "stale" }>,
): Promise<void> {
  await watched(async (timers, problems) => {
    const pool = new ConnectionPool();
    for (const [i, step] of steps.entries()) {
      const { connection } = await pool.acquire(upstream.address);
      const { chunk, expect } = chunkOf(step.chunk);
      const wrote = await callAsync("write", problems, () => connection.write(chunk as Uint8Array));
      if (expect === "ok") {
        if (!wrote.ok) {
          problems.push(`step ${i}: write of a ${step.chunk} chunk: ${describeError(wrote.error)}`);
        } else if (step.chunk !== "empty") {
          // The echo of it comes back whole.
          const length = (chunk as Uint8Array).length;
          let received = 0;
          while (received < length) {
            const got = await readWithin(connection, 2_000);
            if (!(got instanceof Uint8Array)) break;
            received += got.length;
          }
          if (received !== length) {
            problems.push(`step ${i}: ${received} of ${length} bytes echoed`);
          }
        }
      } else if (wrote.ok || !matches(wrote.error, expect)) {
        problems.push(
          `step ${i}: write of a ${step.chunk} chunk: ${
            wrote.ok ? "resolved" : describeError(wrote.error)
          }, expected ${expect}`,
        );
      }
      const reply = await roundTrip(connection, `check ${i}`);
      if (reply !== `check ${i}`) {
        problems.push(
          `step ${i}: after a ${step.chunk} chunk, the round trip gave ${describeError(reply)}`,
        );
      }
      if (step.then === "release") pool.release(connection);
      else if (!pool.retain(connection)) {
        problems.push(`step ${i}: retain after a ${step.chunk} chunk dropped it`);
      }
      if (step.then === "stale") {
        const stale = await callAsync(
          "write",
          problems,
          () => connection.write(encoder.encode("x")),
        );
        if (stale.ok || !(stale.error instanceof PoolError && stale.error.code === "LEASE_ENDED")) {
          problems.push(
            `step ${i}: a write on a stale handle: ${
              stale.ok ? "resolved" : describeError(stale.error)
            }`,
          );
        }
      }
    }
    await pool.close();
    await within(upstream.waitForOpen(0), 2_000, "the server's sockets to close");
    for (let i = 0; i < 20 && timers.live.size > 0; i++) await quiesce(1);
    if (timers.live.size > 0) {
      problems.push(`after close(): timers left: ${[...timers.live.values()].join(", ")}`);
    }
    if (timers.badDelays.length > 0) {
      problems.push(`bad timer delays: ${timers.badDelays.join(", ")}`);
    }
    assertNone(problems, `loopback (${runtime})`);
  });
}

// ---------------------------------------------------------------------------
// The properties

describe("property: addresses", () => {
  propertyTest(
    "any address: a connection to its key, or the same TypeError/RangeError from every method",
    async () => {
      await property("any address", 150, anyAddress, checkAddress);
    },
  );

  propertyTest("well-formed addresses are accepted, with one key for equal spellings", async () => {
    await property(
      "well-formed addresses",
      300,
      fc.record({ hostname: validHostname, port: validPort }),
      ({ hostname, port }) => {
        const resolved = resolveAddress({ hostname, port });
        assert.equal(resolved.kind, "tcp");
        if (resolved.kind !== "tcp") return;
        assert.equal(resolved.port, Number(port));
        // The key resolves to itself: the normal form is stable.
        assert.equal(
          resolveAddress({ hostname: resolved.hostname, port: resolved.port }).key,
          resolved.key,
        );
        // Case, brackets and a port given as a string make no difference.
        const bare = hostname.startsWith("[") ? hostname.slice(1, -1) : hostname;
        const at = bare.indexOf("%");
        const upper = at === -1
          ? bare.toUpperCase()
          : bare.slice(0, at).toUpperCase() + bare.slice(at);
        assert.equal(
          resolveAddress({ hostname: upper, port: String(Number(port)) }).key,
          resolved.key,
        );
        if (bare.includes(":")) {
          assert.equal(resolveAddress({ hostname: `[${bare}]`, port }).key, resolved.key);
          assert.ok(resolved.key.startsWith("["), resolved.key);
        }
        assert.equal(resolveAddress({ hostname, port, tls: false }).key, resolved.key);
        assert.equal(
          resolveAddress({ hostname, port, tls: true }).key,
          resolveAddress({ hostname, port, tls: {} }).key,
        );
      },
    );
  });

  propertyTest("malformed host names and ports are refused, with a short message", async () => {
    await property(
      "malformed host names",
      300,
      fc.oneof(
        fc.record({ hostname: hostileHostname, port: validPort }),
        fc.record({ hostname: validHostname, port: hostilePort }),
        fc.record({
          hostname: longString(254, 300_000, fc.constantFrom("a", "b.")),
          port: validPort,
        }),
        fc.record({ hostname: fc.ipV4Extended(), port: validPort }),
      ),
      (address) => {
        const outcome = resolution(address);
        const { hostname } = address as { hostname: unknown };
        if (typeof hostname === "string") {
          // What the README promises of a host name, checked independently.
          const bare = hostname.replace(/\.$/, "");
          if (bare.length > 253 && !hostname.includes(":") && !hostname.startsWith("[")) {
            assert.ok(
              "error" in outcome && outcome.error instanceof RangeError,
              `${hostname.length} characters: ${
                describeError((outcome as { error?: unknown }).error)
              }`,
            );
          }
          if (
            /^[0-9.]+$/.test(hostname) && hostname.split(".").every((part) => part !== "") &&
            !isDottedQuad(hostname)
          ) {
            assert.ok("error" in outcome, `${quoted(hostname)} is no dotted quad but was accepted`);
          }
          // deno-lint-ignore no-control-regex -- any character outside ASCII
          if (/[^\x00-\x7f]/.test(hostname.split("%")[0]!)) {
            assert.ok("error" in outcome, `${quoted(hostname)} is not ASCII but was accepted`);
          }
        }
        if ("error" in outcome) {
          const problem = errorProblem("resolveAddress", outcome.error, { argument: true });
          assert.equal(problem, undefined, problem);
        } else {
          // Accepted: it must be a well-formed name, port and key.
          const resolved = resolveAddress(address as never);
          assert.ok(
            resolved.key.length <= 253 + 2 + 6,
            `a key of ${resolved.key.length} characters`,
          );
        }
      },
    );
  });

  propertyTest(
    "TLS options: a field made null, blank or of another type is refused, never taken as its default",
    async () => {
      await property(
        "TLS options",
        200,
        fc.record({
          base: validTlsOptions,
          field: fc.constantFrom("serverName", "caCerts", "verify", "cert", "key", "alpnProtocols"),
          value: fc.constantFrom<unknown>(null, 0, 1, "", "  ", [], {}, [""], [1]),
        }),
        ({ base, field, value }) => {
          const outcome = resolution({
            hostname: "a.test",
            port: 1,
            tls: { ...base, [field]: value },
          });
          assert.ok("error" in outcome, `tls.${field}: ${show(value)} was accepted`);
          const problem = errorProblem("resolveAddress", outcome.error, { argument: true });
          assert.equal(problem, undefined, problem);
        },
      );
    },
  );

  propertyTest(
    "an address whose getters change: every acquire uses what it said last",
    async () => {
      await property(
        "whose getters change",
        120,
        fc.oneof(
          fc.record({
            field: fc.constant("hostname" as const),
            values: fc.array(fc.oneof(validHostname, hostileHostname), {
              minLength: 1,
              maxLength: 4,
            }),
            other: validPort,
            calls: fc.integer({ min: 1, max: 6 }),
          }),
          fc.record({
            field: fc.constant("port" as const),
            values: fc.array(fc.oneof(validPort, hostilePort), { minLength: 1, maxLength: 4 }),
            other: validHostname,
            calls: fc.integer({ min: 1, max: 6 }),
          }),
        ),
        async ({ field, values, other, calls }) => {
          await watched(async (timers, problems) => {
            const transport = new CountingTransport(true);
            const pool = new ConnectionPool({ transport });
            const reads: unknown[] = [];
            const address = changingAddress(field, values, other, reads);
            for (let i = 0; i < calls; i++) {
              reads.length = 0;
              const outcome = await callAsync(
                "acquire",
                problems,
                () => pool.acquire(address as never),
              );
              if (reads.length === 0 || reads.length > 2) {
                problems.push(`acquire read ${field} ${reads.length} times`);
                continue;
              }
              const last = reads[reads.length - 1];
              const expected = resolution(
                field === "hostname"
                  ? { hostname: last, port: other }
                  : { hostname: other, port: last },
              );
              if ("error" in expected) {
                if (outcome.ok) {
                  problems.push(
                    `acquire ${i} used ${outcome.value.connection.address.key}, though ${field} said ${
                      describeError(expected.error)
                    } last`,
                  );
                } else if (!sameFailure(outcome.error, expected.error)) {
                  problems.push(
                    `acquire ${i}: ${describeError(outcome.error)} vs ${
                      describeError(expected.error)
                    }`,
                  );
                }
              } else if (!outcome.ok) {
                problems.push(
                  `acquire ${i} failed (${
                    describeError(outcome.error)
                  }) though ${field} said a valid value last`,
                );
              } else {
                if (outcome.value.connection.address.key !== expected.key) {
                  problems.push(
                    `acquire ${i} used ${outcome.value.connection.address.key}, ${field} said ${expected.key} last`,
                  );
                }
                pool.retain(outcome.value.connection);
              }
            }
            await pool.close();
            problems.push(...await leftovers(pool, transport, timers, undefined));
            assertNone(problems, "changing getters");
          });
        },
      );
    },
  );
});

describe("property: misuse", () => {
  propertyTest(
    "random misuse sequences: only coded errors, no sync throws, stats() agree at every step, nothing left after close()",
    async () => {
      await property(
        "misuse sequences",
        150,
        fc.record({
          config: misuseConfig,
          ops: fc.array(misuseOp, { minLength: 1, maxLength: 40, size: "max" }),
        }),
        checkMisuse,
      );
    },
  );
});

describe("property: real sockets", () => {
  propertyTest(
    `${runtime}'s own transport: odd buffers on loopback sockets get the same answers as in memory, and leave the connection clean`,
    async () => {
      const upstream = await TestUpstream.start({ mode: "echo" });
      try {
        await property(
          "loopback sockets",
          20,
          fc.array(
            fc.record({
              chunk: chunkKind,
              then: fc.constantFrom("retain" as const, "release" as const, "stale" as const),
            }),
            { minLength: 1, maxLength: 6 },
          ),
          (steps) => checkLoopback(upstream, steps),
        );
      } finally {
        await upstream.close();
      }
    },
    120_000,
  );
});

describe("property: options", () => {
  propertyTest(
    "one option at a time: any value, null included, is taken exactly when valid, else refused by name",
    async () => {
      const names = [...Object.keys(POOL_OPTIONS), "perAddress", "transport"];
      await property(
        "one option at a time",
        300,
        fc.constantFrom(...names).chain((name) =>
          fc.record({
            name: fc.constant(name),
            value: name in POOL_OPTIONS
              ? fc.oneof(optionValue(POOL_OPTIONS[name] as never, false), fc.constant(null))
              : fc.constantFrom<unknown>(null, undefined, 0, "x", {}, [], true),
          })
        ),
        async ({ name, value }) => {
          const transport = new MemoryTransport();
          const built = hookValue(value, POOL_OPTIONS[name] ?? "", new EventLedger());
          const expect = name === "perAddress"
            ? (built === undefined || (Array.isArray(built) && built.length === 0)
              ? "ok"
              : "TypeError")
            : name === "transport"
            ? (built === undefined ? "ok" : "TypeError")
            : expectOption(POOL_OPTIONS[name] as never, built);
          const options = name === "transport" ? { [name]: built } : { transport, [name]: built };
          const created = callSync(() => new ConnectionPool(options as never));
          if (expect === "ok") {
            assert.ok(
              created.ok,
              `${name}: ${show(built)} refused: ${!created.ok && describeError(created.error)}`,
            );
            await created.value.close();
            return;
          }
          assert.ok(!created.ok, `${name}: ${show(built)} was accepted`);
          assert.ok(
            matches(created.error, expect),
            `${name}: ${describeError(created.error)}, expected ${expect}`,
          );
          assert.ok(
            (created.error as Error).message.includes(`option ${name}:`),
            `${name}: the message does not name it: ${(created.error as Error).message}`,
          );
        },
      );
    },
  );

  propertyTest(
    "pool options: created exactly when valid, the error names a mistake, the pool then works and leaves nothing",
    async () => {
      await property("pool options", 400, poolOptionsDescription, checkPoolOptions);
    },
  );
});

// ---------------------------------------------------------------------------
// Reduced cases of what the properties found

describe("property: reduced cases", () => {
  const transport = (): MemoryTransport => new MemoryTransport();

  test("order: null and perAddress: null are TypeErrors, as null is for every other option", () => {
    for (const option of ["order", "perAddress"]) {
      assert.throws(
        () => new ConnectionPool({ transport: transport(), [option]: null }),
        (error: Error) =>
          error instanceof TypeError && error.message.includes(`option ${option}:`) &&
          error.message.includes("got null"),
        option,
      );
    }
  });

  test("tls.verify: null is a TypeError, not verification on", () => {
    assert.throws(
      () => resolveAddress({ hostname: "a.test", port: 1, tls: { verify: null as never } }),
      (error: Error) => error instanceof TypeError && error.message.includes("tls.verify"),
    );
  });

  test("a sparse caCerts, alpnProtocols or perAddress of 2^32-1 holes is a TypeError at once, not a fatal out-of-memory", () => {
    const sparse = (): unknown[] => {
      const array: unknown[] = [];
      array.length = 2 ** 32 - 1;
      return array;
    };
    for (const field of ["caCerts", "alpnProtocols"]) {
      const started = Date.now();
      assert.throws(
        () => resolveAddress({ hostname: "a.test", port: 1, tls: { [field]: sparse() } }),
        (error: Error) => error instanceof TypeError && error.message.includes(`tls.${field}`),
      );
      assert.ok(Date.now() - started < 1000, `${field}: ${Date.now() - started} ms`);
    }
    const started = Date.now();
    assert.throws(
      () => new ConnectionPool({ transport: transport(), perAddress: sparse() as never }),
      (error: Error) => error instanceof TypeError && error.message.includes("perAddress[0]"),
    );
    assert.ok(Date.now() - started < 1000, `perAddress: ${Date.now() - started} ms`);
  });

  test("caCerts, alpnProtocols and perAddress are read by index: an array's own iterator is not run", () => {
    const endless = (item: unknown): unknown[] => {
      const array: unknown[] = [item];
      Object.defineProperty(array, Symbol.iterator, {
        value: function* () {
          for (;;) yield item;
        },
      });
      return array;
    };
    const ca = resolveAddress({
      hostname: "a.test",
      port: 1,
      tls: { caCerts: endless("pem") as string[] },
    });
    assert.deepEqual(ca.kind === "tcp" && ca.tls?.caCerts, ["pem"]);
    const pool = new ConnectionPool({
      transport: transport(),
      perAddress: endless({ address: { hostname: "a.test", port: 1 }, maxPerHost: 1 }) as never,
    });
    return pool.close();
  });

  test("read() reports every mistake in its options through its promise: a throwing getter, a Map, an unknown key", async () => {
    const memory = transport();
    const address = { hostname: "read.test", port: 1 };
    memory.listen(address, (peer) => peer.echo());
    const pool = new ConnectionPool({ transport: memory });
    const { connection } = await pool.acquire(address);
    const getter = {
      get signal(): AbortSignal {
        throw new Hostile("getter");
      },
    };
    let read: Promise<unknown> | undefined;
    assert.doesNotThrow(() => read = connection.read(getter), "read() threw synchronously");
    await assert.rejects(read!, Hostile);
    for (
      const options of [new Map(), [], Object.create({ signal: undefined }), { sigal: 1 }, null, 5]
    ) {
      await assert.rejects(connection.read(options as never), TypeError, String(options));
    }
    assert.equal(pool.retain(connection), true, "a refused read leaves the connection clean");
    await pool.close();
  });

  test("write() and unread() refuse a detached Uint8Array, a proxy of one and a DataView with a TypeError; the connection stays clean", async () => {
    const memory = transport();
    const address = { hostname: "write.test", port: 1 };
    memory.listen(address, (peer) => peer.echo());
    const pool = new ConnectionPool({ transport: memory });
    const { connection } = await pool.acquire(address);
    const detached = new Uint8Array(8);
    structuredClone(detached.buffer, { transfer: [detached.buffer] });
    for (
      const chunk of [detached, new Proxy(new Uint8Array(2), {}), new DataView(new ArrayBuffer(2))]
    ) {
      await assert.rejects(connection.write(chunk as Uint8Array), TypeError);
      assert.throws(() => connection.unread(chunk as Uint8Array), TypeError);
    }
    await connection.write(new Uint8Array(0)); // empty, not detached: nothing to send
    assert.equal(await roundTrip(connection, "still fine"), "still fine");
    assert.equal(pool.retain(connection), true);
    await pool.close();
  });

  for (const hook of ["setup", "validate"] as const) {
    test(`close() ends the connectTimeout budget of a ${hook} hook that hangs: no timer is left`, async () => {
      await watched(async (timers, problems) => {
        const counting = new CountingTransport(true);
        const pool = new ConnectionPool({
          transport: counting,
          connectTimeout: 10_000,
          validateAfter: 0,
          [hook]: () => new Promise(() => {}),
        });
        const address = { hostname: "hook.test", port: 1 };
        if (hook === "validate") pool.retain((await pool.acquire(address)).connection);
        const acquiring = pool.acquire(address);
        await quiesce();
        assert.equal(hook === "setup" ? pool.stats().settingUp : pool.stats().validating, 1);
        await pool.close();
        await assert.rejects(acquiring, (error: PoolError) => error.code === "POOL_CLOSED");
        problems.push(...await leftovers(pool, counting, timers, undefined));
        assertNone(problems, hook);
      });
    });
  }

  test("acquires that settle after close() do not start the keep-alive interval again", async () => {
    await watched(async (timers, problems) => {
      const counting = new CountingTransport(true);
      const pool = new ConnectionPool({ transport: counting });
      const address = { hostname: "keepalive.test", port: 1 };
      const [one, two] = [await pool.acquire(address), await pool.acquire(address)];
      pool.retain(one.connection);
      pool.retain(two.connection);
      // Each takes an idle connection at once and waits for its settle turn; close() comes first.
      const late = [pool.acquire(address), pool.acquire(address)];
      await pool.close();
      for (const acquire of late) {
        await assert.rejects(acquire, (error: PoolError) => error.code === "POOL_CLOSED");
      }
      problems.push(...await leftovers(pool, counting, timers, undefined));
      assertNone(problems, "keep-alive");
    });
  });

  test("a readable cancelled while it waits for data frees the read: read() works at once and gets the bytes", async () => {
    const memory = transport();
    const address = { hostname: "stream.test", port: 1 };
    let server: MemoryPeer | undefined;
    memory.listen(address, (peer) => {
      server = peer;
    });
    const pool = new ConnectionPool({ transport: memory });
    const { connection } = await pool.acquire(address);
    const reader = connection.readable.getReader();
    const pending = reader.read(); // the stream's pull now waits for bytes
    await macrotask();
    await reader.cancel();
    reader.releaseLock();
    await pending;
    const read = connection.read();
    server!.write("after");
    assert.equal(new TextDecoder().decode((await read)!), "after");
    assert.equal(pool.retain(connection), true);
    await pool.close();
  });

  test("NOT_BORROWED names the operation (retain or release), and the address when there is one", async () => {
    const memory = transport();
    const address = { hostname: "borrowed.test", port: 1 };
    memory.listen(address, (peer) => peer.echo());
    const pool = new ConnectionPool({ transport: memory });
    const { connection } = await pool.acquire(address);
    pool.retain(connection);
    for (const verb of ["retain", "release"] as const) {
      assert.throws(
        () => pool[verb](connection),
        (error: PoolError) =>
          error.code === "NOT_BORROWED" && error.operation === verb &&
          error.address === "borrowed.test:1",
      );
      assert.throws(
        () => pool[verb]({} as never),
        (error: PoolError) => error.code === "NOT_BORROWED" && error.operation === verb,
      );
    }
    await pool.close();
  });

  test("two close({ timeout }) calls at once both settle when the borrowed connection comes back, and leave no timer", async () => {
    await watched(async (timers, problems) => {
      const counting = new CountingTransport(true);
      const pool = new ConnectionPool({ transport: counting });
      const { connection } = await pool.acquire({ hostname: "close.test", port: 1 });
      let settled = 0;
      const closes = [pool.close({ timeout: Infinity }), pool.close({ timeout: Infinity })];
      for (const closing of closes) closing.then(() => settled++);
      await quiesce();
      assert.equal(settled, 0, "close() waits for the borrowed connection");
      pool.release(connection);
      await within(Promise.all(closes), 1_000, "both close() calls");
      problems.push(...await leftovers(pool, counting, timers, undefined));
      assertNone(problems, "two closes");
    });
  });

  test("a close({ timeout }) that closes the stragglers settles the other close({ timeout }) calls too", async () => {
    await watched(async (timers, problems) => {
      const counting = new CountingTransport(true);
      const pool = new ConnectionPool({ transport: counting });
      await pool.acquire({ hostname: "close.test", port: 1 });
      const patient = pool.close({ timeout: Infinity });
      await pool.close({ timeout: 5 }); // closes the borrowed connection after 5 ms
      await within(patient, 1_000, "the patient close()");
      problems.push(...await leftovers(pool, counting, timers, undefined));
      assertNone(problems, "closes");
    });
  });
});
