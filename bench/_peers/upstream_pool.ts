// This library as an HTTP/1.1 client: acquire → write the request → read a
// complete response (Content-Length) → retain. Bytes past the response, or
// `Connection: close`, mean the connection is released instead.
//
// Two variants use API from issue 10: `exchange` (one request/reply,
// retried once on a new connection when a reused one failed before any
// reply byte) and a per-idle-period deadline (`retain(connection,
// { idleTimeout })`, which `exchange` also takes). They are built only when
// `typeof pool.exchange === "function"`, so that the benchmark still runs
// the rest, and says which are missing, on a build without them.
import {
  type Address,
  ConnectionPool,
  type Transport,
  type UpstreamConnection,
} from "../../mod.ts";
import { getRequest, ResponseCutShort, ResponseReader } from "../_http.ts";
import type { HttpClient } from "./client.ts";

/** How the client uses the pool. */
export type PoolVariant =
  /** acquire → request → retain, nothing else. */
  | "plain"
  /** `exchange(..., { idempotent: true, idleTimeout: deadline })`. */
  | "exchange+deadline"
  /** acquire → request → `retain(connection, { idleTimeout: deadline })`, no retry. */
  | "deadline";

/** Whether this build of the pool has `exchange` (and with it per-retain idle deadlines). */
export function hasExchange(): boolean {
  return typeof ConnectionPool.prototype.exchange === "function";
}

/** The pool's retry count (`stats().totals.retried`) where the pool counts retries. */
export function retriedCount(client: HttpClient): number | undefined {
  return pools.get(client)?.stats().totals.retried;
}

const pools = new WeakMap<HttpClient, ConnectionPool>();

/**
 * Reads one complete response from `connection`; true if nothing followed
 * it (the connection may be reused).
 */
async function readResponse(connection: UpstreamConnection): Promise<boolean> {
  const reader = new ResponseReader();
  for (;;) {
    const chunk = await connection.read();
    if (chunk === null) throw new ResponseCutShort(reader.received);
    const used = reader.push(chunk);
    if (used >= 0) return used === chunk.length && !reader.close;
  }
}

export interface PoolClientOptions {
  variant?: PoolVariant;
  /** The idle deadline of the deadline variants, in ms (the server's timeout minus a margin). */
  deadline?: number;
  /** The pool's transport; the runtime's own if unset. */
  transport?: Transport;
}

/** upstream-pool with `maxPerHost: connections` to 127.0.0.1:`port`. */
export function upstreamPoolClient(
  port: number,
  connections: number,
  options: PoolClientOptions = {},
): HttpClient {
  const variant = options.variant ?? "plain";
  const deadline = options.deadline ?? 0;
  if (variant !== "plain" && !hasExchange()) {
    throw new Error(`The ${variant} variant needs pool.exchange, which this build lacks`);
  }
  const address: Address = { hostname: "127.0.0.1", port };
  const request = getRequest(port);
  const pool = new ConnectionPool({
    maxPerHost: connections,
    ...(options.transport === undefined ? {} : { transport: options.transport }),
  });
  const exchange = async (connection: UpstreamConnection): Promise<void> => {
    await connection.write(request);
    if (!await readResponse(connection)) pool.release(connection);
  };
  const client: HttpClient = {
    get: variant === "exchange+deadline"
      ? () => pool.exchange(address, exchange, { idempotent: true, idleTimeout: deadline })
      : async () => {
        const { connection } = await pool.acquire(address);
        let clean: boolean;
        try {
          await connection.write(request);
          clean = await readResponse(connection);
        } catch (error) {
          pool.release(connection);
          throw error;
        }
        if (!clean) pool.release(connection);
        else if (variant === "deadline") pool.retain(connection, { idleTimeout: deadline });
        else pool.retain(connection);
      },
    close: () => pool.close(),
  };
  pools.set(client, pool);
  return client;
}
