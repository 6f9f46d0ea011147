// settle() for the Deno transport: waiting for Deno's I/O reactor by
// pinging a socket pair of our own (see the comment below).
import {
  closeQuietly,
  deno,
  type DenoConn,
  type DenoListener,
  type DenoRuntime,
  type DenoTcpConn,
} from "./_deno_api.ts";

/** What the transport's connections report, so the turn knows when to stop. */
export interface ReactorActivity {
  /** Connections open now; with none, there is nothing to wait for. */
  readonly openConnections: number;
  /** Reads of unref'd (idle) connections completed so far. */
  readonly idleReadsDone: number;
}

const RESOLVED: Promise<void> = Promise.resolve();

// ---------------------------------------------------------------------------
// settle(): waiting for Deno's I/O reactor.
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
// The ping: a socket pair of our own, over an abstract Unix socket (Linux,
// with unrestricted --allow-net) or else TCP on 127.0.0.1. A read is started on one
// end (finding nothing, it waits for the reactor), then one byte is written
// to the other: the read completes only in a reactor turn that starts after
// the write, and epoll reports sockets oldest first, so every read whose
// bytes had arrived before settle() was called completes in that turn or an
// earlier one. A setImmediate afterwards lets the microtasks of everything
// completed in that turn run first.
//
// One catch: a turn completes at most 128 I/O operations (tokio's
// cooperative budget); the rest wait for later turns, behind new wake-ups
// such as the ping's. With 2,000 idle connections all ended at once, one
// ping left 595 EOFs undelivered, and each further ping delivered 127 more.
// So settle() pings again for as long as reads of idle (unref'd)
// connections complete during a ping. Without permission to listen on
// 127.0.0.1, two timers stand in for the ping (≈4 ms).
// ---------------------------------------------------------------------------

interface LoopbackPair {
  readonly writer: DenoConn;
  readonly reader: DenoConn;
}

const PING = new Uint8Array([0]);

// Enough for thousands of simultaneous EOFs at 127 per turn; only reached if
// idle connections keep receiving data.
const MAX_PINGS = 64;

// The fallback without the pair: two timers in a row. A single timer can
// fire before the reactor has run (the contract caught 1 miss in 300, and
// 472 of 600 simultaneous EOFs left behind); two never missed.
function timerTurns(): Promise<void> {
  const timer = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 0));
  return timer().then(timer);
}

function nextCheckPhase(): Promise<void> {
  const schedule = (globalThis as unknown as { setImmediate?: (callback: () => void) => unknown })
    .setImmediate;
  if (schedule === undefined) return RESOLVED;
  return new Promise((resolve) => schedule(resolve));
}

/** Waits for Deno's I/O reactor by pinging a loopback socket pair. */
export class ReactorTurn {
  readonly #activity: ReactorActivity;
  #pair: LoopbackPair | undefined;
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
    closePair(pair);
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

  async #open(): Promise<LoopbackPair | undefined> {
    try {
      return await this.#tryOpen();
    } catch {
      return undefined; // settle() must not fail: the timer stands in
    }
  }

  async #tryOpen(): Promise<LoopbackPair | undefined> {
    const runtime = deno() as unknown as DenoRuntime & UnixListenRuntime;
    const pair = await openAbstractPair(runtime) ?? await openTcpPair(runtime);
    // With no connections left there is nothing to keep the pair for.
    if (pair !== undefined && this.#activity.openConnections === 0) {
      closePair(pair);
      return undefined;
    }
    this.#pair = pair;
    return pair;
  }
}

interface PermissionQuery {
  readonly permissions?: {
    querySync?(descriptor: { name: "net"; host?: string }): { state: string };
  };
}

/** What opening a pair over an abstract Unix socket needs beyond the transport's API. */
interface UnixListenRuntime extends PermissionQuery {
  listen(options: { transport: "unix"; path: string }): DenoListener;
  readonly build?: { readonly os?: string };
}

// Only use a pair that is allowed: a denied permission must never prompt.
function granted(runtime: PermissionQuery, host?: string): boolean {
  const descriptor = host === undefined ? { name: "net" as const } : { name: "net" as const, host };
  return runtime.permissions?.querySync?.(descriptor).state === "granted";
}

function closePair(pair: LoopbackPair): void {
  closeQuietly(pair.writer);
  closeQuietly(pair.reader);
}

/** Connects to `listener` and accepts; closes the listener; both ends, or undefined. */
async function connectPair(
  listener: DenoListener,
  connect: () => Promise<DenoConn>,
): Promise<LoopbackPair | undefined> {
  const [writer, reader] = await Promise.allSettled([connect(), listener.accept()]);
  listener.close();
  if (writer.status === "fulfilled" && reader.status === "fulfilled") {
    return { writer: writer.value, reader: reader.value };
  }
  if (writer.status === "fulfilled") closeQuietly(writer.value);
  if (reader.status === "fulfilled") closeQuietly(reader.value);
  return undefined;
}

// Linux only, and only with unrestricted --allow-net (Deno checks net
// permission for an abstract name, not read/write: it is not a file).
// Nothing on disk, nothing to clean up; a Unix socket ping costs about half
// of a TCP one (no TCP stack, no ACKs): ≈6.6 against ≈11.3 µs.
async function openAbstractPair(runtime: UnixListenRuntime): Promise<LoopbackPair | undefined> {
  if (runtime.build?.os !== "linux" || !granted(runtime)) return undefined;
  const path = `\0upstream-pool-${crypto.randomUUID()}`;
  let listener: DenoListener;
  try {
    listener = runtime.listen({ transport: "unix", path });
  } catch {
    return undefined;
  }
  const pair = await connectPair(listener, () => deno().connect({ transport: "unix", path }));
  if (pair === undefined) return undefined;
  // Abstract names are listed in /proc/net/unix: someone else may have
  // connected first. Only our own writer knows the nonce; a stranger that
  // stays silent is given up on after a second.
  if (await provesOwn(pair)) return pair;
  closePair(pair);
  return undefined;
}

async function provesOwn(pair: LoopbackPair): Promise<boolean> {
  const nonce = crypto.getRandomValues(new Uint8Array(16));
  const received = new Uint8Array(nonce.length);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const givenUp = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), 1000);
  });
  const checked = (async (): Promise<boolean> => {
    await pair.writer.write(nonce);
    let got = 0;
    while (got < nonce.length) {
      const n = await pair.reader.read(received.subarray(got));
      if (n === null) return false;
      got += n;
    }
    return received.every((byte, i) => byte === nonce[i]);
  })().catch(() => false);
  try {
    return await Promise.race([checked, givenUp]);
  } finally {
    clearTimeout(timer);
  }
}

// TCP on 127.0.0.1, for other systems and for --allow-net=127.0.0.1.
async function openTcpPair(runtime: DenoRuntime): Promise<LoopbackPair | undefined> {
  if (!granted(runtime, "127.0.0.1")) return undefined;
  let listener: DenoListener;
  try {
    listener = runtime.listen({ hostname: "127.0.0.1", port: 0, transport: "tcp" });
  } catch {
    return undefined;
  }
  const port = listener.addr.port ?? 0;
  const pair = await connectPair(
    listener,
    () => runtime.connect({ hostname: "127.0.0.1", port, transport: "tcp" }),
  );
  if (pair === undefined) return undefined;
  // Someone else may have connected to the listener first.
  if (pair.reader.remoteAddr.port !== pair.writer.localAddr.port) {
    closePair(pair);
    return undefined;
  }
  (pair.writer as DenoTcpConn).setNoDelay(true);
  return pair;
}
