// A randomized model test of the pool (issues 3 and 11): thousands of random
// operations on a pool over the in-memory transport, checked after every
// step against a model of what the pool must be doing.
//
// The operations: acquires (some aborted), retains (some with a shorter
// idleTimeout), releases, requests, reads abandoned through a signal, bytes
// put back with unread(), add, drain, exchange() with idempotent true or
// false, and an upstream that refuses or holds connects, writes into or
// closes connections, and sometimes closes an idle connection just as the
// next request reaches it (the keep-alive edge). The pool's setup and
// validate hooks, when a run has them, succeed, fail, throw, leave bytes
// unread or hang past connectTimeout; validateAfter and maxUses are drawn
// too.
//
// The invariants: the limits are never exceeded; every connection is in
// exactly one phase, and the model's phases (kept from the lifecycle events)
// equal the stats, which equal the open in-memory connections; every address
// serves its waiters first come first served; nobody waits while the pool
// could serve them; no connection is handed out before its setup succeeded
// (the upstream refuses anything before AUTH), after validate said no, after
// its idle deadline, after drain() or past maxUses; exchange() never runs a
// non-idempotent function twice and retries exactly when the rule says
// (reused, no byte received, the connection ended or failed); every event
// agrees with the totals; and at the end nothing is borrowed, connecting,
// setting up, validating or waiting, and no connection, hook or timer is left.
//
// Every run is drawn from a seed: a failure names it, with the last steps, so
// it can be replayed (POOL_MODEL_SEED=<seed> runs only that one,
// POOL_MODEL_SEEDS=<from>-<to> a range; POOL_MODEL_OPS changes the step count,
// POOL_MODEL_TRACE how many last steps a failure shows, POOL_MODEL_DEBUG=1
// prints what each run did). Runs use real timers, so a replay takes the
// same steps but not always the same timing. Reduced cases of what the model
// found follow it.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import { setImmediate } from "node:timers";
import {
  type Acquired,
  ConnectionPool,
  type ConnectionPoolOptions,
  PoolError,
  type PoolEvent,
  type PoolStats,
  type PoolTotals,
  type TcpAddress,
  type Transport,
  type TransportConnection,
  type UpstreamConnection,
} from "../mod.ts";
import { type MemoryPeer, MemoryTransport } from "../src/transports/memory.ts";
import { real, timerGlobals } from "./_timer_globals.ts";
import { envNumber, Random } from "./_random.ts";

// ---------------------------------------------------------------------------
// Seeds and timers

/** Resolves after `ms` ms, on a timer the timer watch does not see. */
function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => real.setTimeout(() => resolve(), ms));
}

/** Resolves in the next macrotask (after every microtask queued before). */
function macrotask(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * Records every timer and interval set through the globals while installed,
 * until it fires or is cleared. Unref'd timers (all of the pool's, but its
 * keep-alive interval) are invisible to `process.getActiveResourcesInfo()`,
 * and Bun's returns nothing at all; this sees them on every runtime.
 */
class TimerWatch {
  readonly live: Map<unknown, string> = new Map();

  install(): void {
    const live = this.live;
    timerGlobals.setTimeout = (callback, ms, ...args) => {
      const handle = real.setTimeout(() => {
        live.delete(handle);
        callback(...args);
      }, ms);
      live.set(handle, `setTimeout(${ms})`);
      return handle;
    };
    timerGlobals.clearTimeout = (handle) => {
      live.delete(handle);
      real.clearTimeout(handle);
    };
    timerGlobals.setInterval = (callback, ms, ...args) => {
      const handle = real.setInterval(callback, ms, ...args);
      live.set(handle, `setInterval(${ms})`);
      return handle;
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

/** Timers and immediates that keep the process alive (Node, Deno; Bun lists none). */
function refedTimers(): number {
  const info = (process as { getActiveResourcesInfo?: () => string[] }).getActiveResourcesInfo;
  if (typeof info !== "function") return 0;
  return info().filter((kind) => kind === "Timeout" || kind === "Immediate").length;
}

// ---------------------------------------------------------------------------
// What the pool reads from each connection, seen from the transport's side

/**
 * A transport connection as the model sees it: how many bytes the pool's
 * reads returned, and whether it read EOF or an error, or a write failed,
 * before the pool closed it. From these the model knows, without asking the
 * pool, what exchange()'s replay rule must conclude: `delivered - leaseBase`
 * is what the pool counts as received during a lease, since the pool refs
 * the connection each time it lends it out.
 */
class WatchedConnection implements TransportConnection {
  readonly inner: TransportConnection;
  delivered = 0;
  leaseBase = 0;
  ended = false;
  /** When a byte was last received or a write completed (Date.now()), or 0. */
  lastActive = 0;
  closedByPool = false;
  /** Bytes received during the last lease, and whether it had ended, when the pool closed it. */
  receivedAtClose = 0;
  endedAtClose = false;

  constructor(inner: TransportConnection) {
    this.inner = inner;
  }

  // The pool's reactions are registered after these on the same promises, so
  // the counts are up to date whenever the pool sees a result: no extra turn.
  read(): Promise<Uint8Array | null> {
    const pending = this.inner.read();
    pending.then((chunk) => {
      if (this.closedByPool) return;
      if (chunk === null) this.ended = true;
      else {
        this.delivered += chunk.length;
        this.lastActive = Date.now();
      }
    }, () => {
      if (!this.closedByPool) this.ended = true;
    });
    return pending;
  }

  write(chunk: Uint8Array): Promise<void> {
    const pending = this.inner.write(chunk);
    pending.then(() => {
      if (!this.closedByPool) this.lastActive = Date.now();
    }, () => {
      if (!this.closedByPool) this.ended = true;
    });
    return pending;
  }

  closeWrite(): Promise<void> {
    return this.inner.closeWrite();
  }

  close(): void {
    if (!this.closedByPool) {
      this.closedByPool = true;
      this.receivedAtClose = this.delivered - this.leaseBase;
      this.endedAtClose = this.ended;
    }
    this.inner.close();
  }

  ref(): void {
    this.leaseBase = this.delivered;
    this.inner.ref();
  }

  unref(): void {
    this.inner.unref();
  }
}

/** The in-memory transport, with every connection watched. */
function watched(inner: MemoryTransport): Transport {
  return {
    name: "memory",
    connect: (address, options) =>
      inner.connect(address, options).then((connection) => new WatchedConnection(connection)),
    settle: () => inner.settle(),
  };
}

/** The watched transport connection behind a handle (the handle's socket is internal). */
function watchedOf(connection: UpstreamConnection): WatchedConnection | undefined {
  const transport = (connection as unknown as { socket?: { transport?: unknown } }).socket
    ?.transport;
  return transport instanceof WatchedConnection ? transport : undefined;
}

// ---------------------------------------------------------------------------
// The policy of one run

const ADDRESSES: readonly TcpAddress[] = [
  { hostname: "a.model", port: 1 },
  { hostname: "b.model", port: 2 },
  { hostname: "c.model", port: 3 },
];
const KEYS = ADDRESSES.map((address) => `${address.hostname}:${address.port}`);

/** The per-address limits the model checks, after defaults and overrides. */
interface Limits {
  maxPerHost: number;
  maxIdlePerHost: number;
  maxWaiting: number;
}

/** What a setup hook does on one connection. */
type SetupPlan = "ok" | "throw-sync" | "throw-async" | "unread" | "half-close" | "hang";
/** What a validate hook does on one connection. */
type ValidatePlan = "ping" | "true" | "false" | "throw-sync" | "throw-async" | "unread" | "hang";
/** What an exchange's function does on one attempt. */
type ExchangePlan =
  | "ok"
  | "slow"
  | "throw-early"
  | "throw-late"
  | "unread"
  | "abandon"
  | "pre-aborted"
  | "release";

const EXCHANGE_PLANS: readonly ExchangePlan[] = [
  ...Array<ExchangePlan>(10).fill("ok"),
  "slow",
  "slow",
  "throw-early",
  "throw-late",
  "unread",
  "abandon",
  "pre-aborted",
  "release",
];

interface Draw {
  addresses: number;
  options: Omit<ConnectionPoolOptions, "transport" | "onEvent" | "setup" | "validate">;
  limits: Limits[];
  maxTotal: number;
  maxIdle: number;
  acquireTimeout: number;
  connectTimeout: number;
  idleTimeout: number;
  maxUses: number;
  validateAfter: number;
  /** The setup plans to draw from (repeats weigh), or undefined for no setup hook. */
  setupPlans: readonly SetupPlan[] | undefined;
  validatePlans: readonly ValidatePlan[] | undefined;
}

function drawPolicy(rng: Random): Draw {
  const addresses = rng.pick([2, 3, 3]);
  const base: Limits = {
    maxPerHost: rng.pick([1, 2, 3, 4]),
    maxIdlePerHost: rng.pick([0, 1, 2, Infinity]),
    maxWaiting: rng.pick([Infinity, Infinity, 1, 3]),
  };
  const maxTotal = rng.pick([2, 3, 4, 6, Infinity]);
  const maxIdle = rng.pick([0, 1, 3, Infinity, Infinity]);
  const acquireTimeout = rng.pick([30_000, 30_000, 25, 60]);
  const connectTimeout = rng.pick([10_000, 10_000, 15, 25]);
  const idleTimeout = rng.pick([60_000, 60_000, 20]);
  const maxUses = rng.pick([Infinity, Infinity, Infinity, 1, 2, 5]);
  const validateAfter = rng.pick([0, 0, 3, 1000]);
  // Hooks hang only where connectTimeout is short enough to wait out.
  const hangs = connectTimeout < 100;
  const setupPlans: SetupPlan[] | undefined = rng.chance(0.6)
    ? [
      ...Array<SetupPlan>(12).fill("ok"),
      "throw-sync",
      "throw-async",
      "unread",
      "half-close",
      ...(hangs ? ["hang", "hang"] as const : []),
    ]
    : undefined;
  const validatePlans: ValidatePlan[] | undefined = rng.chance(0.5)
    ? [
      ...Array<ValidatePlan>(8).fill("ping"),
      "true",
      "true",
      "false",
      "throw-sync",
      "throw-async",
      "unread",
      ...(hangs ? ["hang"] as const : []),
    ]
    : undefined;
  const limits = Array.from({ length: addresses }, () => ({ ...base }));
  const options: Draw["options"] = {
    ...base,
    maxTotal,
    maxIdle,
    acquireTimeout,
    connectTimeout,
    order: rng.pick(["lifo", "fifo"] as const),
    idleTimeout,
    maxLifetime: rng.pick([Infinity, Infinity, 40]),
    leakTimeout: rng.pick([Infinity, 50]),
  };
  if (maxUses !== Infinity) options.maxUses = maxUses;
  if (validatePlans !== undefined) options.validateAfter = validateAfter;
  if (rng.chance(0.5)) {
    // The last address has limits of its own.
    const own: Limits = {
      maxPerHost: rng.pick([1, 2, 5]),
      maxIdlePerHost: rng.pick([0, 1, Infinity]),
      maxWaiting: rng.pick([0, 2, Infinity]),
    };
    limits[addresses - 1] = own;
    options.perAddress = [{ address: ADDRESSES[addresses - 1]!, ...own }];
  }
  // A minimum of idle connections, only where the idle limits leave room for
  // it (see the reduced cases below for what happens otherwise).
  if (
    rng.chance(0.3) && limits.every((own) => own.maxIdlePerHost >= 1) &&
    maxIdle >= addresses && maxTotal >= addresses
  ) {
    options.minIdlePerHost = 1;
  }
  return {
    addresses,
    options,
    limits,
    maxTotal,
    maxIdle,
    acquireTimeout,
    connectTimeout,
    idleTimeout,
    maxUses,
    validateAfter: validatePlans === undefined ? Infinity : validateAfter,
    setupPlans,
    validatePlans,
  };
}

function showPolicy(draw: Draw): string {
  const shown = {
    ...draw.options,
    setup: draw.setupPlans === undefined ? undefined : [...new Set(draw.setupPlans)],
    validate: draw.validatePlans === undefined ? undefined : [...new Set(draw.validatePlans)],
  };
  return JSON.stringify(shown, (_, value) => value === Infinity ? "Infinity" : value);
}

// ---------------------------------------------------------------------------
// The model

/** One acquire() or exchange() of the test. */
interface AcquireRecord {
  id: number;
  kind: "acquire" | "exchange";
  addr: number;
  issuedAt: number;
  /** `running`: an exchange whose function holds (or held) a connection. */
  state: "pending" | "running" | "resolved" | "rejected";
  controller: AbortController | undefined;
  /** Set when the test aborted it while the pool had it in line. */
  abortReason: Error | undefined;
  /** QUEUE_FULL was expected from the counts when it was made. */
  full: boolean;
  /** It may have taken an idle connection at once (nobody in line): validate was decided on arrival. */
  fastPath: boolean;
  // A plain acquire's lease, and what was done with it.
  lease: Acquired | undefined;
  returned: boolean;
  reading: boolean;
  /** Bytes were put back with unread() and not read since. */
  leftover: boolean;
  /** A read was abandoned through its signal. */
  abandoned: boolean;
  /** Aborts the abandonable read in progress, if any. */
  abortRead: (() => void) | undefined;
  /** What retain() returned, once it was called. */
  retainedAs: boolean | undefined;
  // An exchange's attempts.
  idempotent: boolean;
  /** The idle deadline it retains its connection with, if any. */
  retainFor: number | undefined;
  attempts: Attempt[];
  retried: boolean;
  retryIssuedAt: number;
}

/** One run of an exchange's function. */
interface Attempt {
  id: number;
  /** Its connection's first hand-out. */
  created: boolean;
  plan: ExchangePlan;
  watched: WatchedConnection | undefined;
  /** The function left the connection unclean on purpose: it must not be pooled. */
  mustDrop: boolean;
  error: unknown;
  value: string | undefined;
}

/** One connection, as the lifecycle events and the hooks tell the model about it. */
interface ConnectionModel {
  id: number;
  addr: number;
  /** `ready`: idle or validating; `returning`: given back, about to be closed. */
  phase: "setting-up" | "ready" | "borrowed" | "returning" | "closed";
  uses: number;
  /** The model's drain epoch of its address when it was opened. */
  epoch: number;
  /** When it was opened. */
  openedAt: number;
  /**
   * When its current idle period began: its last activity (a byte received
   * or a write completed), as the pool counts it, not the retain after it.
   */
  idleSince: number;
  /** How long this idle period may last. */
  idleDeadline: number;
  /** What retain() asked for, during the call. */
  asked: number | undefined;
  setup: "none" | "running" | "ok" | "threw" | "unread" | "half-closed" | "hang";
  validating: boolean;
  /** A validate said yes, cleanly, since it last became idle. */
  validated: boolean;
  validations: number;
  /** When a hook began to hang on it. */
  hangingSince: number | undefined;
  /** Hooks that hung, to wake once the pool has given up on them. */
  wake: (() => void)[];
  /** The caller's state object, from its first hand-out on. */
  state: unknown;
  /** Its transport connection, once a handle showed it. */
  watched: WatchedConnection | undefined;
  /** What the last `returned` event said. */
  lastRetained: boolean | undefined;
  /**
   * Its last hand-out: validated, its first, idle how long, since when, and
   * how many connections to its address were being validated meanwhile
   * (each has a waiter out of line).
   */
  handOut: {
    validated: boolean;
    created: boolean;
    idleMs: number;
    idleSince: number;
    validating: number;
  };
}

/** An upstream's end of one connection. */
interface Upstream {
  peer: MemoryPeer;
  addr: number;
  authed: boolean;
  /** Close at the next request instead of answering it: the keep-alive edge. */
  edge: "none" | "end" | "reset" | "partial";
}

type AcceptMode = "now" | "hold" | "refuse";

interface HeldConnect {
  addr: number;
  open(): void;
  fail(error: unknown): void;
}

function refusedError(): Error {
  return Object.assign(new Error("connection refused (model)"), { code: "ECONNREFUSED" });
}

const ACQUIRE_CODES = new Set([
  "QUEUE_FULL",
  "ACQUIRE_TIMEOUT",
  "CONNECT_REFUSED",
  "CONNECT_TIMEOUT",
  "SETUP_FAILED",
  "POOL_CLOSED",
]);
const ADD_CODES = new Set([
  "LIMIT_REACHED",
  "CONNECT_REFUSED",
  "CONNECT_TIMEOUT",
  "SETUP_FAILED",
  "POOL_CLOSED",
]);
const CLOSE_TOTALS: Record<string, keyof PoolTotals> = {
  "broken": "broken",
  "dropped": "dropped",
  "released": "released",
  "expired": "expired",
  "validation-failed": "validationFailed",
  "max-uses": "maxUses",
  "drained": "drained",
  "pool-closed": "poolClosed",
  "setup-failed": "setupFailed",
};

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const byte = new Uint8Array([42]);

function isLeaseEnded(error: unknown): boolean {
  return error instanceof PoolError && error.code === "LEASE_ENDED";
}

async function runModel(
  seed: number,
  steps: number,
  closeWithTimeout: boolean,
): Promise<void> {
  const startedAt = Date.now();
  const rng = new Random(seed);
  // Hooks and exchange functions run when the pool calls them: they draw
  // from a generator of their own, so the operations stay those of the seed.
  const hookRng = new Random(seed ^ 0x5bd1e995);
  const draw = drawPolicy(rng);
  const n = draw.addresses;
  const memory = new MemoryTransport();
  const timers = new TimerWatch();
  const refedBefore = refedTimers();

  const trace: string[] = [];
  let step = 0;
  let closing = false;
  const violations: string[] = [];
  const idleBreaches: string[] = [];
  const where = (): string =>
    `seed ${seed}, step ${step}; policy ${showPolicy(draw)}; last steps:\n  ${
      trace.slice(-(envNumber("POOL_MODEL_TRACE") ?? 30)).join("\n  ")
    }`;
  const note = (what: string): void => {
    trace.push(`${step}: ${what}`);
    if (trace.length > 2000) trace.splice(0, 1000);
  };
  const violation = (what: string): void => {
    violations.push(what);
  };
  const failIfViolated = (): void => {
    if (violations.length > 0) assert.fail(`${violations[0]}\n${where()}`);
  };

  // ---- the upstreams ---------------------------------------------------------
  // Echo servers whose connects the test can hold or refuse. With a setup
  // hook they are guarded: a connection must send AUTH before anything else.
  const guarded = draw.setupPlans !== undefined;
  const peers: MemoryPeer[] = [];
  const upstreams: Upstream[] = [];
  const resetPeers = new Set<MemoryPeer>();
  let accepted = 0;
  let edgeCloses = 0;
  const mode: AcceptMode[] = Array.from({ length: n }, () => "now");
  const listening: boolean[] = Array.from({ length: n }, () => true);
  const mayRefuse: boolean[] = Array.from({ length: n }, () => false);
  const held: HeldConnect[] = [];
  let connectsThisStep = 0;
  let expiresThisStep = 0;

  async function serve(upstream: Upstream): Promise<void> {
    const { peer } = upstream;
    const key = KEYS[upstream.addr];
    for (let chunk = await peer.read(); chunk !== null; chunk = await peer.read()) {
      const text = decoder.decode(chunk);
      if (text.includes("LATE")) {
        violation(`a hook's write reached ${key} after the pool had given up on the hook`);
      }
      if (!upstream.authed) {
        if (text === "AUTH") {
          upstream.authed = true;
          peer.write("OK");
        } else {
          violation(`unauthenticated use: a connection to ${key} received "${text}" before AUTH`);
        }
        continue;
      }
      if (upstream.edge !== "none") {
        // The upstream's idle timer fired as the request arrived: no reply.
        edgeCloses++;
        if (upstream.edge === "reset") {
          resetPeers.add(peer);
          peer.reset();
        } else {
          if (upstream.edge === "partial") peer.write(chunk.subarray(0, 1));
          peer.end();
        }
        return;
      }
      peer.write(chunk);
    }
    peer.end();
  }

  const listen = (addr: number): void => {
    memory.listen(ADDRESSES[addr]!, (peer) => {
      accepted++;
      peers.push(peer);
      const upstream: Upstream = { peer, addr, authed: !guarded, edge: "none" };
      upstreams.push(upstream);
      return serve(upstream);
    }, {
      accept: () => {
        hardLimits(`accept hook of ${KEYS[addr]}`);
        watchdog(++connectsThisStep, "connects");
        if (mode[addr] === "refuse") return Promise.reject(refusedError());
        if (mode[addr] === "hold") {
          return new Promise<void>((open, fail) => held.push({ addr, open, fail }));
        }
        return undefined;
      },
    });
  };

  // ---- the model's state -----------------------------------------------------
  const acquires: AcquireRecord[] = [];
  /** Acquires (and exchanges' first acquires) in line, per address, oldest first. */
  const pending: AcquireRecord[][] = Array.from({ length: n }, () => []);
  /** Exchanges' retries waiting for a new connection, per address. */
  const freshPending: AcquireRecord[][] = Array.from({ length: n }, () => []);
  /** Plain acquires holding a connection. */
  const borrowed: AcquireRecord[] = [];
  /** Exchanges whose function holds a connection, by connection id. */
  const exchangeHeld = new Map<number, AcquireRecord>();
  const connections = new Map<number, ConnectionModel>();
  /** Bumped by drain(address): connections opened before are drained. */
  const drainEpoch: number[] = Array.from({ length: n }, () => 0);
  /** Functions of slow exchanges waiting for the test to let them go on. */
  const slowGates: (() => void)[] = [];
  /** Hung hooks to wake at the next step: the pool has closed their connections. */
  const lateWakes: (() => void)[] = [];
  let hooksRunning = 0;
  let reusedSeen = 0;
  let createdLent = 0;
  let addsPending = 0;
  let connectErrorsSeen = 0;
  const seen = {
    opened: 0,
    handedOut: 0,
    reused: 0,
    retries: 0,
    expires: 0,
    connectErrors: 0,
    closed: {} as Record<string, number>,
  };

  // ---- hooks -----------------------------------------------------------------

  async function ask(connection: UpstreamConnection, text: string): Promise<string> {
    await connection.write(encoder.encode(text));
    const reply = await connection.read();
    if (reply === null) throw new Error(`EOF instead of a reply to ${text} (model)`);
    return decoder.decode(reply);
  }

  /** A hook that hangs until the pool has closed its connection, then finds its handle dead. */
  async function hang(
    connection: UpstreamConnection,
    c: ConnectionModel | undefined,
    what: string,
  ) {
    if (c !== undefined) c.hangingSince = Date.now();
    await new Promise<void>((resolve) => c === undefined ? resolve() : c.wake.push(resolve));
    const late = await connection.write(encoder.encode("LATE")).then(() => undefined, (e) => e);
    if (!isLeaseEnded(late)) {
      violation(`a ${what} hook that hung past connectTimeout could still write (${late})`);
    }
  }

  function setupHook(connection: UpstreamConnection): Promise<void> {
    const c = connections.get(connection.id);
    if (c !== undefined) c.watched ??= watchedOf(connection);
    if (c?.phase !== "setting-up") {
      violation(`setup ran on connection ${connection.id} in phase ${c?.phase}`);
    }
    const plan = hookRng.pick(draw.setupPlans!);
    note(`setup of ${connection.id}: ${plan}`);
    const outcome = (what: ConnectionModel["setup"]): void => {
      if (c !== undefined) c.setup = what;
    };
    outcome("running");
    if (plan === "throw-sync") {
      outcome("threw");
      throw new Error(`setup of ${connection.id} refused (model)`);
    }
    hooksRunning++;
    return (async () => {
      try {
        if (plan === "hang") {
          outcome("hang");
          await hang(connection, c, "setup");
          return;
        }
        if (plan === "throw-async") {
          await Promise.resolve();
          throw new Error(`setup of ${connection.id} failed (model)`);
        }
        const reply = await ask(connection, "AUTH");
        if (reply !== "OK") throw new Error(`AUTH answered "${reply}" (model)`);
        connection.state.setupBy = connection.id;
        if (plan === "unread") {
          connection.unread(encoder.encode(reply));
          outcome("unread");
        } else if (plan === "half-close") {
          await connection.closeWrite();
          outcome("half-closed");
        } else outcome("ok");
      } catch (error) {
        outcome("threw");
        throw error;
      } finally {
        hooksRunning--;
      }
    })();
  }

  function validateHook(connection: UpstreamConnection): Promise<boolean> | boolean {
    const c = connections.get(connection.id);
    if (c !== undefined) c.watched ??= watchedOf(connection);
    if (c?.phase !== "ready") {
      violation(`validate ran on connection ${connection.id} in phase ${c?.phase}`);
    } else {
      if (c.validating) violation(`validate ran twice at once on connection ${c.id}`);
      const idleFor = Date.now() - c.idleSince;
      if (idleFor < draw.validateAfter - 1) { // -1: the model's clock and the pool's may be a tick apart
        violation(
          `validate ran on connection ${c.id} idle ${idleFor} ms, validateAfter is ${draw.validateAfter}`,
        );
      }
      c.validating = true;
      c.validated = false;
      c.validations++;
    }
    const plan = hookRng.pick(draw.validatePlans!);
    note(`validate ${connection.id}: ${plan}`);
    const finish = (cleanYes: boolean): void => {
      if (c === undefined) return;
      c.validating = false;
      c.validated = cleanYes;
    };
    if (plan === "throw-sync") {
      finish(false);
      throw new Error(`validate of ${connection.id} threw (model)`);
    }
    if (plan === "true" || plan === "false") {
      finish(plan === "true");
      return plan === "true";
    }
    hooksRunning++;
    return (async () => {
      try {
        if (plan === "hang") {
          await hang(connection, c, "validate");
          return true; // too late: the pool must have closed it already
        }
        if (plan === "throw-async") {
          await Promise.resolve();
          throw new Error(`validate of ${connection.id} failed (model)`);
        }
        const reply = await ask(connection, "P");
        if (reply !== "P") {
          finish(false);
          return false;
        }
        if (plan === "unread") {
          connection.unread(encoder.encode(reply));
          finish(false); // it says yes, but leaves a byte unread: the pool must not trust it
          return true;
        }
        finish(true);
        return true;
      } catch (error) {
        finish(false);
        throw error;
      } finally {
        hooksRunning--;
      }
    })();
  }

  // ---- the pool ----------------------------------------------------------------
  timers.install();
  const pool = new ConnectionPool({
    ...draw.options,
    ...(draw.setupPlans === undefined ? {} : { setup: setupHook }),
    ...(draw.validatePlans === undefined ? {} : { validate: validateHook }),
    transport: watched(memory),
    onEvent: (event) => observe(event),
  });

  // A pool caught in a loop of microtasks never lets a timer run: close it
  // from inside the loop so that the test fails instead of hanging.
  function watchdog(count: number, what: string): void {
    if (count === 2000) {
      violation(`livelock: ${count} ${what} within one step`);
      void pool.close();
    }
  }

  const counts = (stats: PoolStats, addr: number) =>
    stats.byAddress[KEYS[addr]!] ??
      { idle: 0, borrowed: 0, connecting: 0, settingUp: 0, validating: 0, waiting: 0 };
  const sizeOf = (stats: PoolStats, addr: number): number => {
    const c = counts(stats, addr);
    return c.idle + c.borrowed + c.connecting + c.settingUp + c.validating;
  };
  const totalOf = (stats: PoolStats): number =>
    stats.idle + stats.borrowed + stats.connecting + stats.settingUp + stats.validating;
  const heldByExchanges = (addr: number): number =>
    [...exchangeHeld.values()].filter((record) => record.addr === addr).length;

  // ---- the lifecycle events --------------------------------------------------

  function connection(id: number, what: string): ConnectionModel | undefined {
    const c = connections.get(id);
    if (c === undefined) violation(`${what} event for connection ${id}, never opened`);
    return c;
  }

  function becomeIdle(c: ConnectionModel, deadline: number): void {
    c.phase = "ready";
    c.idleSince = Math.max(c.openedAt, c.watched?.lastActive ?? 0);
    c.idleDeadline = deadline;
    c.validated = false;
  }

  function observe(event: PoolEvent): void {
    hardLimits(`onEvent(${event.type})`);
    switch (event.type) {
      case "opened": {
        seen.opened++;
        if (connections.has(event.id)) violation(`connection ${event.id} opened twice`);
        const addr = KEYS.indexOf(event.address);
        connections.set(event.id, {
          id: event.id,
          addr,
          phase: "setting-up",
          uses: 0,
          epoch: drainEpoch[addr] ?? 0,
          openedAt: Date.now(),
          idleSince: 0,
          idleDeadline: draw.idleTimeout,
          asked: undefined,
          setup: "none",
          validating: false,
          validated: false,
          validations: 0,
          hangingSince: undefined,
          wake: [],
          state: undefined,
          watched: undefined,
          lastRetained: undefined,
          handOut: { validated: false, created: true, idleMs: 0, idleSince: 0, validating: 0 },
        });
        break;
      }
      case "set-up": {
        const c = connection(event.id, "set-up");
        if (c === undefined) break;
        if (c.phase !== "setting-up") violation(`connection ${c.id} set up in phase ${c.phase}`);
        if (guarded && c.setup !== "ok") {
          violation(
            `connection ${c.id} counted as set up, but its setup hook ${
              c.setup === "running" ? "had not finished" : `ended "${c.setup}"`
            }`,
          );
        }
        becomeIdle(c, draw.idleTimeout);
        break;
      }
      case "handed-out": {
        seen.handedOut++;
        if (!event.created) seen.reused++;
        const c = connection(event.id, "handed-out");
        if (c === undefined) break;
        const id = c.id;
        if (c.phase !== "ready") violation(`connection ${id} handed out in phase ${c.phase}`);
        c.uses++;
        if (event.created !== (c.uses === 1)) {
          violation(`connection ${id} handed out with created ${event.created}, use ${c.uses}`);
        }
        if (c.uses > draw.maxUses) {
          violation(`connection ${id} handed out ${c.uses} times, maxUses is ${draw.maxUses}`);
        }
        if (c.epoch < drainEpoch[c.addr]!) {
          violation(`connection ${id} handed out after drain(${KEYS[c.addr]})`);
        }
        if (event.idleMs >= c.idleDeadline) {
          violation(
            `connection ${id} handed out after ${event.idleMs} ms idle, its deadline was ${c.idleDeadline} ms`,
          );
        }
        if (c.validating) violation(`connection ${id} handed out while validate still ran on it`);
        if (!(event.waitMs >= 0)) violation(`handed-out of ${id} with waitMs ${event.waitMs}`);
        // Whether validate had to run is checked with the acquire (checkServed).
        c.handOut = {
          validated: c.validated,
          created: event.created,
          idleMs: event.idleMs,
          idleSince: c.idleSince,
          validating: counts(pool.stats(), c.addr).validating,
        };
        c.validated = false;
        c.phase = "borrowed";
        break;
      }
      case "returned": {
        const c = connection(event.id, "returned");
        if (c === undefined) break;
        if (c.phase !== "borrowed") violation(`connection ${c.id} returned in phase ${c.phase}`);
        c.lastRetained = event.retained;
        if (event.retained) becomeIdle(c, Math.min(c.asked ?? Infinity, draw.idleTimeout));
        else c.phase = "returning";
        const holder = exchangeHeld.get(c.id);
        if (holder !== undefined) {
          exchangeHeld.delete(c.id);
          c.asked = undefined;
          if (holder.retainFor === 0 && event.retained) {
            violation(`exchange #${holder.id} with idleTimeout 0 retained connection ${c.id}`);
          }
          const attempt = holder.attempts.at(-1);
          if (attempt?.mustDrop && event.retained) {
            violation(
              `exchange #${holder.id} left connection ${c.id} unclean (${attempt.plan}), but it was retained`,
            );
          }
        }
        break;
      }
      case "closed": {
        seen.closed[event.reason] = (seen.closed[event.reason] ?? 0) + 1;
        const c = connection(event.id, "closed");
        if (c === undefined) break;
        const was = c.phase;
        const wrong = (): void =>
          violation(`connection ${c.id} closed as "${event.reason}" in phase ${was}`);
        switch (event.reason) {
          case "setup-failed":
            if (was !== "setting-up") wrong();
            break;
          case "released":
          case "dropped":
            if (was !== "returning") wrong();
            break;
          case "max-uses":
            if (was !== "returning" || c.uses < draw.maxUses) wrong();
            break;
          case "drained":
            if ((was !== "ready" && was !== "returning") || c.epoch >= drainEpoch[c.addr]!) {
              wrong();
            }
            break;
          case "expired":
            if ((was !== "ready" && was !== "returning") || event.detail === undefined) wrong();
            break;
          case "broken":
            if (was !== "ready") wrong();
            break;
          case "validation-failed":
            if (was !== "ready" || c.validations === 0) wrong();
            break;
          case "pool-closed":
            if (!closing) wrong();
            break;
        }
        if (was === "closed") violation(`connection ${c.id} closed twice`);
        c.phase = "closed";
        lateWakes.push(...c.wake.splice(0));
        exchangeHeld.delete(c.id); // cut off by close({ timeout })
        break;
      }
      case "retry": {
        seen.retries++;
        const record = acquires.find((r) =>
          r.kind === "exchange" && r.state === "running" && !r.retried && r.attempts.length === 1 &&
          r.attempts[0]!.id === event.id
        );
        if (record === undefined) {
          violation(`a retry after connection ${event.id}, which no exchange of the model ran on`);
          break;
        }
        record.retried = true;
        const attempt = record.attempts[0]!;
        const why = whyNoRetry(record, attempt);
        if (why !== undefined) violation(`exchange #${record.id} was retried although ${why}`);
        if (event.error !== attempt.error) {
          violation(`the retry event of exchange #${record.id} names another error`);
        }
        note(`exchange #${record.id} retried`);
        record.retryIssuedAt = Date.now();
        freshPending[record.addr]!.push(record);
        break;
      }
      case "expire":
        seen.expires++;
        watchdog(++expiresThisStep, "expiries");
        break;
      case "connect-error":
        seen.connectErrors++;
        break;
    }
  }

  /** Why the replay rule forbids a retry of the attempt, or undefined if it demands one. */
  function whyNoRetry(record: AcquireRecord, attempt: Attempt): string | undefined {
    const watched = attempt.watched;
    if (attempt.error === undefined) return "its function did not throw";
    if (!record.idempotent) return "it is not idempotent";
    if (attempt.created) return `connection ${attempt.id} was new`;
    if (watched === undefined || !watched.closedByPool) {
      return `connection ${attempt.id} was still open`;
    }
    if (watched.receivedAtClose > 0) {
      return `${watched.receivedAtClose} bytes had been received on connection ${attempt.id}`;
    }
    if (!watched.endedAtClose) return `connection ${attempt.id} had neither ended nor failed`;
    return undefined;
  }

  // ---- invariants --------------------------------------------------------------

  /** What must hold at every moment, even in the middle of a pool operation. */
  function hardLimits(at: string): void {
    const stats = pool.stats();
    const total = totalOf(stats);
    if (total > draw.maxTotal) {
      violation(`${at}: ${total} connections, maxTotal is ${draw.maxTotal}`);
    }
    for (let addr = 0; addr < n; addr++) {
      const size = sizeOf(stats, addr);
      if (size > draw.limits[addr]!.maxPerHost) {
        violation(
          `${at}: ${size} connections to ${KEYS[addr]}, maxPerHost is ${
            draw.limits[addr]!.maxPerHost
          }`,
        );
      }
    }
    for (const key of Object.keys(stats.byAddress)) {
      if (!KEYS.slice(0, n).includes(key)) violation(`${at}: stats name unknown address ${key}`);
    }
  }

  /** What must hold whenever the pool has finished reacting (between steps). */
  function checkAll(at: string): PoolStats {
    hardLimits(at);
    const stats = pool.stats();
    const fields = [
      "idle",
      "borrowed",
      "connecting",
      "settingUp",
      "validating",
      "waiting",
    ] as const;
    for (const field of fields) {
      let sum = 0;
      for (const value of Object.values(stats.byAddress)) sum += value[field];
      if (sum !== stats[field]) {
        violation(`${at}: byAddress ${field} sums to ${sum}, stats.${field} is ${stats[field]}`);
      }
    }
    // Every connection in exactly one phase: the model's phases, kept from
    // the events, are the stats' counts.
    const phases = Array.from({ length: n }, () => ({ settingUp: 0, ready: 0, borrowed: 0 }));
    const now = Date.now();
    for (const c of connections.values()) {
      const counted = phases[c.addr];
      if (c.phase === "setting-up") counted!.settingUp++;
      else if (c.phase === "ready") counted!.ready++;
      else if (c.phase === "borrowed") counted!.borrowed++;
      else if (c.phase === "returning") violation(`${at}: connection ${c.id} returned, not closed`);
      if (
        c.hangingSince !== undefined && c.phase !== "closed" &&
        now - c.hangingSince > draw.connectTimeout + 500
      ) {
        violation(
          `${at}: a hook has hung on connection ${c.id} for ${now - c.hangingSince} ms, ` +
            `connectTimeout is ${draw.connectTimeout}, and it is still ${c.phase}`,
        );
      }
    }
    const total = totalOf(stats);
    for (let addr = 0; addr < n; addr++) {
      const c = counts(stats, addr);
      const key = KEYS[addr];
      const limits = draw.limits[addr]!;
      const phase = phases[addr]!;
      if (
        phase.settingUp !== c.settingUp || phase.borrowed !== c.borrowed ||
        phase.ready !== c.idle + c.validating
      ) {
        violation(
          `${at}: ${key}: the events leave ${phase.settingUp} setting up, ${phase.ready} idle ` +
            `or validating, ${phase.borrowed} borrowed; stats say ${c.settingUp}, ` +
            `${c.idle} + ${c.validating}, ${c.borrowed}`,
        );
      }
      const fresh = freshPending[addr]!.length;
      const modelWaiting = pending[addr]!.length + fresh;
      if (c.waiting !== modelWaiting) {
        violation(`${at}: ${key} has ${c.waiting} waiting, the model ${modelWaiting} pending`);
      }
      const modelBorrowed = borrowed.filter((record) => record.addr === addr).length +
        heldByExchanges(addr);
      if (c.borrowed !== modelBorrowed) {
        violation(`${at}: ${key} has ${c.borrowed} borrowed, the model ${modelBorrowed}`);
      }
      // Waiting in line for an idle connection: not retries (they want a new
      // one), and at most one per validation is out of line meanwhile.
      const inLine = c.waiting - fresh - c.validating;
      if (inLine > 0 && c.idle > 0) {
        violation(`${at}: ${key} keeps ${c.idle} idle while ${inLine} wait`);
      }
      // Nobody waits while the pool could connect for them.
      const coming = c.connecting + c.settingUp;
      const needNew = Math.max(0, inLine - c.idle) + fresh;
      if (
        needNew > 0 && coming === 0 && sizeOf(stats, addr) < limits.maxPerHost &&
        (total < draw.maxTotal || stats.idle > 0)
      ) {
        violation(
          `${at}: ${needNew} wait for ${key} with nothing connecting, ` +
            `${sizeOf(stats, addr)}/${limits.maxPerHost} to it, ${total}/${draw.maxTotal} ` +
            `in all, ${stats.idle} idle`,
        );
      }
      if (fresh > 0 && coming === 0 && c.idle > c.waiting - fresh) {
        violation(`${at}: ${fresh} retries wait for ${key} while ${c.idle} idle could make room`);
      }
      if (c.idle > limits.maxIdlePerHost && idleBreaches.length < 5) {
        idleBreaches.push(
          `${at}: ${c.idle} idle to ${key}, maxIdlePerHost is ${limits.maxIdlePerHost}\n${where()}`,
        );
      }
    }
    if (stats.idle > draw.maxIdle && idleBreaches.length < 5) {
      idleBreaches.push(`${at}: ${stats.idle} idle in all, maxIdle is ${draw.maxIdle}\n${where()}`);
    }
    // Every open in-memory connection is one the pool counts: idle ones are
    // unref'd, lent ones (borrowed, setting up, validating) ref'd, and
    // connects in progress are open in the transport too. The one exception:
    // an upstream's reset closes the connection under whoever holds it, who
    // still holds it until giving it back.
    let idlePeers = 0;
    let lentPeers = 0;
    let resetUnderHolder = 0;
    for (const peer of peers) {
      if (peer.closed) {
        if (peer.clientRefed && resetPeers.has(peer)) resetUnderHolder++;
      } else if (peer.clientRefed) lentPeers++;
      else idlePeers++;
    }
    if (memory.openConnections !== idlePeers + lentPeers + stats.connecting) {
      violation(
        `${at}: the transport has ${memory.openConnections} open, but ${idlePeers} idle + ` +
          `${lentPeers} lent upstream connections and ${stats.connecting} connecting`,
      );
    }
    if (idlePeers !== stats.idle) {
      violation(`${at}: ${idlePeers} open unref'd connections, stats say ${stats.idle} idle`);
    }
    const lent = stats.borrowed + stats.settingUp + stats.validating;
    const dead = lent - lentPeers;
    if (dead < 0 || dead > resetUnderHolder) {
      violation(
        `${at}: ${lentPeers} open ref'd connections, stats say ${stats.borrowed} borrowed, ` +
          `${stats.settingUp} setting up, ${stats.validating} validating ` +
          `(${resetUnderHolder} reset under a holder)`,
      );
    }
    // The totals agree with what was seen.
    const { totals } = stats;
    if (totals.created !== accepted || totals.created !== seen.opened) {
      violation(
        `${at}: totals.created ${totals.created}, ${accepted} connects accepted, ` +
          `${seen.opened} opened events`,
      );
    }
    if (totals.reused !== seen.reused || reusedSeen + createdLent > seen.handedOut) {
      violation(
        `${at}: totals.reused ${totals.reused}, ${seen.reused} reused of ${seen.handedOut} ` +
          `handed-out events; the model's acquires saw ${reusedSeen} reused, ${createdLent} new`,
      );
    }
    if (createdLent > totals.created) {
      violation(`${at}: ${createdLent} new connections handed out, ${totals.created} created`);
    }
    for (const [reason, field] of Object.entries(CLOSE_TOTALS)) {
      if ((seen.closed[reason] ?? 0) !== totals[field]) {
        violation(
          `${at}: ${seen.closed[reason] ?? 0} closed events "${reason}", totals.${field} is ${
            totals[field]
          }`,
        );
      }
    }
    if ((seen.closed["expired"] ?? 0) !== seen.expires) {
      violation(`${at}: ${seen.expires} expire events, ${seen.closed["expired"]} closed "expired"`);
    }
    if (totals.retried !== seen.retries) {
      violation(`${at}: totals.retried ${totals.retried}, ${seen.retries} retry events`);
    }
    if (connectErrorsSeen + seen.connectErrors > totals.failed) {
      violation(
        `${at}: ${connectErrorsSeen} connect errors reported to callers and ` +
          `${seen.connectErrors} as events, ${totals.failed} failed`,
      );
    }
    if (totals.setupFailed > totals.failed) {
      violation(`${at}: ${totals.setupFailed} setups failed, ${totals.failed} connects`);
    }
    if (
      totals.waited > seen.handedOut || totals.maxWaitMs > totals.waitedMs + 1e-6 ||
      totals.waitedMs < 0
    ) {
      violation(
        `${at}: waited ${totals.waited} (${totals.waitedMs} ms, at most ${totals.maxWaitMs}) ` +
          `of ${seen.handedOut} hand-outs`,
      );
    }
    if (stats.closed !== closing) violation(`${at}: stats.closed is ${stats.closed}`);
    return stats;
  }

  // ---- settling acquires -------------------------------------------------------

  function settledOnce(
    record: AcquireRecord,
    served: { id: number } | undefined,
    line = pending,
  ): boolean {
    const queue = line[record.addr]!;
    const at = queue.indexOf(record);
    if (at === -1) {
      violation(`acquire #${record.id} settled twice, or was never in line`);
      return false;
    }
    // The oldest waiter is served first. Excused: as many older ones as
    // connections were being validated when the pool handed this one out
    // (validate takes its waiter out of line), and any older one after a
    // validation (its waiter was the head when it began). Checked a turn
    // later: an exchange's failed acquire reaches the model a turn after the
    // pool settled it.
    const handOut = served === undefined ? undefined : connections.get(served.id)?.handOut;
    const older = handOut !== undefined && !handOut.validated ? queue.slice(0, at) : [];
    if (handOut !== undefined && older.length > handOut.validating) {
      queueMicrotask(() =>
        queueMicrotask(() => {
          const waiting = older.filter((other) => other.state === "pending");
          if (waiting.length <= handOut.validating) return;
          violation(
            `#${record.id} to ${KEYS[record.addr]} got a connection while the older ` +
              `#${waiting[0]!.id} still waits (not first come, first served; they waited ` +
              `${Date.now() - record.issuedAt} and ${Date.now() - waiting[0]!.issuedAt} ms, ` +
              `${handOut.validating} connections were being validated)`,
          );
        })
      );
    }
    queue.splice(at, 1);
    return true;
  }

  /** Checks a connection handed to the model (a lease, or an exchange's attempt). */
  function checkServed(record: AcquireRecord, connection: UpstreamConnection): void {
    if (connection.address.key !== KEYS[record.addr]) {
      violation(`#${record.id} for ${KEYS[record.addr]} got ${connection.address.key}`);
    }
    if (record.abortReason !== undefined) {
      violation(`#${record.id} was served after it left the line on abort`);
    }
    if (record.full) violation(`#${record.id} was served, QUEUE_FULL was expected`);
    const c = connections.get(connection.id);
    if (c === undefined) {
      violation(`#${record.id} got connection ${connection.id}, never opened`);
      return;
    }
    c.watched ??= watchedOf(connection);
    if (c.phase !== "borrowed") {
      violation(`#${record.id} got connection ${c.id} in phase ${c.phase}`);
    }
    if (c.state === undefined) c.state = connection.state;
    else if (c.state !== connection.state) {
      violation(`connection ${c.id}'s state is another object than on its earlier lease`);
    }
    if (guarded && connection.state.setupBy !== connection.id) {
      violation(`connection ${c.id} handed out without the state its setup left`);
    }
    // A connection idle for validateAfter is validated before it is handed
    // out. An acquire that took an idle connection at once (nobody in line)
    // decided when it arrived; one that waited in line, at the hand-out.
    // (+1: the model's clock and the pool's may be a tick apart.)
    const { handOut } = c;
    const idle = record.fastPath
      ? Math.min(handOut.idleMs, record.issuedAt - handOut.idleSince)
      : handOut.idleMs;
    if (
      draw.validatePlans !== undefined && !handOut.validated &&
      (!handOut.created || handOut.idleMs > 0) && idle >= draw.validateAfter + 1
    ) {
      violation(
        `connection ${c.id}, idle ${idle} ms (validateAfter ${draw.validateAfter}), handed ` +
          `out to #${record.id} without validate saying yes`,
      );
    }
  }

  function onResolved(record: AcquireRecord, lease: Acquired): void {
    note(`#${record.id} gets ${lease.connection.id}`);
    record.state = "resolved";
    if (!settledOnce(record, lease.connection)) return;
    record.lease = lease;
    borrowed.push(record);
    if (lease.created) createdLent++;
    else reusedSeen++;
    checkServed(record, lease.connection);
    const c = connections.get(lease.connection.id);
    if (c !== undefined && lease.created !== (c.uses === 1)) {
      violation(`acquire #${record.id}: created ${lease.created} on use ${c.uses}`);
    }
  }

  /** Checks the error an acquire (or an exchange's acquire) was rejected with. */
  function checkAcquireError(record: AcquireRecord, error: unknown, since: number): void {
    const id = `${record.kind} #${record.id} to ${KEYS[record.addr]}`;
    if (record.abortReason !== undefined) {
      if (error !== record.abortReason) {
        violation(`${id} was aborted but rejected with ${error}, not the signal's reason`);
      }
      return;
    }
    if (!(error instanceof PoolError) || !ACQUIRE_CODES.has(error.code)) {
      violation(`${id} rejected with unexpected ${error}`);
      return;
    }
    if (error.address !== KEYS[record.addr]) {
      violation(`${id} rejected with ${error.code} naming ${error.address}`);
    }
    const waited = Date.now() - since;
    if (
      error.code === "ACQUIRE_TIMEOUT" &&
      (draw.acquireTimeout === 30_000 || waited < draw.acquireTimeout - 2)
    ) {
      violation(
        `${id}: ACQUIRE_TIMEOUT after ${waited} ms (acquireTimeout ${draw.acquireTimeout})`,
      );
    }
    if (error.code === "CONNECT_REFUSED" && !mayRefuse[record.addr]) {
      violation(`${id}: CONNECT_REFUSED but its upstream never refused`);
    }
    if (error.code === "CONNECT_TIMEOUT" && draw.connectTimeout === 10_000) {
      violation(`${id}: CONNECT_TIMEOUT with connectTimeout ${draw.connectTimeout}`);
    }
    if (error.code === "SETUP_FAILED" && !guarded) {
      violation(`${id}: SETUP_FAILED without a setup hook`);
    }
    if (error.code === "POOL_CLOSED" && !closing) violation(`${id}: POOL_CLOSED before close()`);
    if (error.code.startsWith("CONNECT_") || error.code === "SETUP_FAILED") connectErrorsSeen++;
  }

  function onRejected(record: AcquireRecord, error: unknown): void {
    record.state = "rejected";
    if (!settledOnce(record, undefined)) return;
    if (
      record.abortReason === undefined && error instanceof PoolError &&
      (error.code === "QUEUE_FULL") !== record.full
    ) {
      violation(
        `#${record.id} rejected with ${error.code}; QUEUE_FULL expected: ${record.full}`,
      );
    }
    checkAcquireError(record, error, record.issuedAt);
  }

  // ---- exchanges -----------------------------------------------------------------

  /** The function an exchange runs: the model's bookkeeping, then a plan. */
  function exchangeFunction(record: AcquireRecord) {
    return (connection: UpstreamConnection): Promise<string> => {
      const k = record.attempts.length;
      const c = connections.get(connection.id);
      if (k === 0) {
        settledOnce(record, connection);
        record.state = "running";
      } else {
        if (!record.retried) violation(`exchange #${record.id} ran again without a retry`);
        else settledOnce(record, connection, freshPending);
        if (!record.idempotent) {
          violation(`exchange #${record.id} ran a non-idempotent function twice`);
        }
        if (k > 1) violation(`exchange #${record.id} ran its function ${k + 1} times`);
        if (c !== undefined && c.uses !== 1) {
          violation(`exchange #${record.id} was retried on connection ${c.id}, not a new one`);
        }
      }
      checkServed(record, connection);
      exchangeHeld.set(connection.id, record);
      if (c !== undefined) c.asked = record.retainFor; // exchange retains with it
      const attempt: Attempt = {
        id: connection.id,
        created: c?.uses === 1,
        plan: hookRng.pick(EXCHANGE_PLANS),
        watched: watchedOf(connection),
        mustDrop: false,
        error: undefined,
        value: undefined,
      };
      if (attempt.watched === undefined) violation(`no watched transport behind ${connection.id}`);
      record.attempts.push(attempt);
      note(`exchange #${record.id} runs ${attempt.plan} on ${connection.id}`);
      return runAttempt(connection, attempt).then((value) => {
        attempt.value = value;
        return value;
      }, (error) => {
        attempt.error = error;
        throw error;
      });
    };
  }

  async function request(connection: UpstreamConnection): Promise<Uint8Array> {
    await connection.write(encoder.encode("Q1"));
    const reply = await connection.read();
    if (reply === null) throw new Error("EOF before the reply (model)");
    if (decoder.decode(reply) !== "Q1") {
      throw new Error(`a garbled reply: "${decoder.decode(reply)}" (model)`);
    }
    return reply;
  }

  async function runAttempt(connection: UpstreamConnection, attempt: Attempt): Promise<string> {
    const reason = new Error("abandoned (model)");
    switch (attempt.plan) {
      case "throw-early":
        throw new Error("the request could not be built (model)");
      case "abandon": {
        await connection.write(encoder.encode("Q1"));
        const controller = new AbortController();
        const read = connection.read({ signal: controller.signal });
        controller.abort(reason);
        return await abandoned(read, attempt, reason);
      }
      case "pre-aborted":
        return await abandoned(
          connection.read({ signal: AbortSignal.abort(reason) }),
          attempt,
          reason,
        );
      case "slow":
        await new Promise<void>((resolve) => slowGates.push(resolve));
        break;
    }
    const reply = await request(connection);
    switch (attempt.plan) {
      case "throw-late":
        throw new Error("the reply did not parse (model)");
      case "unread":
        connection.unread(reply);
        attempt.mustDrop = true;
        return "unread";
      case "release":
        pool.release(connection);
        return "released";
    }
    return decoder.decode(reply);
  }

  async function abandoned(
    read: Promise<Uint8Array | null>,
    attempt: Attempt,
    reason: Error,
  ): Promise<string> {
    try {
      await read;
      return "read";
    } catch (error) {
      if (error !== reason) throw error;
      attempt.mustDrop = true;
      return "abandoned";
    }
  }

  function onExchangeSettled(record: AcquireRecord, value: string | undefined, error: unknown) {
    const id = `exchange #${record.id}`;
    const last = record.attempts.at(-1);
    if (record.attempts.length === 0) {
      // Its acquire failed.
      onRejected(record, error);
      return;
    }
    record.state = error === undefined ? "resolved" : "rejected";
    if (record.retried && record.attempts.length === 1) {
      // The retry's acquire failed (its QUEUE_FULL is not predicted).
      if (settledOnce(record, undefined, freshPending)) {
        checkAcquireError(record, error, record.retryIssuedAt);
      }
      return;
    }
    if (error === undefined) {
      if (value !== last!.value || last!.error !== undefined) {
        violation(`${id} resolved with ${value}, not what its function returned`);
      }
      return;
    }
    if (error !== last!.error) {
      violation(`${id} rejected with ${error}, not what its function threw`);
    }
    if (record.attempts.length === 1) {
      const why = whyNoRetry(record, last!);
      if (why === undefined) {
        violation(
          `${id} was not retried although it is idempotent and connection ${last!.id} was ` +
            `reused, ended and received nothing`,
        );
      }
    }
  }

  // ---- operations -----------------------------------------------------------------

  /**
   * Acquires to `addr` that may hold an idle connection reserved for their
   * settle turn (the fast path): the stats count them as waiting and their
   * connection as idle, but they are not in line.
   */
  const mayHoldReserved = (addr: number): number =>
    pending[addr]!.filter((record) => record.fastPath).length;

  /**
   * QUEUE_FULL, as the counts predict it: the line is full and no room can
   * be made. Undefined when what the stats cannot tell apart leaves it open:
   * a waiter being validated for is out of line, and so is one on the fast
   * path (with its connection reserved, not idle).
   */
  function expectFull(stats: PoolStats, addr: number): boolean | undefined {
    const answers = [0, 1].flatMap((lowest) =>
      [false, true].map((reserved) => {
        const inLine = (a: number): number => {
          const c = counts(stats, a);
          return c.waiting - freshPending[a]!.length - (lowest ? c.validating : 0);
        };
        const c = counts(stats, addr);
        const limits = draw.limits[addr]!;
        // (reserved ones count in both, so they cancel out here)
        if (inLine(addr) < c.idle + limits.maxWaiting) return false;
        if (sizeOf(stats, addr) >= limits.maxPerHost) return true;
        if (totalOf(stats) < draw.maxTotal) return false;
        // At maxTotal, room is made by closing an idle connection of an
        // address that nobody waits for.
        for (let other = 0; other < n; other++) {
          const held = reserved ? mayHoldReserved(other) : 0;
          if (other !== addr && counts(stats, other).idle - held > 0 && inLine(other) - held <= 0) {
            return false;
          }
        }
        return true;
      })
    );
    return answers.every((answer) => answer === answers[0]) ? answers[0] : undefined;
  }

  function newRecord(
    kind: AcquireRecord["kind"],
    addr: number,
    signal: "none" | "live" | "aborted",
  ): AcquireRecord {
    return {
      id: acquires.length,
      kind,
      addr,
      issuedAt: Date.now(),
      state: "pending",
      controller: signal === "none" ? undefined : new AbortController(),
      abortReason: undefined,
      full: false,
      fastPath: false,
      lease: undefined,
      returned: false,
      reading: false,
      leftover: false,
      abandoned: false,
      abortRead: undefined,
      retainedAs: undefined,
      idempotent: false,
      retainFor: undefined,
      attempts: [],
      retried: false,
      retryIssuedAt: 0,
    };
  }

  /** Issues an acquire or an exchange, checking that it joins the line (or not) as predicted. */
  function issue(
    kind: AcquireRecord["kind"],
    addr: number,
    signal: "none" | "live" | "aborted",
  ): void {
    const before = pool.stats();
    const record = newRecord(kind, addr, signal);
    const full = signal === "aborted" ? false : expectFull(before, addr);
    record.full = full === true;
    const c = counts(before, addr);
    record.fastPath = c.idle > 0 &&
      c.waiting - freshPending[addr]!.length - c.validating - mayHoldReserved(addr) <= 0;
    if (signal === "aborted") {
      record.abortReason = new Error(`abort of #${record.id} (pre-aborted)`);
      record.controller!.abort(record.abortReason);
    }
    acquires.push(record);
    pending[addr]!.push(record);
    const options = { signal: record.controller?.signal };
    if (kind === "acquire") {
      note(`acquire #${record.id} ${KEYS[addr]} signal=${signal} full=${full}`);
      pool.acquire(ADDRESSES[addr]!, options).then(
        (lease) => onResolved(record, lease),
        (error) => onRejected(record, error),
      );
    } else {
      record.idempotent = rng.chance(0.6);
      record.retainFor = rng.chance(0.2) ? rng.pick([0, 10, 100_000]) : undefined;
      note(
        `exchange #${record.id} ${KEYS[addr]} idempotent=${record.idempotent} signal=${signal} ` +
          `idleTimeout=${record.retainFor} full=${full}`,
      );
      pool.exchange(ADDRESSES[addr]!, exchangeFunction(record), {
        ...options,
        idempotent: record.idempotent,
        ...(record.retainFor === undefined ? {} : { idleTimeout: record.retainFor }),
      }).then(
        (value) => onExchangeSettled(record, value, undefined),
        (error) => onExchangeSettled(record, undefined, error),
      );
    }
    const delta = counts(pool.stats(), addr).waiting - counts(before, addr).waiting;
    if (full === undefined && signal !== "aborted") record.full = delta === 0;
    const expected = signal === "aborted" || record.full ? 0 : 1;
    if (delta !== expected) {
      violation(
        `#${record.id}: waiting changed by ${delta}, expected ${expected} (before: ${
          JSON.stringify(before.byAddress)
        }, ${totalOf(before)} in all)`,
      );
    }
  }

  function abortOne(): void {
    const candidates = acquires.filter((record) =>
      record.state === "pending" && record.controller !== undefined &&
      record.abortReason === undefined && !record.full
    );
    if (candidates.length === 0) return;
    const record = rng.pick(candidates);
    const key = KEYS[record.addr]!;
    const before = counts(pool.stats(), record.addr).waiting;
    const reason = new Error(`abort of #${record.id}`);
    note(`abort #${record.id}`);
    record.controller!.abort(reason);
    const after = counts(pool.stats(), record.addr).waiting;
    if (after !== before - 1) {
      violation(`abort of #${record.id}: ${key} waiting went ${before} -> ${after}, not down by 1`);
    }
    record.abortReason = reason;
  }

  /** Why retain() must close the connection rather than pool it, if it must. */
  function mustClose(record: AcquireRecord, c: ConnectionModel, idleTimeout?: number) {
    if (record.leftover) return "had bytes put back with unread()";
    if (record.abandoned) return "had a read abandoned through its signal";
    if (c.epoch < drainEpoch[c.addr]!) return "was drained";
    if (c.uses >= draw.maxUses) return `was handed out maxUses (${draw.maxUses}) times`;
    if (idleTimeout === 0) return "was retained with idleTimeout 0";
    return undefined;
  }

  function giveBack(record: AcquireRecord, how: "retain" | "release", idleTimeout?: number): void {
    const at = borrowed.indexOf(record);
    borrowed.splice(at, 1);
    record.returned = true;
    const connection = record.lease!.connection;
    const c = connections.get(connection.id);
    const before = counts(pool.stats(), record.addr).borrowed;
    if (how === "retain") {
      const must = c === undefined ? undefined : mustClose(record, c, idleTimeout);
      if (c !== undefined) c.asked = idleTimeout;
      const pooled = idleTimeout === undefined
        ? pool.retain(connection)
        : pool.retain(connection, { idleTimeout });
      if (c !== undefined) c.asked = undefined;
      record.retainedAs = pooled;
      note(`retain #${record.id} (${connection.id}) idleTimeout=${idleTimeout} -> ${pooled}`);
      if (pooled && must !== undefined) {
        violation(`retain #${record.id} pooled connection ${connection.id}, which ${must}`);
      }
      if (c !== undefined && c.lastRetained !== pooled) {
        violation(
          `retain #${record.id} returned ${pooled}, its returned event said retained: ${c.lastRetained}`,
        );
      }
    } else {
      pool.release(connection);
      note(`release #${record.id} (${connection.id})`);
    }
    const after = counts(pool.stats(), record.addr).borrowed;
    if (after !== before - 1) {
      violation(`${how} of #${record.id}: borrowed went ${before} -> ${after}`);
    }
  }

  function retainOrRelease(record: AcquireRecord, retainShare: number): void {
    if (!rng.chance(retainShare)) return giveBack(record, "release");
    const idleTimeout = rng.chance(0.25) ? rng.pick([0, 2, 10, 50, 100_000]) : undefined;
    giveBack(record, "retain", idleTimeout);
  }

  function giveBackTwice(): void {
    const returned = acquires.filter((record) => record.returned);
    if (returned.length === 0) return;
    const record = rng.pick(returned);
    const connection = record.lease!.connection;
    const before = JSON.stringify(pool.stats());
    note(`retain/release #${record.id} again`);
    for (const call of [() => pool.retain(connection), () => pool.release(connection)]) {
      try {
        call();
        violation(`giving #${record.id} back twice did not throw`);
      } catch (error) {
        if (!(error instanceof PoolError) || error.code !== "NOT_BORROWED") {
          violation(`giving #${record.id} back twice threw ${error}, not NOT_BORROWED`);
        }
      }
    }
    // The handle is dead: it can never touch the connection's next holder.
    try {
      connection.unread(byte);
      violation(`unread() on #${record.id}'s handle after it was given back did not throw`);
    } catch (error) {
      if (!isLeaseEnded(error)) violation(`unread() on a dead handle threw ${error}`);
    }
    for (const call of [() => connection.read(), () => connection.write(byte)]) {
      call().then(
        () => violation(`a dead handle of #${record.id} could still read or write`),
        (error) => {
          if (!isLeaseEnded(error)) violation(`a dead handle's read or write rejected ${error}`);
        },
      );
    }
    if (JSON.stringify(pool.stats()) !== before) {
      violation(`giving #${record.id} back twice changed the stats`);
    }
  }

  /** A request on a borrowed connection: write one byte, read the echo (or not). */
  function requestOn(record: AcquireRecord, readReply: boolean): void {
    const connection = record.lease!.connection;
    note(`${readReply ? "request on" : "stray write on"} #${record.id}`);
    connection.write(byte).catch(() => {});
    if (!readReply || record.reading) return;
    record.reading = true;
    record.leftover = false; // a read takes the bytes put back first, at once
    connection.read().then(
      () => record.reading = false,
      () => record.reading = false,
    );
  }

  /** A parser that read past its reply puts the bytes back. */
  function readAndUnread(record: AcquireRecord): void {
    if (record.reading) return;
    const connection = record.lease!.connection;
    note(`read and unread on #${record.id}`);
    record.reading = true;
    connection.write(byte).catch(() => {});
    connection.read().then((chunk) => {
      record.reading = false;
      if (chunk === null) return;
      try {
        connection.unread(chunk);
        record.leftover = true;
      } catch (error) {
        if (!record.returned || !isLeaseEnded(error)) {
          violation(`unread() on #${record.id} threw ${error}`);
        }
      }
    }, () => record.reading = false);
  }

  /** A read the borrower may abandon through its signal (now, or in a later step). */
  function abandonableRead(record: AcquireRecord): void {
    if (record.reading) return;
    const connection = record.lease!.connection;
    const controller = new AbortController();
    const reason = new Error(`read on #${record.id} abandoned`);
    record.reading = true;
    record.abortRead = () => {
      note(`abort the read on #${record.id}`);
      controller.abort(reason);
    };
    note(`abandonable read on #${record.id}`);
    record.leftover = false; // a read takes the bytes put back first, at once
    connection.read({ signal: controller.signal }).then(
      () => {
        record.reading = false;
        record.abortRead = undefined;
      },
      (error) => {
        record.reading = false;
        record.abortRead = undefined;
        if (error === reason) {
          record.abandoned = true;
          if (record.retainedAs === true) {
            violation(`retain #${record.id} pooled a connection whose read had been abandoned`);
          }
        } else if (!(error instanceof PoolError)) {
          violation(`a read on #${record.id} rejected with ${error}`);
        }
      },
    );
    if (rng.chance(0.5)) record.abortRead();
  }

  function add(addr: number): void {
    note(`add ${KEYS[addr]}`);
    addsPending++;
    pool.add(ADDRESSES[addr]!).then(
      () => addsPending--,
      (error) => {
        addsPending--;
        if (!(error instanceof PoolError) || !ADD_CODES.has(error.code)) {
          violation(`add(${KEYS[addr]}) rejected with unexpected ${error}`);
        } else if (error.code.startsWith("CONNECT_") || error.code === "SETUP_FAILED") {
          connectErrorsSeen++;
        }
      },
    );
  }

  function drain(addr: number): void {
    note(`drain ${KEYS[addr]}`);
    drainEpoch[addr]!++;
    pool.drain(ADDRESSES[addr]!);
    const left = counts(pool.stats(), addr).idle;
    if (left !== 0) violation(`drain(${KEYS[addr]}) left ${left} idle`);
  }

  function openPeers(refed: boolean): MemoryPeer[] {
    return peers.filter((peer) => !peer.closed && peer.clientRefed === refed);
  }

  /** One synchronous operation (some find nothing to act on and do nothing). */
  function syncOp(): void {
    const roll = rng.int(100);
    const addr = rng.int(n);
    if (roll < 22) {
      issue("acquire", addr, rng.chance(0.3) ? "live" : rng.chance(0.03) ? "aborted" : "none");
    } else if (roll < 30) {
      issue("exchange", addr, rng.chance(0.2) ? "live" : "none");
    } else if (roll < 46) {
      if (borrowed.length > 0) retainOrRelease(rng.pick(borrowed), 0.75);
    } else if (roll < 50) {
      abortOne();
    } else if (roll < 55) {
      if (borrowed.length > 0) requestOn(rng.pick(borrowed), rng.chance(0.8));
    } else if (roll < 57) {
      if (borrowed.length > 0) readAndUnread(rng.pick(borrowed));
    } else if (roll < 59) {
      if (borrowed.length > 0) abandonableRead(rng.pick(borrowed));
      const reading = borrowed.filter((record) => record.abortRead !== undefined);
      if (reading.length > 0 && rng.chance(0.5)) rng.pick(reading).abortRead!();
    } else if (roll < 61) {
      if (slowGates.length > 0) {
        note("a slow exchange goes on");
        slowGates.splice(rng.int(slowGates.length), 1)[0]!();
      }
    } else if (roll < 67) {
      // The upstream closes or writes into an idle connection.
      const idle = openPeers(false);
      if (idle.length === 0) return;
      const peer = rng.pick(idle);
      const what = rng.pick(["end", "write", "reset"] as const);
      note(`peer ${what} on an idle connection to ${peer.address.key}`);
      if (what === "end") peer.end();
      else if (what === "write") peer.write("stray");
      else {
        resetPeers.add(peer);
        peer.reset();
      }
    } else if (roll < 70) {
      // The upstream's idle timer fires just as the next request arrives.
      const idle = upstreams.filter((up) =>
        !up.peer.closed && !up.peer.clientRefed && up.edge === "none"
      );
      if (idle.length === 0) return;
      const upstream = rng.pick(idle);
      upstream.edge = rng.pick(["end", "end", "reset", "partial"] as const);
      note(`the next request to ${KEYS[upstream.addr]} meets the edge: ${upstream.edge}`);
    } else if (roll < 73) {
      // ... or into a lent one (borrowed, setting up, validating).
      const lent = openPeers(true);
      if (lent.length === 0) return;
      const peer = rng.pick(lent);
      const what = rng.pick(["end", "write", "write", "reset"] as const);
      note(`peer ${what} on a lent connection to ${peer.address.key}`);
      if (what === "end") peer.end();
      else if (what === "write") peer.write("stray");
      else {
        resetPeers.add(peer);
        peer.reset();
      }
    } else if (roll < 79) {
      if (held.length === 0) return;
      const connect = held.splice(rng.int(held.length), 1)[0]!;
      const refuse = rng.chance(0.25);
      note(`${refuse ? "refuse" : "let through"} a held connect to ${KEYS[connect.addr]}`);
      if (refuse) {
        mayRefuse[connect.addr] = true;
        connect.fail(refusedError());
      } else connect.open();
    } else if (roll < 84) {
      const next = rng.pick(["now", "now", "hold", "hold", "refuse"] as const);
      if (next === "refuse") mayRefuse[addr] = true;
      note(`connects to ${KEYS[addr]}: ${next}`);
      mode[addr] = next;
    } else if (roll < 86) {
      if (listening[addr]) {
        mayRefuse[addr] = true;
        memory.unlisten(ADDRESSES[addr]!);
      } else listen(addr);
      listening[addr] = !listening[addr];
      note(`${KEYS[addr]} ${listening[addr] ? "listens again" : "stops listening"}`);
    } else if (roll < 88) {
      add(addr);
    } else if (roll < 89) {
      drain(addr);
    } else if (roll < 90) {
      giveBackTwice();
    } else {
      // Nothing this time: the step only lets the pool react.
      note("pass");
    }
  }

  /** Lets the pool react: deliveries, settle turns, connects, hand-outs. */
  async function settle(): Promise<void> {
    for (let round = 0; round < 2; round++) {
      await memory.settle();
      await macrotask();
    }
  }

  async function runStep(): Promise<void> {
    connectsThisStep = 0;
    expiresThisStep = 0;
    for (const wake of lateWakes.splice(0)) wake();
    // An upstream that refuses or holds connects recovers after a while.
    for (let addr = 0; addr < n; addr++) {
      if (mode[addr] !== "now" && rng.chance(0.04)) {
        note(`connects to ${KEYS[addr]}: now`);
        mode[addr] = "now";
      }
      if (!listening[addr] && rng.chance(0.04)) {
        note(`${KEYS[addr]} listens again`);
        listen(addr);
        listening[addr] = true;
      }
    }
    const roll = rng.int(100);
    if (roll < 6) {
      // Several operations in one turn, before the pool can react.
      const count = 2 + rng.int(3);
      note(`burst of ${count}`);
      for (let i = 0; i < count; i++) syncOp();
    } else if (roll < 9) {
      // Several borrowers finish in the same turn.
      note("borrowers finish together");
      for (let i = 2 + rng.int(2); i > 0 && borrowed.length > 0; i--) {
        retainOrRelease(rng.pick(borrowed), 0.8);
      }
      if (rng.chance(0.3)) abortOne();
    } else if (roll < 12) {
      // Mostly short; now and then long enough for the short timeouts drawn.
      const ms = rng.chance(0.1) ? rng.pick([draw.acquireTimeout, 30]) : rng.pick([1, 2, 5]);
      const wait = Math.min(ms, 70);
      note(`time passes: ${wait} ms`);
      await sleep(wait);
    } else {
      syncOp();
    }
    hardLimits(`after step ${step}`);
    failIfViolated();
    await settle();
    checkAll(`after step ${step}`);
    failIfViolated();
  }

  const running = (): AcquireRecord[] =>
    acquires.filter((record) => record.state === "pending" || record.state === "running");

  try {
    for (let addr = 0; addr < n; addr++) listen(addr);
    for (step = 1; step <= steps; step++) await runStep();

    // Wind-down: upstreams accept again, everything borrowed is given back,
    // slow exchanges go on, and every acquire still in line must be served
    // (or time out) without the pool being closed: nobody is starved.
    step = steps + 1;
    note("wind-down");
    for (let addr = 0; addr < n; addr++) {
      mode[addr] = "now";
      if (!listening[addr]) listen(addr);
      listening[addr] = true;
    }
    for (const connect of held.splice(0)) connect.open();
    const windDownStart = Date.now();
    for (;;) {
      for (const wake of lateWakes.splice(0)) wake();
      for (const gate of slowGates.splice(0)) gate();
      for (const record of [...borrowed]) retainOrRelease(record, 0.7);
      await settle();
      const stats = checkAll("while winding down");
      failIfViolated();
      const busy = stats.connecting + stats.settingUp + stats.validating;
      if (running().length === 0 && borrowed.length === 0 && busy === 0 && addsPending === 0) {
        break;
      }
      if (Date.now() - windDownStart > 3000) {
        assert.fail(
          `starved: after 3 s of winding down, ${
            running().map((record) => `#${record.id} (${record.state})`).join(", ")
          } are unfinished, ${borrowed.length} borrowed, ${busy} connecting, setting up or ` +
            `validating\n${where()}`,
        );
      }
      if (borrowed.length === 0) await sleep(1);
    }

    if (closeWithTimeout) {
      // Close with work outstanding: waiters, borrowed, slow exchanges and held connects.
      step++;
      for (let i = 0; i < 6; i++) issue("acquire", rng.int(n), "none");
      for (let i = rng.int(3); i > 0; i--) issue("exchange", rng.int(n), "none");
      await settle();
      mode[0] = "hold";
      issue("acquire", 0, "none");
      await settle();
      checkAll("before close");
      failIfViolated();
      note("close({ timeout: 100 })");
      closing = true;
      // Long enough that the half given back below always comes back in
      // time, even on a loaded machine (5 ms once was not).
      const closed = pool.close({ timeout: 100 });
      await macrotask();
      const stats = pool.stats();
      assert.equal(stats.waiting, 0, `waiters left after close()\n${where()}`);
      assert.equal(stats.idle, 0, `idle left after close()\n${where()}`);
      // Half come back in time (retain closes them now), the rest are cut off.
      const late = borrowed.splice(0);
      for (const record of late.splice(0, late.length >> 1)) {
        borrowed.push(record);
        giveBack(record, "retain");
      }
      await closed;
      for (const record of late) {
        assert.throws(
          () => pool.retain(record.lease!.connection),
          (error: unknown) => error instanceof PoolError && error.code === "NOT_BORROWED",
          `a connection cut off by close({ timeout }) is no longer borrowed\n${where()}`,
        );
        record.returned = true;
      }
      for (const connect of held.splice(0)) connect.open();
    } else {
      note("close()");
      closing = true;
      await pool.close();
    }
    // Whatever still runs (slow exchanges cut off, hooks that hung) goes on
    // and finds its handle dead.
    for (let round = 0; round < 3; round++) {
      for (const wake of lateWakes.splice(0)) wake();
      for (const gate of slowGates.splice(0)) gate();
      await settle();
    }
    failIfViolated();

    // Nothing is left: no count, no connection, no timer, no pending acquire.
    const stats = pool.stats();
    assert.deepEqual(
      [stats.idle, stats.borrowed, stats.connecting, stats.settingUp, stats.validating],
      [0, 0, 0, 0, 0],
      `connections left after close() (idle, borrowed, connecting, setting up, validating)\n${where()}`,
    );
    assert.equal(stats.waiting, 0, `waiters left after close()\n${where()}`);
    assert.deepEqual(stats.byAddress, {}, `addresses left after close()\n${where()}`);
    assert.equal(memory.openConnections, 0, `connections left open\n${where()}`);
    assert.ok(
      peers.every((peer) => peer.closed),
      `an upstream connection is still open\n${where()}`,
    );
    assert.deepEqual(
      running().map((record) => record.id),
      [],
      `acquires or exchanges never settled\n${where()}`,
    );
    assert.equal(addsPending, 0, `add() calls never settled\n${where()}`);
    assert.equal(hooksRunning, 0, `hooks still running after close()\n${where()}`);
    const open = [...connections.values()].filter((c) => c.phase !== "closed");
    assert.deepEqual(
      open.map((c) => `${c.id}: ${c.phase}`),
      [],
      `connections without a closed event\n${where()}`,
    );
    checkAll("after close");
    failIfViolated();
    assert.deepEqual([...timers.live.values()], [], `timers left behind\n${where()}`);
    assert.ok(refedTimers() <= refedBefore, `ref'd timers left behind\n${where()}`);
    if (envNumber("POOL_MODEL_DEBUG")) {
      const { totals } = stats;
      const resolved = acquires.filter((record) => record.state === "resolved").length;
      const exchanges = acquires.filter((record) => record.kind === "exchange").length;
      console.log(
        `seed ${seed}: ${acquires.length} acquires and exchanges (${exchanges} exchanges, ` +
          `${resolved} served), ${totals.created} connections opened, ${totals.reused} reused, ` +
          `${totals.failed} connects failed (${totals.setupFailed} setups), ` +
          `${totals.validationFailed} failed validation, ${totals.expired} expired, ` +
          `${totals.broken} broken, ${totals.dropped} dropped, ${totals.maxUses} at maxUses, ` +
          `${totals.drained} drained, ${edgeCloses} edge closes, ${totals.retried} retried, ` +
          `${totals.timedOut} timed out, in ${Date.now() - startedAt} ms`,
      );
    }
    // Checked last, so that a breach does not hide any other finding.
    if (idleBreaches.length > 0) assert.fail(`idle limit exceeded: ${idleBreaches[0]}`);
  } finally {
    timers.restore();
    if (!closing) await pool.close();
    for (const wake of lateWakes.splice(0)) wake();
    for (const gate of slowGates.splice(0)) gate();
  }
}

// ---------------------------------------------------------------------------

function seedsToRun(): number[] {
  const one = envNumber("POOL_MODEL_SEED");
  if (one !== undefined) return [one];
  let range: string | undefined;
  try {
    range = process.env["POOL_MODEL_SEEDS"];
  } catch {
    range = undefined; // no permission to read the environment
  }
  const match = /^(\d+)-(\d+)$/.exec(range ?? "");
  if (match === null) return [1, 2, 3, 4];
  const from = Number(match[1]);
  return Array.from({ length: Number(match[2]) - from + 1 }, (_, i) => from + i);
}

const SEEDS = seedsToRun();
const STEPS = envNumber("POOL_MODEL_OPS") ?? 1500;

describe("pool model: random operations checked against a model", () => {
  for (const seed of SEEDS) {
    test(`seed ${seed}: ${STEPS} steps, then ${seed % 2 === 0 ? "close()" : "close({ timeout })"}`, async () => {
      await runModel(seed, STEPS, seed % 2 === 1);
    });
  }
});

// ---------------------------------------------------------------------------
// Reduced cases: what the model found, one deterministic test each.

const A = ADDRESSES[0]!;
const B = ADDRESSES[1]!;

function echoUpstreams(): MemoryTransport {
  const transport = new MemoryTransport();
  for (const address of [A, B]) transport.listen(address, (peer) => peer.echo());
  return transport;
}

/** Connections the pool counts, by its stats. */
function counted(pool: ConnectionPool): number {
  const stats = pool.stats();
  return stats.idle + stats.borrowed + stats.connecting;
}

/** Settles to the acquire's result, or to `undefined` if it is still waiting after `ms`. */
function within(promise: Promise<Acquired>, ms: number): Promise<Acquired | undefined> {
  return Promise.race([promise, sleep(ms).then(() => undefined)]);
}

/**
 * A's waiter is served; then B's must be too within `ms`, although B was
 * held back by maxTotal. Gives everything back and closes the pool.
 */
async function expectBothServed(
  pool: ConnectionPool,
  forA: Promise<Acquired>,
  forB: Promise<Acquired>,
  ms: number,
  room: string,
): Promise<void> {
  const gotA = await forA;
  const gotB = await within(forB, ms);
  const stats = pool.stats();
  pool.release(gotA.connection);
  if (gotB !== undefined) pool.release(gotB.connection);
  await pool.close();
  await forB.catch(() => {});
  assert.ok(gotB !== undefined, `B still waits with ${room}: ${JSON.stringify(stats.byAddress)}`);
}

describe("pool model: reduced cases", () => {
  test("maxIdle 1: a retained connection that evicts the last idle one stays counted and is closed by close()", async () => {
    const transport = echoUpstreams();
    const pool = new ConnectionPool({ transport, maxIdle: 1 });
    const first = await pool.acquire(A);
    const second = await pool.acquire(A);
    assert.equal(pool.retain(first.connection), true);
    assert.equal(pool.retain(second.connection), true);
    // The first is closed to keep maxIdle; the second is idle, and counted.
    assert.equal(transport.openConnections, 1);
    assert.equal(pool.stats().idle, 1, "the pooled connection is missing from stats()");
    assert.equal(counted(pool), transport.openConnections);
    await pool.close();
    assert.equal(transport.openConnections, 0, "close() left a connection open");
  });

  for (const limit of [{ maxIdlePerHost: 0 }, { maxIdle: 0 }]) {
    test(`${JSON.stringify(limit)}: two retained in one turn for one waiter, the other is closed`, async () => {
      const transport = echoUpstreams();
      const pool = new ConnectionPool({ transport, maxPerHost: 2, ...limit });
      const first = await pool.acquire(A);
      const second = await pool.acquire(A);
      const waiter = pool.acquire(A);
      await macrotask();
      assert.equal(pool.stats().waiting, 1);
      pool.retain(first.connection);
      pool.retain(second.connection);
      const next = await waiter;
      await macrotask();
      const stats = pool.stats();
      try {
        assert.deepEqual([stats.borrowed, stats.waiting], [1, 0]);
        assert.equal(
          stats.idle,
          0,
          `${stats.idle} idle connection kept past ${JSON.stringify(limit)}`,
        );
        assert.equal(transport.openConnections, 1);
      } finally {
        pool.release(next.connection);
        await pool.close();
      }
    });
  }

  test("maxIdlePerHost 0: a connection retained for a waiter that aborts in the same turn is closed", async () => {
    const transport = echoUpstreams();
    const pool = new ConnectionPool({ transport, maxPerHost: 1, maxIdlePerHost: 0 });
    const first = await pool.acquire(A);
    const controller = new AbortController();
    const reason = new Error("the caller went away");
    const waiter = pool.acquire(A, { signal: controller.signal });
    await macrotask();
    pool.retain(first.connection);
    controller.abort(reason);
    await assert.rejects(waiter, (error) => error === reason);
    await macrotask();
    const idle = pool.stats().idle;
    await pool.close();
    assert.equal(idle, 0, "an idle connection was kept past maxIdlePerHost 0");
  });

  test("maxTotal: a connection left idle after a hand-out makes room for another address's waiter", async () => {
    const transport = echoUpstreams();
    const pool = new ConnectionPool({ transport, maxTotal: 2 });
    const first = await pool.acquire(A);
    const second = await pool.acquire(A);
    const forB = pool.acquire(B);
    const forA = pool.acquire(A);
    await macrotask();
    assert.equal(pool.stats().waiting, 2);
    // Both come back in one turn: one goes to A's waiter, one is left idle.
    pool.retain(first.connection);
    pool.retain(second.connection);
    // A has nobody waiting after this: its idle connection must make room for B.
    await expectBothServed(pool, forA, forB, 200, "an idle connection to A that could make room");
  });

  test("maxTotal: a connection that reaches maxLifetime during a hand-out frees its slot for another address", async () => {
    const transport = echoUpstreams();
    const pool = new ConnectionPool({ transport, maxTotal: 2, order: "fifo", maxLifetime: 100 });
    const old = await pool.acquire(A);
    await sleep(50);
    const young = await pool.acquire(A);
    const forB = pool.acquire(B);
    const forA = pool.acquire(A);
    await sleep(60); // `old` is past its lifetime, `young` is not
    pool.retain(old.connection);
    pool.retain(young.connection);
    // `old` was closed at the hand-out: one connection in all, B may connect.
    await expectBothServed(pool, forA, forB, 30, "a free slot under maxTotal");
  });

  test("close() with two waiters leaves no timer behind", async () => {
    const timers = new TimerWatch();
    timers.install();
    try {
      const transport = echoUpstreams();
      const pool = new ConnectionPool({ transport, maxPerHost: 1 });
      const held = await pool.acquire(A);
      const waiters = [pool.acquire(A), pool.acquire(A)];
      await macrotask();
      await pool.close();
      for (const waiter of waiters) {
        await assert.rejects(
          waiter,
          (error) => error instanceof PoolError && error.code === "POOL_CLOSED",
        );
      }
      pool.retain(held.connection);
      await transport.settle();
      assert.deepEqual([...timers.live.values()], [], "timers left after close()");
    } finally {
      timers.restore();
    }
  });

  for (
    const [what, options, addresses] of [
      ["minIdlePerHost 2 above maxIdlePerHost 1", { minIdlePerHost: 2, maxIdlePerHost: 1 }, [A]],
      ["minIdlePerHost 1 on two addresses with maxIdle 1", { minIdlePerHost: 1, maxIdle: 1 }, [
        A,
        B,
      ]],
    ] as const
  ) {
    test(`${what}: no endless loop of connects and closes`, async () => {
      const transport = echoUpstreams();
      let pool: ConnectionPool;
      let expiries = 0;
      try {
        pool = new ConnectionPool({
          transport,
          ...options,
          // The loop runs in microtasks, so no timer could stop it: stop it here.
          onEvent: (event) => {
            if (event.type === "expire" && ++expiries === 1000) void pool.close();
          },
        });
      } catch (error) {
        assert.ok(error instanceof RangeError, `unexpected ${error}`);
        return; // refusing the combination is a fix too
      }
      for (const address of addresses) {
        const lease = await pool.acquire(address).catch(() => undefined);
        if (lease !== undefined && !pool.closed) pool.retain(lease.connection);
      }
      await sleep(20);
      const created = pool.stats().totals.created;
      await pool.close();
      assert.ok(expiries < 1000, `${expiries} connections closed by policy, ${created} opened`);
      assert.ok(created <= 4, `${created} connections opened for ${addresses.length} address(es)`);
    });
  }

  for (
    const [what, options, retain] of [
      ["maxIdle 0", { maxIdle: 0 }, {}],
      ["maxIdlePerHost 0", { maxIdlePerHost: 0 }, {}],
      ["retain({ idleTimeout: 0 })", {}, { idleTimeout: 0 }],
      ["drain()", {}, {}],
    ] as const
  ) {
    test(`${what}: the returned event says what retain() did`, async () => {
      const transport = echoUpstreams();
      const events: PoolEvent[] = [];
      const pool = new ConnectionPool({
        transport,
        ...options,
        onEvent: (event) => events.push(event),
      });
      const { connection } = await pool.acquire(A);
      if (what === "drain()") pool.drain(A);
      const pooled = pool.retain(connection, retain);
      await pool.close();
      const returned = events.find((event) => event.type === "returned");
      const closed = events.find((event) => event.type === "closed");
      assert.equal(pooled, false);
      assert.deepEqual(
        [returned?.type === "returned" && returned.retained, closed?.type],
        [false, "closed"],
        "the connection was closed, but the returned event said retained",
      );
    });
  }

  describe("drain() closes every connection opened before it, whatever it is doing", () => {
    /** A gate a hook waits on; `open(value)` lets it go on. */
    function gate<T>(): { wait: Promise<T>; open(value: T): void } {
      let open!: (value: T) => void;
      const wait = new Promise<T>((resolve) => open = resolve);
      return { wait, open };
    }

    async function expectNewConnection(
      pool: ConnectionPool,
      events: PoolEvent[],
      next: Promise<Acquired>,
      drainedId: number,
    ): Promise<void> {
      const lease = await next;
      pool.release(lease.connection);
      await pool.close();
      const closed = events.find((event) => event.type === "closed" && event.id === drainedId);
      assert.notEqual(
        lease.connection.id,
        drainedId,
        "a connection opened before drain() was handed out",
      );
      assert.equal(closed?.type === "closed" && closed.reason, "drained");
    }

    test("one still in setup is not handed out when its setup finishes", async () => {
      const setupDone = gate<void>();
      let setups = 0;
      const events: PoolEvent[] = [];
      const pool = new ConnectionPool({
        transport: echoUpstreams(),
        setup: () => ++setups === 1 ? setupDone.wait : undefined,
        onEvent: (event) => events.push(event),
      });
      const next = pool.acquire(A);
      await sleep(5);
      assert.equal(pool.stats().settingUp, 1);
      pool.drain(A);
      setupDone.open();
      await expectNewConnection(pool, events, next, 1);
    });

    test("one being validated is not handed out when validate says yes", async () => {
      const verdict = gate<boolean>();
      const events: PoolEvent[] = [];
      const pool = new ConnectionPool({
        transport: echoUpstreams(),
        validate: () => verdict.wait,
        validateAfter: 0,
        onEvent: (event) => events.push(event),
      });
      const first = await pool.acquire(A);
      pool.retain(first.connection);
      const next = pool.acquire(A);
      await sleep(5);
      assert.equal(pool.stats().validating, 1);
      pool.drain(A);
      verdict.open(true);
      await expectNewConnection(pool, events, next, first.connection.id);
    });

    test("one taken for an acquire during its settle turn is not handed out", async () => {
      const events: PoolEvent[] = [];
      const pool = new ConnectionPool({
        transport: echoUpstreams(),
        onEvent: (event) => events.push(event),
      });
      const first = await pool.acquire(A);
      pool.retain(first.connection);
      const next = pool.acquire(A);
      pool.drain(A);
      await expectNewConnection(pool, events, next, first.connection.id);
    });
  });

  test("close() rejects at once an acquire whose connection validate is checking", async () => {
    let answer = (_: boolean): void => {};
    const pool = new ConnectionPool({
      transport: echoUpstreams(),
      validate: () => new Promise<boolean>((resolve) => answer = resolve),
      validateAfter: 0,
    });
    const first = await pool.acquire(A);
    pool.retain(first.connection);
    const next = pool.acquire(A);
    const outcome = next.then(() => "served", (error) => error);
    await sleep(5);
    assert.equal(pool.stats().validating, 1);
    const closed = pool.close();
    const waiting = pool.stats().waiting;
    const settled = await Promise.race([outcome, sleep(100).then(() => "still waiting")]);
    answer(true); // lets the hook finish, too late
    await closed;
    assert.equal(waiting, 0, "the acquire still counted as waiting after close()");
    assert.ok(
      settled instanceof PoolError && settled.code === "POOL_CLOSED",
      `the acquire was not rejected by close(): ${settled}`,
    );
  });

  test('order "fifo": a connection idle past validateAfter is validated, nobody in line or not', async () => {
    let validations = 0;
    const pool = new ConnectionPool({
      transport: echoUpstreams(),
      order: "fifo",
      validate: () => {
        validations++;
        return true;
      },
      validateAfter: 50,
    });
    const first = await pool.acquire(A);
    const second = await pool.acquire(A);
    pool.retain(first.connection);
    await sleep(60);
    pool.retain(second.connection);
    // "fifo" hands out the connection idle the longest: past validateAfter.
    const next = await pool.acquire(A);
    pool.release(next.connection);
    await pool.close();
    assert.equal(next.connection.id, first.connection.id);
    assert.ok(next.idleMs >= 50, `idle ${next.idleMs} ms`);
    assert.equal(validations, 1, "handed out without validate");
  });

  test("waiters whose connections fail validation one after the other keep their order", async () => {
    const transport = new MemoryTransport();
    const held: (() => void)[] = [];
    let holding = false;
    transport.listen(A, (peer) => peer.echo(), {
      accept: () => holding ? new Promise<void>((open) => held.push(open)) : undefined,
    });
    const verdicts: ((ok: boolean) => void)[] = [];
    const pool = new ConnectionPool({
      transport,
      maxPerHost: 2,
      validate: () => new Promise<boolean>((resolve) => verdicts.push(resolve)),
      validateAfter: 0,
    });
    const first = await pool.acquire(A);
    const second = await pool.acquire(A);
    const served: string[] = [];
    const older = pool.acquire(A).then((lease) => (served.push("older"), lease));
    const newer = pool.acquire(A).then((lease) => (served.push("newer"), lease));
    holding = true; // the connects that replace the failed ones wait
    pool.retain(first.connection);
    await sleep(5);
    pool.retain(second.connection);
    await sleep(5);
    assert.equal(verdicts.length, 2, "both connections are being validated");
    verdicts[0]!(false); // the older waiter's connection fails first...
    await sleep(5);
    verdicts[1]!(false); // ...then the newer one's
    await sleep(5);
    held.shift()!(); // one new connection: it is the older waiter's
    const lease = await Promise.race([older, newer]);
    held.shift()?.();
    const other = await (lease === (await older) ? newer : older);
    pool.release(lease.connection);
    pool.release(other.connection);
    await pool.close();
    assert.deepEqual(served, ["older", "newer"]);
  });

  for (const limit of [{ maxIdlePerHost: 1 }, { maxIdle: 1 }]) {
    test(`${JSON.stringify(limit)}: an aborted acquire's idle connection comes back within the limit`, async () => {
      const pool = new ConnectionPool({ transport: echoUpstreams(), ...limit });
      const first = await pool.acquire(A);
      const second = await pool.acquire(A);
      pool.retain(first.connection);
      const controller = new AbortController();
      // Nobody in line: it takes the idle connection at once, for its settle turn.
      const aborted = pool.acquire(A, { signal: controller.signal });
      pool.retain(second.connection); // finds no idle connection: pooled
      controller.abort(new Error("the caller went away")); // the first one is idle again
      await assert.rejects(aborted, /the caller went away/);
      const { idle } = pool.stats();
      await pool.close();
      assert.equal(idle, 1, `${idle} idle connections, ${JSON.stringify(limit)}`);
    });
  }
});
