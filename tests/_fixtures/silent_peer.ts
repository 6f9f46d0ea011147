// A peer that stops answering, without FIN or RST: run inside a network
// namespace of its own (tests/keepalive_test.ts starts it under `unshare -n`),
// where it may add nftables rules that drop packets on `lo`.
//
// An echo upstream listens on 127.0.0.1; three pools each keep two idle
// connections to it: `kept` with TCP keepalive (`keepAlive` from argv),
// `bare` without, and `validated` without keepalive but with a `validate`
// that pings with a timeout. Then every packet of those six flows is
// dropped, as if the host had vanished. The fixture measures when `kept`
// finds its connections dead, checks what an acquire gets from each pool
// afterwards, then drops everything to the upstream's port and checks that
// an acquire gets a clean connect error. Prints one JSON report.
import { execFile } from "node:child_process";
import * as net from "node:net";
import process from "node:process";
import { ConnectionPool, type PoolEvent } from "../../mod.ts";

const keepAlive = Number(process.argv[2] ?? 1000);
const detectWithinMs = Number(process.argv[3] ?? 20_000);

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function run(command: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { encoding: "utf8" }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${command} ${args.join(" ")}: ${stderr || error.message}`));
      else resolve(stdout);
    });
  });
}

const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

// The upstream: echoes, and remembers each accepted socket's client port.
const accepted: net.Socket[] = [];
const server = net.createServer({ noDelay: true }, (socket) => {
  accepted.push(socket);
  socket.on("error", () => {});
  socket.pipe(socket);
});
await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
const port = (server.address() as net.AddressInfo).port;
const address = { hostname: "127.0.0.1", port };

/** Waits for `count` more accepted sockets and returns their client ports. */
async function newClientPorts(before: number, count: number): Promise<number[]> {
  for (let i = 0; i < 200 && accepted.length < before + count; i++) await delay(5);
  return accepted.slice(before).map((socket) => socket.remotePort!);
}

async function roundTrip(
  connection: {
    write(c: Uint8Array): Promise<void>;
    read(o?: { signal?: AbortSignal }): Promise<Uint8Array | null>;
  },
  text: string,
  timeoutMs: number,
): Promise<string | null> {
  await connection.write(encoder.encode(text));
  let reply = "";
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    while (reply.length < text.length) {
      const chunk = await connection.read({ signal });
      if (chunk === null) return null;
      reply += decoder.decode(chunk);
    }
  } catch {
    return null; // no reply in time (or the read failed)
  }
  return reply;
}

let dropAt = 0;
const keptClosed: Array<{ id: number; reason: string; afterDropMs: number }> = [];
const events = (event: PoolEvent): void => {
  if (event.type === "closed" && dropAt > 0) {
    keptClosed.push({
      id: event.id,
      reason: event.reason,
      afterDropMs: Math.round(performance.now() - dropAt),
    });
  }
};
const kept = new ConnectionPool({ keepAlive, connectTimeout: 1000, onEvent: events });
const bare = new ConnectionPool({ keepAlive: false, connectTimeout: 1000 });
const validated = new ConnectionPool({
  keepAlive: false,
  connectTimeout: 1000,
  validateAfter: 0,
  validate: async (connection) => (await roundTrip(connection, "ping", 300)) === "ping",
});

// Two idle connections in each pool, each used once (so that `created`
// says nothing about them later: their ids do).
const ports: Record<string, number[]> = {};
const ids: Record<string, number[]> = {};
for (const [name, pool] of [["kept", kept], ["bare", bare], ["validated", validated]] as const) {
  const before = accepted.length;
  await pool.add(address);
  await pool.add(address);
  ports[name] = await newClientPorts(before, 2);
  const leases = [await pool.acquire(address), await pool.acquire(address)];
  for (const { connection } of leases) {
    if (await roundTrip(connection, "before", 1000) !== "before") throw new Error("no echo");
  }
  ids[name] = leases.map(({ connection }) => connection.id);
  for (const { connection } of leases) pool.retain(connection);
}
const flows = Object.values(ports).flat();

// Every packet of those flows is dropped, in both directions (on lo, each
// packet passes the input hook once); new flows still get through.
const set = `{ ${flows.join(", ")} }`;
await run("nft", ["add", "table", "inet", "silent_peer"]);
await run("nft", [
  "add",
  "chain",
  "inet",
  "silent_peer",
  "input",
  "{ type filter hook input priority 0; policy accept; }",
]);
await run("nft", ["add", "rule", "inet", "silent_peer", "input", "tcp", "sport", set, "drop"]);
await run("nft", ["add", "rule", "inet", "silent_peer", "input", "tcp", "dport", set, "drop"]);
dropAt = performance.now();

// Found dead: both of kept's idle connections closed.
while (keptClosed.length < 2 && performance.now() - dropAt < detectWithinMs) await delay(20);
const detectedMs = Math.round(performance.now() - dropAt);
const keptIdleAfter = kept.stats().idle;

// What an acquire gets now from each pool.
const fresh = await kept.acquire(address);
const keptAcquire = {
  reused: ids.kept!.includes(fresh.connection.id),
  echo: await roundTrip(fresh.connection, "after", 1000),
};
kept.release(fresh.connection);

const bareIdle = bare.stats().idle;
const stale = await bare.acquire(address);
const bareAcquire = {
  idleBefore: bareIdle,
  reused: ids.bare!.includes(stale.connection.id),
  echo: await roundTrip(stale.connection, "after", 500),
};
bare.release(stale.connection);

const validatedStarted = performance.now();
const checked = await validated.acquire(address);
const validatedAcquire = {
  reused: ids.validated!.includes(checked.connection.id),
  ms: Math.round(performance.now() - validatedStarted),
  validationFailed: validated.stats().totals.validationFailed,
  echo: await roundTrip(checked.connection, "after", 1000),
};
validated.release(checked.connection);

// The whole peer stops answering: new connects time out, cleanly.
await run("nft", [
  "add",
  "rule",
  "inet",
  "silent_peer",
  "input",
  "tcp",
  "dport",
  String(port),
  "drop",
]);
const gone = await kept.acquire(address).then(
  (lease) => ({ reused: ids.kept!.includes(lease.connection.id), code: undefined }),
  (error) => ({ reused: undefined, code: (error as { code?: string }).code }),
);

console.log(JSON.stringify({
  keepAlive,
  ports,
  ids,
  detectedMs,
  keptClosed,
  keptIdleAfter,
  keptAcquire,
  bareAcquire,
  validatedAcquire,
  gone,
  sysctl: {
    time: (await run("sysctl", ["-n", "net.ipv4.tcp_keepalive_time"])).trim(),
    intvl: (await run("sysctl", ["-n", "net.ipv4.tcp_keepalive_intvl"])).trim(),
    probes: (await run("sysctl", ["-n", "net.ipv4.tcp_keepalive_probes"])).trim(),
  },
}));
// A connect left in SYN-SENT (Bun cannot cancel one) would keep the process
// alive for minutes; the namespace and everything in it go with the process.
process.exit(0);
