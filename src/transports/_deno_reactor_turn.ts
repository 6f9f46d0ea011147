// settle() for the Deno transport: waiting for Deno's I/O reactor by
// pinging a socket pair of our own (_deno_loopback.ts; why, below).
import { closeLoopbackPair, type LoopbackPair, openLoopbackPair } from "./_deno_loopback.ts";

/** What the transport's connections report, so the turn knows when to stop. */
export interface ReactorActivity {
  /** Connections open now; with none, there is nothing to wait for. */
  readonly openConnections: number;
  /** Reads of unref'd (idle) connections completed so far. */
  readonly idleReadsDone: number;
}

// ---------------------------------------------------------------------------
// Waiting for Deno's I/O reactor.
//
// Bytes or a FIN that reached a socket are handed to a pending read only
// after Deno's tokio reactor has polled epoll, and it does that only when the
// event loop runs out of ready work (or every ~61 tasks): whatever keeps the
// loop busy without waiting for I/O never lets them in. Measured on Deno
// 2.9.6: misses out of 1,000-3,000 tries (a node:net server in the same
// process writes 1 byte or ends; settle() is called in its callback) and the
// median cost per call in a tight loop with 50 idle connections:
//
//   queueMicrotask             all missed          0.3 µs
//   setImmediate (x1 or x2)    all missed          1.4 µs (63 chained: ≈140 µs)
//   MessageChannel message     all missed
//   Deno.resolveDns            all missed          (answered without any I/O)
//   crypto.subtle.digest       ≈70% missed         (races a thread-pool job)
//   setTimeout(0)              none missed         ≈2,100 µs (1 ms timer grain;
//                                                  rare misses in other tests)
//   loopback TCP ping (below)  none missed         ≈12 µs
//   abstract Unix socket ping  none missed         ≈6.6 µs (no TCP stack)
//
// The ping: a read is started on our end of the pair (finding nothing, it
// waits for the reactor), then one byte is written to the other: the read
// completes only in a reactor turn that starts after the write, and epoll
// reports sockets oldest first, so every read whose bytes had arrived before
// settle() was called completes in that turn or an earlier one. The round
// ends in the check phase (setImmediate) of the turn of the event loop that
// delivered the ping, after the microtasks of everything completed with it.
// One ping is out at a time: callers of settle() in the turn of the loop
// that wrote it share it (no epoll can have started before them), later
// ones share the next, which goes out when this one ends.
//
// One catch: a turn completes at most 128 I/O operations (tokio's
// cooperative budget); the rest wait for later turns, behind new wake-ups
// such as the ping's. With 2,000 idle connections all ended at once, one
// ping left 595 EOFs undelivered, and each further ping delivered 127 more.
// So a round pings again for as long as reads of idle (unref'd) connections
// complete during a ping. Without permission to listen on 127.0.0.1, two
// timers stand in for the ping (≈4 ms).
// ---------------------------------------------------------------------------

const PING = new Uint8Array([0]);

// Enough for thousands of simultaneous EOFs at 127 per turn; only reached if
// idle connections keep receiving data.
const MAX_PINGS = 64;

/** The callers waiting for one round of pings: they share its promise. */
class Round {
  readonly promise: Promise<void>;
  resolve!: () => void;

  constructor() {
    this.promise = new Promise((resolve) => this.resolve = resolve);
  }
}

/** The pair, with the callbacks of its pings bound to it (a late callback of a closed pair is ignored). */
interface OpenPair extends LoopbackPair {
  readonly onPing: (n: number | null) => void;
  readonly afterPing: () => void;
  readonly onBroken: () => void;
}

/**
 * The fallback without a socket pair: two timers in a row. A single timer
 * can fire before the reactor has run (the contract caught 1 miss in 300,
 * and 472 of 600 simultaneous EOFs left behind); two never missed.
 */
function timerTurns(): Promise<void> {
  const timer = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 0));
  return timer().then(timer);
}

/** Waits for Deno's I/O reactor by pinging a loopback socket pair. */
export class ReactorTurn {
  readonly #activity: ReactorActivity;
  #pair: OpenPair | undefined;
  #opening: Promise<void> | undefined;
  /** The round whose ping is out. */
  #current: Round | undefined;
  /** The current round while callers may still join it: its ping went out in this turn of the loop. */
  #joinable: Round | undefined;
  /** The round after it, whose ping goes out once the current one ends. */
  #next: Round | undefined;
  /** Pings of the current round so far. */
  #pings = 0;
  /** `idleReadsDone` when the last ping went out. */
  #idleReadsBefore = 0;
  readonly #scratch = new Uint8Array(16);

  constructor(activity: ReactorActivity) {
    this.#activity = activity;
  }

  wait(): Promise<void> {
    if (this.#joinable !== undefined) return this.#joinable.promise;
    const pair = this.#pair;
    if (pair === undefined) this.#opening ??= this.#open();
    if (pair === undefined || this.#current !== undefined) {
      return (this.#next ??= new Round()).promise;
    }
    const round = new Round();
    this.#begin(pair, round);
    return round.promise;
  }

  /** Frees the socket pair (the next wait() opens a new one); rounds under way end at once. */
  close(): void {
    const pair = this.#pair;
    this.#pair = undefined;
    if (pair !== undefined) closeLoopbackPair(pair);
    const rounds = [this.#current, this.#next];
    this.#current = this.#next = this.#joinable = undefined;
    for (const round of rounds) round?.resolve();
  }

  #begin(pair: OpenPair, round: Round): void {
    this.#current = round;
    this.#pings = 0;
    // Later callers may join until this turn of the event loop ends: the
    // epoll that reports the ping cannot have started before them.
    this.#joinable = round;
    queueMicrotask(this.#endJoin);
    this.#ping(pair);
  }

  #endJoin = (): void => {
    this.#joinable = undefined;
  };

  #ping(pair: OpenPair): void {
    this.#pings++;
    this.#idleReadsBefore = this.#activity.idleReadsDone;
    // Read first: finding the buffer empty, the read waits for the reactor.
    pair.reader.read(this.#scratch).then(pair.onPing, pair.onBroken);
    pair.writer.write(PING).then(undefined, pair.onBroken);
  }

  #afterPing(pair: OpenPair): void {
    if (this.#pair !== pair) return; // closed meanwhile: close() ended the rounds
    const activity = this.#activity;
    if (
      activity.idleReadsDone !== this.#idleReadsBefore && this.#pings < MAX_PINGS &&
      activity.openConnections > 0
    ) {
      this.#ping(pair);
      return;
    }
    const ended = this.#current;
    const next = this.#next;
    this.#current = this.#next = undefined;
    if (next !== undefined) this.#begin(pair, next);
    ended?.resolve();
  }

  // The pair stopped working: whoever waits falls back to two timer turns,
  // and the next caller opens a new pair.
  #broken(pair: OpenPair): void {
    if (this.#pair !== pair) return;
    this.#pair = undefined;
    closeLoopbackPair(pair);
    const rounds = [this.#current, this.#next];
    this.#current = this.#next = this.#joinable = undefined;
    timerTurns().then(() => {
      for (const round of rounds) round?.resolve();
    });
  }

  async #open(): Promise<void> {
    const opened = await openLoopbackPair();
    this.#opening = undefined;
    const waiting = this.#next;
    this.#next = undefined;
    // With no connections left there is nothing to keep the pair for.
    if (opened === undefined || this.#activity.openConnections === 0) {
      if (opened !== undefined) closeLoopbackPair(opened);
      await timerTurns(); // no pair allowed (or none needed): two timer turns stand in
      waiting?.resolve();
      return;
    }
    const pair: OpenPair = {
      ...opened,
      onPing: (n) => {
        if (n === null) pair.onBroken();
        else setImmediate(pair.afterPing);
      },
      afterPing: () => this.#afterPing(pair),
      onBroken: () => this.#broken(pair),
    };
    this.#pair = pair;
    // One ping serves every caller that waited for the pair.
    if (waiting !== undefined) this.#begin(pair, waiting);
  }
}
