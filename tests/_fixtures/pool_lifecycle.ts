// Uses a pool with the runtime's default transport against an upstream on
// the given port, then stops doing anything. The process must exit by
// itself: idle pooled connections ("idle" mode) and a closed pool ("closed"
// mode) may not keep it alive. Prints what it did and, where the runtime can
// list them, the handles still active.
import process from "node:process";
import { ConnectionPool } from "../../mod.ts";

const [port, mode] = process.argv.slice(2);
const address = { hostname: "127.0.0.1", port: Number(port) };
const pool = new ConnectionPool();
const leases = await Promise.all([1, 2, 3].map(() => pool.acquire(address)));
for (const { connection } of leases) {
  await connection.write(new TextEncoder().encode("ping"));
  await connection.read();
}
const kept = leases.pop()!;
for (const { connection } of leases) pool.retain(connection);
if (mode === "closed") {
  await pool.close();
  pool.retain(kept.connection); // given back after close: closed, not pooled
} else {
  pool.retain(kept.connection);
}
// Sockets closed above finish closing at the next turn of the loop.
await new Promise((resolve) => setTimeout(resolve, 10));
const stats = pool.stats();
console.log(JSON.stringify({
  idle: stats.idle,
  borrowed: stats.borrowed,
  connecting: stats.connecting,
  // Bun does not list its handles; Node and Deno do.
  resources: process.getActiveResourcesInfo?.() ?? [],
}));
