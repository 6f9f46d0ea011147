// An acquire waiting in line must keep the process alive, even when
// nothing else would (the in-memory transport holds no handles, and the
// connection it waits for is given back from an unref'd timer). Prints
// "served" if the waiter got its connection before the process ended.
// No top-level await: a pending one keeps some runtimes alive by itself.
import { ConnectionPool } from "../../mod.ts";
import { MemoryTransport } from "../../src/transports/memory.ts";

const address = { hostname: "memory.test", port: 1 };
const transport = new MemoryTransport();
transport.listen(address, () => {});
const pool = new ConnectionPool({ transport, maxPerHost: 1 });
pool.acquire(address).then((first) => {
  pool.acquire(address).then((second) => {
    console.log("served");
    pool.retain(second.connection);
    return pool.close();
  });
  const timer = setTimeout(() => pool.retain(first.connection), 50);
  (timer as { unref?: () => void }).unref?.();
  (globalThis as { Deno?: { unrefTimer?(id: unknown): void } }).Deno?.unrefTimer?.(timer);
});
