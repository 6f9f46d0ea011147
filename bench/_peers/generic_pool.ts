// generic-pool over raw `node:net` sockets: the do-it-yourself pool. Its
// `validate` (run at every borrow) only reads a flag the socket's own events
// set (closed, failed, bytes while idle); there is no turn of the event loop
// before a reuse, so a close already in the kernel but not yet delivered as
// an event goes unseen.
import genericPool from "generic-pool";
import { getRequest } from "../_http.ts";
import type { HttpClient } from "./client.ts";
import { NetHttpConnection } from "./net_connection.ts";

/** generic-pool of at most `connections` node:net sockets to 127.0.0.1:`port`. */
export function genericPoolClient(port: number, connections: number): HttpClient {
  const request = getRequest(port);
  const pool = genericPool.createPool<NetHttpConnection>({
    create: () => NetHttpConnection.connect(port),
    destroy: (connection) => Promise.resolve(connection.destroy()),
    validate: (connection) => Promise.resolve(connection.alive),
  }, { max: connections, min: 0, testOnBorrow: true });
  return {
    async get() {
      const connection = await pool.acquire();
      try {
        await connection.get(request);
      } catch (error) {
        void pool.destroy(connection);
        throw error;
      }
      if (connection.alive && !connection.closing) void pool.release(connection);
      else void pool.destroy(connection);
    },
    async close() {
      await pool.drain();
      await pool.clear();
    },
  };
}
