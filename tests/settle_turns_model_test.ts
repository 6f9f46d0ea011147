// A randomized model of settle turns: the pool's promise that no acquire is
// handed a connection whose bytes or EOF had already arrived before the
// acquire began, checked while the test decides when each turn's I/O poll
// happens and when each turn ends (the model and property tests never vary
// that, so they could not find the bugs this found: see the reduced cases in
// tests/pool_test.ts, "idle-read detection").
//
// The transport is the test's own. Its connections receive whatever the
// upstream sends into a "kernel buffer" that reaches a pending read only at
// a poll; settle() joins the turn that is still joinable (its poll has not
// run) or starts a new one, drawn at random; a poll delivers everything
// received so far (one item per connection) and marks every turn asked
// before it as polled; turns end in the order they were asked, each only
// after its poll. Connects complete (or are refused), and validate hooks
// answer, when the test says so. Between these steps the test acquires (some
// with a signal it aborts later), retains, releases, calls add(), warm() and
// drain(), has the upstream write stray bytes, end or reset idle or borrowed
// connections, and lets time pass, under drawn options (order, maxPerHost,
// maxIdlePerHost, minIdlePerHost, validate and validateAfter, maxUses,
// idleTimeout, one or two addresses with maxTotal and maxIdle). Each step is
// followed by a macrotask, so the pool reacts to it fully; a burst runs a few
// user and upstream operations in one go. Each run weighs the operations its
// own way.
//
// The oracle knows only what the test did and what the pool's public API and
// events said, nothing of the pool's internals. A connection enters the
// pool's hands when its connect completes or retain() keeps it, and is
// "dirty" from the first thing the upstream sent it (the borrowers here never
// read). Every hand-out (an acquire resolving with it, stamped by its
// "handed-out" event) must be of a connection that
//   - is open, and its EOF or reset was not delivered;
//   - was vouched for: some settle() call was made after the acquire arrived
//     and after the connection last entered the pool's hands, and a poll
//     followed that call before the hand-out (exempt: a new connection lent
//     in the very step its connect completed);
//   - had nothing delivered to the pool: no poll happened after it entered
//     the pool's hands and after the upstream first sent it something.
// And: an acquire is never served after its abort, nor rejected but for its
// abort, a refused connect, or close(); every acquire settles once turns keep
// running (20 rounds of turns without one settling is a hang); after close()
// every acquire, add() and warm() has settled, no connection is open and no
// count is left; and in runs without validate, an acquire that queued (it
// found no idle connection) is served before every later one of its address.
//
// Runs are drawn from seeds and replay exactly on every runtime (Date.now()
// moves only by the "time passes" steps): TURNS_MODEL_SEED=<n> replays one,
// TURNS_MODEL_SEEDS=<from>-<to> runs a range, TURNS_MODEL_OPS sets the steps
// per run, TURNS_MODEL_TRACE how many last steps a failure shows,
// TURNS_MODEL_DEBUG=1 prints a line per run (2: each run's trace),
// TURNS_MODEL_KEEP_GOING=1 runs every seed and lists the failures.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { setImmediate } from "node:timers";
import {
  type Acquired,
  ConnectionPool,
  type ConnectionPoolOptions,
  PoolError,
  type PoolEvent,
  type ResolvedAddress,
  type TcpAddress,
  type Transport,
  type TransportConnection,
  type TransportConnectOptions,
  type UpstreamConnection,
} from "../mod.ts";
import { envNumber, envText, Random } from "./_random.ts";

/** Resolves in the next macrotask: every microtask queued before has run. */
function macrotask(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * `Date.now()` stands still but for the "time passes" steps: the pool's idle
 * deadlines and validateAfter see exactly the time the steps let pass, so a
 * seed replays the same, and runs stay fast. The pool's timers run on the
 * real clock: they fire late or early, as on a busy loop, and find the
 * deadline by `Date.now()`.
 */
class SteppedClock {
  offset = 0;
  readonly #real: () => number = Date.now;

  install(): void {
    const start = this.#real();
    Date.now = () => start + this.offset;
  }

  restore(): void {
    Date.now = this.#real;
  }
}

const ADDRESSES: readonly TcpAddress[] = [
  { hostname: "a.turns", port: 1 },
  { hostname: "b.turns", port: 2 },
];
const KEYS = ADDRESSES.map((address) => `${address.hostname}:${address.port}`);

/** A violation of the oracle: the run stops and reports it. */
class Violation extends Error {}

// ---------------------------------------------------------------------------
// The world: one logical clock for everything the oracle compares.

type Inbound = "bytes" | "eof" | "reset";

interface World {
  /** Every recorded fact gets the next tick. */
  clock: number;
  /** The step being run (a step is one operation and the microtasks it causes). */
  step: number;
  rng: Random;
  /** Chance that settle() starts a new turn although one is joinable. */
  newTurnChance: number;
}

function tick(world: World): number {
  return ++world.clock;
}

/** A client connection of the test's transport, with what the oracle knows of it. */
class Conn implements TransportConnection {
  readonly n: number;
  readonly address: ResolvedAddress;
  /** The pool's id for it (from its "opened" event), once known. */
  poolId = -1;
  closed = false;
  /** EOF or a reset was delivered. */
  ended = false;
  /** When the upstream first sent it something (Infinity: never). */
  dirtyAt = Infinity;
  sent: Inbound[] = [];
  /** When it last entered the pool's hands: connect completed, or retain kept it. */
  idleAt = 0;
  /** The step its connect completed in. */
  connectStep = -1;
  handOuts = 0;
  #inbound: Inbound[] = [];
  #reader: { resolve(chunk: Uint8Array | null): void; reject(error: unknown): void } | null = null;
  readonly #world: World;

  constructor(world: World, n: number, address: ResolvedAddress) {
    this.#world = world;
    this.n = n;
    this.address = address;
  }

  read(): Promise<Uint8Array | null> {
    if (this.#reader !== null) return Promise.reject(new Error("read already pending"));
    if (this.closed || this.ended) return Promise.resolve(null);
    return new Promise((resolve, reject) => this.#reader = { resolve, reject });
  }

  write(_chunk: Uint8Array): Promise<void> {
    if (this.closed) {
      return Promise.reject(Object.assign(new Error("write after close"), { code: "EPIPE" }));
    }
    return Promise.resolve();
  }

  closeWrite(): Promise<void> {
    return Promise.resolve();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    const reader = this.#reader;
    this.#reader = null;
    reader?.resolve(null);
  }

  ref(): void {}

  unref(): void {}

  /** The upstream sends: it waits in the kernel buffer until a poll. */
  send(item: Inbound): void {
    if (this.closed) return;
    this.sent.push(item);
    const at = tick(this.#world);
    if (this.dirtyAt === Infinity) this.dirtyAt = at;
    this.#inbound.push(item);
  }

  /** A poll: a pending read gets the next item received. */
  deliver(): void {
    const reader = this.#reader;
    if (reader === null || this.#inbound.length === 0 || this.closed) return;
    this.#reader = null;
    const item = this.#inbound.shift()!;
    if (item === "bytes") return reader.resolve(new Uint8Array([0x78]));
    this.ended = true;
    if (item === "eof") return reader.resolve(null);
    reader.reject(Object.assign(new Error("connection reset by peer"), { code: "ECONNRESET" }));
  }

  get label(): string {
    return `c${this.n}${this.poolId >= 0 ? `(id ${this.poolId})` : ""}`;
  }
}

interface Turn {
  readonly n: number;
  readonly promise: Promise<void>;
  readonly resolve: () => void;
  /** When its poll ran, or -1. */
  polledAt: number;
}

interface PendingConnect {
  readonly address: ResolvedAddress;
  resolve(connection: TransportConnection): void;
  reject(error: unknown): void;
  done: boolean;
}

/** A transport whose turns, polls and connects happen when the test says. */
class TurnTransport implements Transport {
  readonly name = "turns by the model";
  readonly conns: Conn[] = [];
  readonly connects: PendingConnect[] = [];
  /** Turns not yet over, oldest first. */
  readonly turns: Turn[] = [];
  /** When settle() was called, ascending. */
  readonly asks: number[] = [];
  /** When polls ran, ascending. */
  readonly polls: number[] = [];
  /** The connection whose connect completes now (for its "opened" event). */
  justConnected: Conn | undefined;
  #joinable: Turn | undefined;
  #turnCount = 0;
  readonly #world: World;
  readonly #note: (text: string) => void;

  constructor(world: World, note: (text: string) => void) {
    this.#world = world;
    this.#note = note;
  }

  connect(
    address: ResolvedAddress,
    options: TransportConnectOptions = {},
  ): Promise<TransportConnection> {
    const { signal } = options;
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise((resolve, reject) => {
      const pending: PendingConnect = { address, resolve, reject, done: false };
      this.connects.push(pending);
      signal?.addEventListener("abort", () => {
        if (pending.done) return;
        pending.done = true;
        this.connects.splice(this.connects.indexOf(pending), 1);
        reject(signal.reason);
      }, { once: true });
    });
  }

  settle(): Promise<void> {
    this.asks.push(tick(this.#world));
    const joinable = this.#joinable;
    if (joinable !== undefined && !this.#world.rng.chance(this.#world.newTurnChance)) {
      return joinable.promise;
    }
    let resolve!: () => void;
    const promise = new Promise<void>((done) => resolve = done);
    const turn: Turn = { n: ++this.#turnCount, promise, resolve, polledAt: -1 };
    this.turns.push(turn);
    this.#joinable = turn;
    this.#note(
      `  settle(): new turn t${turn.n}${joinable ? ` (t${joinable.n} was joinable)` : ""}`,
    );
    return promise;
  }

  /** An I/O poll: everything received so far reaches pending reads; every turn asked is polled. */
  poll(): void {
    const at = tick(this.#world);
    this.polls.push(at);
    for (const turn of this.turns) if (turn.polledAt < 0) turn.polledAt = at;
    this.#joinable = undefined;
    for (const conn of this.conns) conn.deliver();
  }

  /** The oldest turn ends, if its poll ran. */
  endTurn(): Turn | undefined {
    const turn = this.turns[0];
    if (turn === undefined || turn.polledAt < 0) return undefined;
    this.turns.shift();
    turn.resolve();
    return turn;
  }

  /** One connect completes. */
  completeConnect(index: number): Conn | undefined {
    const pending = this.connects[index];
    if (pending === undefined) return undefined;
    this.connects.splice(index, 1);
    pending.done = true;
    const conn = new Conn(this.#world, this.conns.length, pending.address);
    this.conns.push(conn);
    conn.idleAt = tick(this.#world);
    conn.connectStep = this.#world.step;
    this.justConnected = conn;
    pending.resolve(conn);
    return conn;
  }

  /** One connect is refused. */
  refuseConnect(index: number): ResolvedAddress | undefined {
    const pending = this.connects[index];
    if (pending === undefined) return undefined;
    this.connects.splice(index, 1);
    pending.done = true;
    const refused = Object.assign(new Error(`connect ECONNREFUSED ${pending.address.key}`), {
      code: "ECONNREFUSED",
    });
    pending.reject(refused);
    return pending.address;
  }

  /** Whether a poll ran in the open interval (after, before). */
  polledBetween(after: number, before: number): boolean {
    return this.polls.some((at) => at > after && at < before);
  }

  /** The first settle() call after `after`, or undefined. */
  askedAfter(after: number): number | undefined {
    return this.asks.find((at) => at > after);
  }
}

// ---------------------------------------------------------------------------
// One run

interface Draw {
  addresses: number;
  options: ConnectionPoolOptions;
  /** "sync": validate says true at once; "held": it answers when the test says. */
  validate: "sync" | "held" | undefined;
  shortTimers: boolean;
}

function drawOptions(rng: Random): Draw {
  const maxPerHost = rng.pick([1, 2, 2, 3, 4, Infinity]);
  const options: ConnectionPoolOptions = {
    order: rng.pick(["lifo", "fifo"] as const),
    maxPerHost,
    idleTimeout: rng.pick([60_000, 60_000, 60_000, 8]),
  };
  const maxIdlePerHost = rng.pick([Infinity, Infinity, Infinity, 0, 1, 2]);
  if (maxIdlePerHost !== Infinity) options.maxIdlePerHost = maxIdlePerHost;
  const minIdle = rng.pick([0, 0, 0, 1, 2]);
  if (minIdle <= Math.min(maxPerHost, maxIdlePerHost)) options.minIdlePerHost = minIdle;
  const maxUses = rng.pick([Infinity, Infinity, Infinity, 1, 2, 4]);
  if (maxUses !== Infinity) options.maxUses = maxUses;
  const validate = rng.pick([undefined, undefined, undefined, undefined, "sync", "held"] as const);
  if (validate !== undefined) options.validateAfter = rng.pick([0, 0, 3, 1_000]);
  const shortTimers = options.idleTimeout === 8 || options.validateAfter === 3;
  const addresses = rng.pick([1, 1, 2]);
  if (addresses === 2) {
    // Limits across the addresses: an idle connection of one makes room for the other.
    const maxTotal = rng.pick([Infinity, Infinity, 2, 3]);
    if (maxTotal !== Infinity) options.maxTotal = maxTotal;
    const maxIdle = rng.pick([Infinity, Infinity, 1, 2]);
    if (maxIdle !== Infinity) options.maxIdle = maxIdle;
    if ((options.minIdlePerHost ?? 0) * 2 > Math.min(maxTotal, maxIdle)) {
      delete options.minIdlePerHost;
    }
  }
  return { addresses, options, validate, shortTimers };
}

interface AcquireRecord {
  readonly id: number;
  readonly addr: number;
  arrivedAt: number;
  readonly controller: AbortController | undefined;
  state: "pending" | "served" | "aborted" | "closed";
  abortedAt: number;
  conn: Conn | undefined;
  connection: UpstreamConnection | undefined;
  returned: boolean;
  /** Idle (or reserved) connections of its address when it arrived. */
  idleAtArrival: number;
}

interface HeldValidation {
  readonly conn: Conn | undefined;
  answer(ok: boolean): void;
}

interface RunResult {
  steps: number;
  acquires: number;
  served: number;
  reused: number;
  broken: number;
  settleCalls: number;
  polls: number;
}

async function runModel(seed: number, steps: number, traceLength: number): Promise<RunResult> {
  const rng = new Random(seed);
  const world: World = { clock: 0, step: 0, rng, newTurnChance: rng.pick([0, 0.2, 0.5, 1]) };
  const trace: string[] = [];
  const note = (text: string): void => {
    trace.push(`${world.step}: ${text}`);
    if (trace.length > traceLength) trace.shift();
  };
  const transport = new TurnTransport(world, note);
  const draw = drawOptions(rng);
  const acquires: AcquireRecord[] = [];
  const borrowed: AcquireRecord[] = [];
  const byPoolId = new Map<number, Conn>();
  /** The tick of each connection's latest "handed-out" event, by pool id. */
  const handedOutAt = new Map<number, { at: number; step: number }>();
  const validations: HeldValidation[] = [];
  let violation: string | undefined;
  let broken = 0;

  const fail = (text: string): void => {
    violation ??= text;
  };

  const onEvent = (event: PoolEvent): void => {
    if (event.type === "opened") {
      const conn = transport.justConnected;
      if (conn === undefined || conn.poolId >= 0) {
        fail(`"opened" ${event.id} without a connect completing`);
        return;
      }
      conn.poolId = event.id;
      byPoolId.set(event.id, conn);
      transport.justConnected = undefined;
    } else if (event.type === "handed-out") {
      handedOutAt.set(event.id, { at: tick(world), step: world.step });
    } else if (event.type === "closed") {
      if (event.reason === "broken") broken++;
      note(`  closed id ${event.id}: ${event.reason}${event.detail ? ` (${event.detail})` : ""}`);
    }
  };

  const options: ConnectionPoolOptions = { ...draw.options, transport, onEvent };
  if (draw.validate === "sync") options.validate = () => true;
  else if (draw.validate === "held") {
    options.validate = (connection) =>
      new Promise<boolean>((answer) => {
        validations.push({ conn: byPoolId.get(connection.id), answer });
      });
  }
  const pool = new ConnectionPool(options);
  const clock = new SteppedClock();
  clock.install();
  const shownOptions = `options ${
    JSON.stringify({ ...draw.options, validate: draw.validate, addresses: draw.addresses })
  }, new-turn chance ${world.newTurnChance}`;
  note(shownOptions);

  // ---- the oracle, at each hand-out ----

  function served(record: AcquireRecord, acquired: Acquired): void {
    const id = acquired.connection.id;
    const conn = byPoolId.get(id);
    const handOut = handedOutAt.get(id);
    const who = `#${record.id}`;
    note(`  ${who} served ${conn?.label ?? `id ${id}`} (created ${acquired.created})`);
    if (record.state !== "pending") {
      fail(`${who} was served, but it was ${record.state} already`);
      return;
    }
    record.state = "served";
    record.conn = conn;
    record.connection = acquired.connection;
    borrowed.push(record);
    if (conn === undefined || handOut === undefined) {
      fail(`${who} got id ${id}, not a connection the test knows (or no "handed-out" event)`);
      return;
    }
    if (acquired.connection.address.key !== KEYS[record.addr]) {
      fail(
        `${who} for ${KEYS[record.addr]} got ${conn.label} of ${acquired.connection.address.key}`,
      );
    }
    if (conn.closed) fail(`${who} got ${conn.label}, which is closed`);
    if (conn.ended) fail(`${who} got ${conn.label}, whose EOF or reset was delivered`);
    const direct = conn.handOuts === 0 && conn.connectStep === handOut.step;
    if (!direct) {
      const since = Math.max(record.arrivedAt, conn.idleAt);
      const asked = transport.askedAfter(since);
      if (asked === undefined || !transport.polledBetween(asked, handOut.at)) {
        fail(
          `${who} got ${conn.label} without a turn vouching for both: no settle() after tick ` +
            `${since} (arrived ${record.arrivedAt}, idle since ${conn.idleAt}) whose poll ran ` +
            `before the hand-out (tick ${handOut.at}; settle() at ${asked ?? "none"})`,
        );
      }
    }
    if (
      conn.dirtyAt < Infinity &&
      transport.polledBetween(Math.max(conn.idleAt, conn.dirtyAt), handOut.at)
    ) {
      fail(
        `${who} got ${conn.label}, although the upstream sent it ${conn.sent.join(", ")} ` +
          `(first at tick ${conn.dirtyAt}) and a poll delivered it after it went idle ` +
          `(tick ${conn.idleAt}), before the hand-out (tick ${handOut.at})`,
      );
    }
    if (record.abortedAt > 0) fail(`${who} was served after its abort`);
    conn.handOuts++;
    // First come, first served, among acquires in line: an older acquire
    // that found no idle connection (so it queued, and so did every later
    // one) is served first. Not checked with validate, which takes a waiter
    // out of line while it checks a connection for it; an acquire that found
    // an idle connection may have reserved it and waits only for its turn.
    if (draw.validate === undefined) {
      const older = acquires.find((other) =>
        other.addr === record.addr && other.id < record.id && other.state === "pending" &&
        other.abortedAt === 0 && other.idleAtArrival === 0
      );
      if (older !== undefined) {
        fail(`${who} got ${conn.label} while the older #${older.id} waits in line`);
      }
    }
  }

  function failed(record: AcquireRecord, error: unknown): void {
    note(`  #${record.id} rejected: ${error instanceof Error ? error.message : String(error)}`);
    if (record.state !== "pending") {
      fail(`#${record.id} was rejected, but it was ${record.state} already`);
      return;
    }
    if (record.abortedAt > 0 && error === record.controller?.signal.reason) {
      record.state = "aborted";
    } else if (error instanceof PoolError && error.code === "POOL_CLOSED" && closing) {
      record.state = "closed";
    } else if (error instanceof PoolError && error.code === "CONNECT_REFUSED" && refusals > 0) {
      // A refused connect fails the oldest waiter (no retry behind its back).
      record.state = "closed";
    } else {
      record.state = "closed";
      fail(`#${record.id} rejected unexpectedly: ${error}`);
    }
  }

  // ---- operations ----

  let nextAcquire = 0;
  let closing = false;

  function acquire(): void {
    const addr = rng.int(draw.addresses);
    const controller = rng.chance(0.3) ? new AbortController() : undefined;
    const record: AcquireRecord = {
      id: ++nextAcquire,
      addr,
      arrivedAt: 0,
      controller,
      state: "pending",
      abortedAt: 0,
      conn: undefined,
      connection: undefined,
      returned: false,
      idleAtArrival: pool.stats().byAddress[KEYS[addr]!]?.idle ?? 0,
    };
    acquires.push(record);
    note(`acquire #${record.id} ${KEYS[addr]}${controller ? " with a signal" : ""}`);
    record.arrivedAt = tick(world);
    pool.acquire(ADDRESSES[addr]!, { signal: controller?.signal }).then(
      (acquired) => served(record, acquired),
      (error) => failed(record, error),
    );
  }

  const abortable = (): AcquireRecord[] =>
    acquires.filter((record) =>
      record.state === "pending" && record.controller !== undefined && record.abortedAt === 0
    );
  const sendable = (): Conn[] => transport.conns.filter((conn) => !conn.closed && !conn.ended);

  function abortOne(): boolean {
    const candidates = abortable();
    if (candidates.length === 0) return false;
    const record = rng.pick(candidates);
    note(`abort #${record.id}`);
    record.abortedAt = tick(world);
    record.controller!.abort(new Error(`abort #${record.id}`));
    return true;
  }

  function giveBack(record: AcquireRecord, retain: boolean): void {
    borrowed.splice(borrowed.indexOf(record), 1);
    record.returned = true;
    const conn = record.conn!;
    if (retain) {
      const idleTimeout = rng.chance(0.1) ? 5 : undefined;
      const at = tick(world);
      const kept = pool.retain(
        record.connection!,
        idleTimeout === undefined ? undefined : { idleTimeout },
      );
      note(
        `retain #${record.id}'s ${conn.label}${idleTimeout ? " (idleTimeout 5)" : ""}: ${
          kept ? "kept" : "closed"
        }`,
      );
      if (kept) conn.idleAt = at;
      else if (!conn.closed) fail(`retain said ${conn.label} was closed, but it is open`);
    } else {
      note(`release #${record.id}'s ${conn.label}`);
      pool.release(record.connection!);
      if (!conn.closed) fail(`release left ${conn.label} open`);
    }
  }

  // add(), warm() and drain(): connections that come and go outside acquires.
  const extras: Promise<unknown>[] = [];
  let extrasPending = 0;

  function addOrWarm(): void {
    const addr = rng.int(draw.addresses);
    const warm = rng.chance(0.4);
    const count = 1 + rng.int(2);
    note(warm ? `warm(${KEYS[addr]}, ${count})` : `add(${KEYS[addr]})`);
    extrasPending++;
    const done = warm ? pool.warm(ADDRESSES[addr]!, count) : pool.add(ADDRESSES[addr]!);
    extras.push(
      done.then(
        () => note(`  ${warm ? "warm" : "add"} resolved`),
        (error) => {
          note(
            `  ${warm ? "warm" : "add"} rejected: ${
              error instanceof Error ? error.message : error
            }`,
          );
          if (!(error instanceof PoolError) && !(error instanceof RangeError)) {
            fail(`${warm ? "warm" : "add"} rejected with ${error}`);
          }
        },
      ).finally(() => extrasPending--),
    );
  }

  function drain(): void {
    const addr = rng.int(draw.addresses);
    note(`drain(${KEYS[addr]})`);
    pool.drain(ADDRESSES[addr]!);
  }

  function upstreamSends(): boolean {
    // Mostly to connections in the pool's hands (idle, reserved, validating).
    const open = sendable();
    const inPool = open.filter((conn) => !borrowed.some((record) => record.conn === conn));
    if (open.length === 0) return false;
    const conn = rng.pick(inPool.length > 0 && rng.chance(0.75) ? inPool : open);
    const roll = rng.int(100);
    const item: Inbound = roll < 55 ? "bytes" : roll < 85 ? "eof" : "reset";
    const holder = borrowed.find((record) => record.conn === conn);
    note(`upstream sends ${item} to ${conn.label}${holder ? ` (borrowed by #${holder.id})` : ""}`);
    conn.send(item);
    return true;
  }

  function poll(): void {
    note("poll");
    transport.poll();
  }

  function endTurn(): boolean {
    const turn = transport.endTurn();
    if (turn !== undefined) note(`turn t${turn.n} ends`);
    return turn !== undefined;
  }

  function completeConnect(): boolean {
    if (transport.connects.length === 0) return false;
    const conn = transport.completeConnect(rng.int(transport.connects.length))!;
    note(`connect completes: ${conn.label} to ${conn.address.key}`);
    return true;
  }

  let refusals = 0;

  function refuseConnect(): void {
    const address = transport.refuseConnect(rng.int(transport.connects.length))!;
    refusals++;
    note(`connect to ${address.key} refused`);
  }

  function answerValidation(): boolean {
    if (validations.length === 0) return false;
    const held = validations.splice(rng.int(validations.length), 1)[0]!;
    const ok = rng.chance(0.8);
    note(`validate ${held.conn?.label ?? "?"}: ${ok}`);
    held.answer(ok);
    return true;
  }

  // Each run weighs the operations its own way (a base weight times a drawn
  // factor), so that some runs are busy with turns, others with borrowers or
  // with the upstream. An operation that cannot run now is not drawn.
  const factor = (): number => rng.pick([0.25, 0.5, 1, 1, 2, 4]);
  const ops: { weight: number; can: () => boolean; run: () => void | Promise<void> }[] = [
    { weight: 18 * factor(), can: () => true, run: acquire },
    { weight: 4 * factor(), can: () => abortable().length > 0, run: abortOne },
    {
      weight: 15 * factor(),
      can: () => borrowed.length > 0,
      run: () => giveBack(rng.pick(borrowed), true),
    },
    {
      weight: 3 * factor(),
      can: () => borrowed.length > 0,
      run: () => giveBack(rng.pick(borrowed), false),
    },
    { weight: 14 * factor(), can: () => sendable().length > 0, run: upstreamSends },
    { weight: 13 * factor(), can: () => true, run: poll },
    { weight: 14 * factor(), can: () => transport.turns[0]?.polledAt! >= 0, run: endTurn },
    { weight: 9 * factor(), can: () => transport.connects.length > 0, run: completeConnect },
    { weight: 4 * factor(), can: () => validations.length > 0, run: answerValidation },
    { weight: 2 * factor(), can: () => true, run: addOrWarm },
    { weight: 1 * factor(), can: () => transport.connects.length > 0, run: refuseConnect },
    { weight: 1 * factor(), can: () => true, run: drain },
    {
      weight: draw.shortTimers ? 2 * factor() : 0,
      can: () => true,
      run: () => {
        const ms = rng.pick([1, 2, 9]);
        note(`time passes: ${ms} ms`);
        clock.offset += ms;
      },
    },
    {
      weight: 4 * factor(),
      can: () => true,
      run: () => {
        // Several things in one step, before the pool reacts: what user code
        // and the upstream do. Polls and turn ends stay steps of their own: a
        // runtime runs the microtasks of each callback before the next.
        note("burst");
        for (let i = 2 + rng.int(3); i > 0; i--) {
          const pick = rng.int(4);
          if (pick === 0) acquire();
          else if (pick === 1 && borrowed.length > 0) {
            giveBack(rng.pick(borrowed), rng.chance(0.8));
          } else if (pick === 2) upstreamSends();
          else abortOne();
        }
      },
    },
  ];

  async function runStep(): Promise<void> {
    const ready = ops.filter((op) => op.weight > 0 && op.can());
    let roll = rng.next() * ready.reduce((sum, op) => sum + op.weight, 0);
    const op = ready.find((op) => (roll -= op.weight) < 0) ?? ready.at(-1)!;
    await op.run();
    await macrotask();
  }

  const pending = (): AcquireRecord[] => acquires.filter((record) => record.state === "pending");
  const where = (): string =>
    `\n  seed ${seed}: replay with TURNS_MODEL_SEED=${seed}` +
    `\n  ${shownOptions}` +
    (steps !== DEFAULT_STEPS ? ` TURNS_MODEL_OPS=${steps}` : "") +
    `\n  last steps:\n    ${trace.join("\n    ")}`;

  try {
    for (world.step = 1; world.step <= steps; world.step++) {
      await runStep();
      if (violation !== undefined) throw new Violation(violation);
    }

    // Wind-down: borrowers give back, connects complete, validations answer,
    // turns poll and end: every acquire must be settled without close().
    world.step = steps + 1;
    note("wind-down");
    // A hang: rounds in a row in which no acquire settled.
    let stalled = 0;
    let settled = acquires.length - pending().length;
    for (;;) {
      for (const record of [...borrowed]) giveBack(record, rng.chance(0.7));
      while (completeConnect()) await macrotask();
      while (answerValidation()) await macrotask();
      poll();
      await macrotask();
      while (endTurn()) await macrotask();
      if (violation !== undefined) throw new Violation(violation);
      const stats = pool.stats();
      if (
        pending().length === 0 && borrowed.length === 0 && transport.connects.length === 0 &&
        validations.length === 0 && stats.validating === 0
      ) break;
      const now = acquires.length - pending().length;
      stalled = now === settled ? stalled + 1 : 0;
      settled = now;
      if (stalled === 20) {
        throw new Violation(
          `hang: 20 rounds of turns, no acquire settled: ${
            pending().map((record) => `#${record.id}`).join(", ") || "no acquire"
          } still pending, ${borrowed.length} borrowed, ${transport.connects.length} connects ` +
            `and ${validations.length} validations outstanding, ${transport.turns.length} turns ` +
            `unfinished; stats ${
              JSON.stringify({ ...stats, totals: undefined, byAddress: undefined })
            }`,
        );
      }
    }

    // Close with work outstanding: waiters, borrowed connections, open connects.
    world.step++;
    for (let i = rng.int(4); i > 0; i--) acquire();
    await macrotask();
    if (rng.chance(0.5)) completeConnect();
    await macrotask();
    note("close()");
    closing = true;
    let closed = false;
    const closeDone = pool.close().then(() => closed = true);
    for (let round = 0; !closed; round++) {
      for (const record of [...borrowed]) giveBack(record, rng.chance(0.5));
      while (completeConnect()) await macrotask();
      while (answerValidation()) await macrotask();
      poll();
      await macrotask();
      while (endTurn()) await macrotask();
      if (round === 100) throw new Violation("close() never resolved");
    }
    await closeDone;
    for (let round = 0; round < 3; round++) {
      while (completeConnect()) await macrotask();
      poll();
      while (endTurn()) await macrotask();
      await macrotask();
    }
    if (violation !== undefined) throw new Violation(violation);
    if (extrasPending > 0) {
      throw new Violation(`${extrasPending} add() or warm() calls never settled after close()`);
    }
    const left = pending();
    if (left.length > 0) {
      throw new Violation(`acquires never settled after close(): ${left.map((r) => `#${r.id}`)}`);
    }
    const open = transport.conns.filter((conn) => !conn.closed);
    if (open.length > 0) {
      throw new Violation(`connections left open after close(): ${open.map((c) => c.label)}`);
    }
    const stats = pool.stats();
    const counts = [stats.idle, stats.borrowed, stats.connecting, stats.validating, stats.waiting];
    if (counts.some((count) => count !== 0)) {
      throw new Violation(
        `counts left after close() (idle, borrowed, connecting, validating, waiting): ${counts}`,
      );
    }
    if (envNumber("TURNS_MODEL_DEBUG") === 2) console.log(`${where()}`);
    return {
      steps,
      acquires: acquires.length,
      served: acquires.filter((record) => record.conn !== undefined).length,
      reused: stats.totals.reused,
      broken,
      settleCalls: transport.asks.length,
      polls: transport.polls.length,
    };
  } catch (error) {
    if (error instanceof Violation) throw new Error(`${error.message}${where()}`);
    throw error;
  } finally {
    clock.restore();
    if (!closing) {
      // A failed run: close the pool without waiting for what it holds.
      closing = true;
      void pool.close({ timeout: 0 }).catch(() => {});
      for (const record of [...borrowed]) giveBack(record, false);
      for (let round = 0; round < 3; round++) {
        poll();
        while (endTurn()) await macrotask();
        await macrotask();
      }
    }
  }
}

// ---------------------------------------------------------------------------

const DEFAULT_SEEDS = 500;
const DEFAULT_STEPS = 200;
// Seeds outside the default range that found bugs (tests/pool_test.ts has
// each reduced), run on every default run by the test below.
// 20531 and 21570: an acquire whose reservation was taken over took it back once
// a later acquire reserved it again (fixed: the reservedBy check in #afterTurn).
const FOUND_BUGS: readonly number[] = [20531, 21570];

function seedsToRun(): { seeds: number[]; chosen: boolean } {
  const one = envNumber("TURNS_MODEL_SEED");
  if (one !== undefined) return { seeds: [one], chosen: true };
  const match = /^(\d+)-(\d+)$/.exec(envText("TURNS_MODEL_SEEDS") ?? "");
  if (match === null) {
    const seeds = Array.from({ length: DEFAULT_SEEDS }, (_, i) => i + 1);
    return { seeds, chosen: false };
  }
  const from = Number(match[1]);
  const seeds = Array.from({ length: Number(match[2]) - from + 1 }, (_, i) => from + i);
  return { seeds, chosen: true };
}

const { seeds: SEEDS, chosen: CHOSEN } = seedsToRun();
const STEPS = envNumber("TURNS_MODEL_OPS") ?? DEFAULT_STEPS;
const TRACE = envNumber("TURNS_MODEL_TRACE") ?? 40;

/** Runs `seeds`; with TURNS_MODEL_KEEP_GOING=1 all of them, the failures counted. */
async function runSeeds(seeds: readonly number[]): Promise<void> {
  const debug = envNumber("TURNS_MODEL_DEBUG") === 1;
  const keepGoing = envNumber("TURNS_MODEL_KEEP_GOING") === 1;
  const started = Date.now();
  const failures: string[] = [];
  for (const seed of seeds) {
    try {
      const result = await runModel(seed, STEPS, TRACE);
      if (debug) console.log(`seed ${seed}: ${JSON.stringify(result)}`);
    } catch (error) {
      if (!keepGoing) throw error;
      const first = String((error as Error).message).split("\n")[0]!;
      failures.push(`seed ${seed}: ${first}`);
    }
  }
  if (debug || keepGoing) console.log(`${seeds.length} seeds in ${Date.now() - started} ms`);
  if (failures.length > 0) {
    assert.fail(`${failures.length} of ${seeds.length} seeds failed:\n${failures.join("\n")}`);
  }
}

describe("settle turns model: hand-outs checked against the polls the test ran", () => {
  const range = SEEDS.length === 1 ? `seed ${SEEDS[0]}` : `seeds ${SEEDS[0]}-${SEEDS.at(-1)}`;
  // Bun's default 5 s per test is too short for a long TURNS_MODEL_SEEDS range.
  test(`${range}, ${STEPS} steps each`, {
    timeout: 600_000,
  }, async () => {
    await runSeeds(SEEDS);
  });

  test(`seeds that found bugs: ${FOUND_BUGS.join(", ")}`, {
    skip: CHOSEN && "TURNS_MODEL_SEED(S) chose the seeds",
    timeout: 60_000,
  }, async () => {
    await runSeeds(FOUND_BUGS);
  });
});
