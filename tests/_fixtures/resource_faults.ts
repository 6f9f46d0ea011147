// Drives one fault of issue 9 against a pool with the runtime's default
// transport, closes the pool, and prints one JSON line: the open file
// descriptors at the start, right after the fault and after close(), this
// process's own sockets in SYN-SENT at the same points, the error codes
// seen, the pool's counts, and when close() returned (`closedAt`, epoch ms).
// Then it does nothing: the process must exit by itself, at once. The
// upstreams live in the parent process, so every descriptor counted here
// is the pool's. Linux only (/proc).
//
// Usage: resource_faults <scenario> <JSON config>; the config carries the
// ports and certificates the scenario needs (see `Config`).
// No top-level await: a pending one keeps some runtimes alive by itself.
import * as fs from "node:fs";
import process from "node:process";
import { ConnectionPool, type ConnectionPoolOptions, PoolError } from "../../mod.ts";

interface Config {
  /** A listener whose accept queue is full: connects stay in SYN-SENT. */
  fullPort?: number;
  /** A port nobody listens on. */
  closedPort?: number;
  /** An echo upstream, plain TCP. */
  echoPort?: number;
  /** An upstream that resets each connection at the first bytes it gets. */
  resetPort?: number;
  /** A plain TCP upstream that never answers: a TLS handshake with it times out. */
  mutePort?: number;
  /** A TLS echo upstream whose certificate `ca` signed (not `otherCa`). */
  tlsPort?: number;
  ca?: string;
  otherCa?: string;
}

/** What the fixture prints for the test (tests/resources_test.ts reads it). */
export interface Report {
  scenario: string;
  fds: { start: number; fault: number; closed: number };
  /**
   * Milliseconds until the pool had no connect left after the fault (a
   * connect given up on counts until its socket is gone), and until the
   * descriptors were back to `start` after close() (some runtimes close a
   * descriptor only once the read pending on it has been cancelled).
   */
  waited: { connecting: number; fds: number };
  synSent: { fault: number; closed: number };
  codes: string[];
  /** `stats()` right after the fault, and after close(). */
  fault: { idle: number; borrowed: number; connecting: number; waiting: number };
  closed: { idle: number; borrowed: number; connecting: number; waiting: number };
  notes: Record<string, unknown>;
  closedAt: number;
}

const [scenario, rawConfig] = process.argv.slice(2);
const config = JSON.parse(rawConfig ?? "{}") as Config;
const encoder = new TextEncoder();

/**
 * Open file descriptors, less Unix sockets without a path: Deno opens a
 * socket pair of its own about half a second after it starts, in an idle
 * process too. The only Unix sockets the pool makes in these scenarios are
 * the Deno transport's settle pair, whose accepted end is named: a leak of
 * that pair still shows.
 */
function openFds(): number {
  const pathless = new Set<string>();
  for (const line of fs.readFileSync("/proc/net/unix", "utf8").split("\n").slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields.length === 7) pathless.add(fields[6]!);
  }
  let count = 0;
  for (const fd of fs.readdirSync("/proc/self/fd")) {
    let target = "";
    try {
      target = fs.readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue; // the directory listing's own descriptor, closed by now
    }
    const socket = /^socket:\[(\d+)\]$/.exec(target);
    if (socket === null || !pathless.has(socket[1]!)) count++;
  }
  return count;
}

/** This process's TCP sockets in SYN-SENT (state 02 in /proc/net/tcp*). */
function ownSynSent(): number {
  const inodes = new Set<string>();
  for (const fd of fs.readdirSync("/proc/self/fd")) {
    try {
      const match = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/self/fd/${fd}`));
      if (match) inodes.add(match[1]!);
    } catch {
      // Closed while listing.
    }
  }
  let count = 0;
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text = "";
    try {
      text = fs.readFileSync(table, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields[3] === "02" && inodes.has(fields[9]!)) count++;
    }
  }
  return count;
}

function codeOf(outcome: PromiseSettledResult<unknown>): string {
  if (outcome.status === "fulfilled") return "ok";
  const error = outcome.reason;
  return error instanceof PoolError ? error.code : `${error?.constructor?.name}: ${error}`;
}

function counts(pool: ConnectionPool): Report["fault"] {
  const { idle, borrowed, connecting, waiting } = pool.stats();
  return { idle, borrowed, connecting, waiting };
}

function detachedChunk(): Uint8Array {
  const buffer = new ArrayBuffer(8);
  const chunk = new Uint8Array(buffer);
  structuredClone(buffer, { transfer: [buffer] });
  return chunk;
}

/** Polls `done` every 5 ms for up to half a second; resolves with the time it took. */
async function waitFor(done: () => boolean): Promise<number> {
  const started = Date.now();
  while (!done() && Date.now() - started < 500) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return Date.now() - started;
}

type Scenario = (pool: ConnectionPool, notes: Record<string, unknown>) => Promise<string[]>;

const tcp = (port: number | undefined) => ({ hostname: "127.0.0.1", port: port! });

const scenarios: Record<
  string,
  {
    options: ConnectionPoolOptions;
    /** The pool still holds connections, or connects, after the fault. */
    keeps?: boolean;
    run: Scenario;
  }
> = {
  // Connects that time out against a full accept queue: adds connect side by
  // side, acquires one at a time (the address never connected).
  "connect-timeout": {
    options: { connectTimeout: 100 },
    run: async (pool) => {
      const address = tcp(config.fullPort);
      const outcomes = await Promise.allSettled([
        ...Array.from({ length: 8 }, () => pool.add(address)),
        ...Array.from({ length: 3 }, () => pool.acquire(address)),
      ]);
      return outcomes.map(codeOf);
    },
  },
  // Acquires that give up while their connect hangs; close() must cancel it.
  "aborted-acquire": {
    keeps: true,
    options: {},
    run: async (pool) => {
      const address = tcp(config.fullPort);
      const outcomes = await Promise.allSettled(
        Array.from({ length: 4 }, () => pool.acquire(address, { signal: AbortSignal.timeout(50) })),
      );
      return outcomes.map(codeOf);
    },
  },
  "refused-connect": {
    options: {},
    run: async (pool) => {
      const address = tcp(config.closedPort);
      const outcomes = await Promise.allSettled([
        ...Array.from({ length: 8 }, () => pool.add(address)),
        ...Array.from({ length: 3 }, () => pool.acquire(address)),
      ]);
      return outcomes.map(codeOf);
    },
  },
  // A certificate from an unknown CA, and a server that does not speak TLS.
  "tls-handshake": {
    options: {},
    run: async (pool) => {
      const wrongCa = {
        ...tcp(config.tlsPort),
        tls: { serverName: "localhost", caCerts: [config.otherCa!] },
      };
      const notTls = {
        ...tcp(config.echoPort),
        tls: { serverName: "localhost", caCerts: [config.ca!] },
      };
      const outcomes = await Promise.allSettled([
        ...Array.from({ length: 3 }, () => pool.add(wrongCa)),
        ...Array.from({ length: 3 }, () => pool.add(notTls)),
      ]);
      return outcomes.map(codeOf);
    },
  },
  // TLS handshakes with a server that never answers the ClientHello.
  "tls-timeout": {
    options: { connectTimeout: 100 },
    run: async (pool) => {
      const mute = {
        ...tcp(config.mutePort),
        tls: { serverName: "localhost", caCerts: [config.ca!] },
      };
      const outcomes = await Promise.allSettled([1, 2, 3].map(() => pool.add(mute)));
      return outcomes.map(codeOf);
    },
  },
  // A write of a chunk whose buffer was transferred: it must reject (not
  // throw), and the connection must not go back to the pool.
  "detached-write": {
    keeps: true,
    options: {},
    run: async (pool, notes) => {
      const { connection } = await pool.acquire(tcp(config.echoPort));
      let outcome: PromiseSettledResult<unknown>;
      try {
        outcome = await Promise.allSettled([connection.write(detachedChunk())]).then(([o]) => o!);
      } catch (error) {
        notes.threwSynchronously = String(error);
        outcome = { status: "rejected", reason: error };
      }
      notes.retained = pool.retain(connection);
      // The pool still works for the next borrower.
      const next = await pool.acquire(tcp(config.echoPort));
      await next.connection.write(encoder.encode("ping"));
      notes.echoed = new TextDecoder().decode((await next.connection.read()) ?? undefined);
      notes.nextCreated = next.created;
      pool.retain(next.connection);
      return [codeOf(outcome)];
    },
  },
  // The upstream resets each connection while its borrower waits for a reply.
  "reset-mid-read": {
    options: {},
    run: async (pool) => {
      const leases = await Promise.all([1, 2, 3].map(() => pool.acquire(tcp(config.resetPort))));
      const outcomes = await Promise.allSettled(leases.map(async ({ connection }) => {
        await connection.write(encoder.encode("reset me"));
        return await connection.read();
      }));
      for (const { connection } of leases) pool.release(connection);
      return outcomes.map(codeOf);
    },
  },
  // close() while connections are borrowed, one of them with a read
  // pending: they are closed once close()'s timeout has passed.
  "closed-with-borrowed": {
    keeps: true,
    options: {},
    run: async (pool, notes) => {
      const leases = await Promise.all([1, 2, 3].map(() => pool.acquire(tcp(config.echoPort))));
      pool.retain(leases[0]!.connection);
      const pending = leases[1]!.connection.read();
      notes.pendingRead = pending.then(
        () => "resolved",
        (error) => codeOf({ status: "rejected", reason: error }),
      );
      return [];
    },
  },
};

async function main(): Promise<void> {
  const chosen = scenarios[scenario!];
  if (chosen === undefined) throw new Error(`no scenario "${scenario}"`);
  const start = openFds();
  const pool = new ConnectionPool(chosen.options);
  const notes: Record<string, unknown> = {};
  const codes = await chosen.run(pool, notes);
  const fault = counts(pool);
  // Unless the pool keeps connections (or connects) after the fault, all
  // must go by themselves, not only at close().
  const waitedConnecting = chosen.keeps
    ? 0
    : await waitFor(() => pool.stats().connecting === 0 && openFds() === start);
  const fdsFault = openFds();
  const synSentFault = ownSynSent();
  await pool.close(scenario === "closed-with-borrowed" ? { timeout: 50 } : {});
  const closedAt = Date.now();
  const waitedFds = await waitFor(() => openFds() === start);
  for (const [key, value] of Object.entries(notes)) {
    if (value instanceof Promise) notes[key] = await value;
  }
  const report: Report = {
    scenario: scenario!,
    fds: { start, fault: fdsFault, closed: openFds() },
    waited: { connecting: waitedConnecting, fds: waitedFds },
    synSent: { fault: synSentFault, closed: ownSynSent() },
    codes,
    fault,
    closed: counts(pool),
    notes,
    closedAt,
  };
  console.log(JSON.stringify(report));
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
