// settle() for connections read with conn.read() (Deno.connect and
// Deno.startTls): waiting for Deno's I/O reactor by pinging a socket pair of
// our own (see the comment below).
import { closeQuietly, deno, type DenoConn } from "./_deno_api.ts";
import {
  closeLoopbackPair,
  type LoopbackPair,
  type LoopbackReader,
  openLoopbackPair,
} from "./_deno_loopback.ts";
import { nextCheckPhase, timerTurns } from "./_deno_turns.ts";

/** What the transport's connections report, so the turn knows when to stop. */
export interface ReactorActivity {
  /** Connections open now; with none, there is nothing to wait for. */
  readonly openConnections: number;
  /** Reads of unref'd (idle) connections completed so far. */
  readonly idleReadsDone: number;
}

const RESOLVED: Promise<void> = Promise.resolve();

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
// The ping: a socket pair of our own (_deno_loopback.ts). A read is started
// on one end (finding nothing, it waits for the reactor), then one byte is
// written to the other: the read completes only in a reactor turn that
// starts after the write, and epoll reports sockets oldest first, so every
// read whose bytes had arrived before settle() was called completes in that
// turn or an earlier one. A setImmediate afterwards lets the microtasks of
// everything completed in that turn run first.
//
// One catch: a turn completes at most 128 I/O operations (tokio's
// cooperative budget); the rest wait for later turns, behind new wake-ups
// such as the ping's. With 2,000 idle connections all ended at once, one
// ping left 595 EOFs undelivered, and each further ping delivered 127 more.
// So settle() pings again for as long as reads of idle (unref'd)
// connections complete during a ping. Without permission to listen on
// 127.0.0.1, two timers stand in for the ping (≈4 ms).
// ---------------------------------------------------------------------------

const PING = new Uint8Array([0]);

// Enough for thousands of simultaneous EOFs at 127 per turn; only reached if
// idle connections keep receiving data.
const MAX_PINGS = 64;

/** The reader end of this pair reads with conn.read(), as the connections it vouches for do. */
const connReader: LoopbackReader<DenoConn> = {
  connect: (target) =>
    "path" in target
      ? deno().connect({ transport: "unix", path: target.path })
      : deno().connect({ hostname: target.hostname, port: target.port, transport: "tcp" }),
  localPort: (reader) => reader.localAddr.port,
  async receive(reader, length) {
    const received = new Uint8Array(length);
    for (let got = 0; got < length;) {
      const n = await reader.read(received.subarray(got));
      if (n === null) return null;
      got += n;
    }
    return received;
  },
  close: closeQuietly,
};

/** Waits for Deno's I/O reactor by pinging a loopback socket pair. */
export class ReactorTurn {
  readonly #activity: ReactorActivity;
  #pair: LoopbackPair<DenoConn> | undefined;
  /** The settle that callers may still join: its first ping is not written yet. */
  #joinable: Promise<void> | undefined;
  /** The most recent settle; they run one after another on the one pair. */
  #last: Promise<void> = RESOLVED;
  readonly #scratch = new Uint8Array(16);

  constructor(activity: ReactorActivity) {
    this.#activity = activity;
  }

  wait(): Promise<void> {
    if (this.#joinable !== undefined) return this.#joinable;
    const run = (): Promise<void> => {
      if (this.#joinable === settled) this.#joinable = undefined;
      return this.#settle();
    };
    const settled: Promise<void> = this.#last.then(run, run);
    this.#joinable = settled;
    this.#last = settled;
    return settled;
  }

  /** Frees the socket pair; the next wait() opens a new one. */
  close(): void {
    const pair = this.#pair;
    if (pair === undefined) return;
    this.#pair = undefined;
    closeLoopbackPair(connReader, pair);
  }

  async #settle(): Promise<void> {
    for (let ping = 0; ping < MAX_PINGS && this.#activity.openConnections > 0; ping++) {
      const before = this.#activity.idleReadsDone;
      await this.#turn();
      await nextCheckPhase();
      if (this.#activity.idleReadsDone === before) return;
    }
  }

  async #turn(): Promise<void> {
    const pair = this.#pair ?? await this.#open();
    if (pair === undefined) return timerTurns();
    try {
      // Read first: finding the buffer empty, the read waits for the reactor.
      const echoed = pair.reader.read(this.#scratch).catch(() => null);
      await pair.writer.write(PING);
      if (await echoed === null) throw new Error("loopback pair closed");
    } catch {
      if (this.#pair !== pair) return; // closed on purpose: no connections left
      this.close();
      return timerTurns();
    }
  }

  async #open(): Promise<LoopbackPair<DenoConn> | undefined> {
    const pair = await openLoopbackPair(connReader);
    // With no connections left there is nothing to keep the pair for.
    if (pair !== undefined && this.#activity.openConnections === 0) {
      closeLoopbackPair(connReader, pair);
      return undefined;
    }
    this.#pair = pair;
    return pair;
  }
}
