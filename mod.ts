/**
 * Pools of reusable TCP connections to upstream servers, for Deno, Bun and
 * Node: `acquire` a connection (an idle one if the pool has a healthy one),
 * `retain` it when the exchange is complete, `release` it when it is not.
 * While connections sit idle the pool keeps reading them, so one that the
 * upstream closed, reset or wrote to is dropped before anyone gets it.
 *
 * @example Ping a Redis server over a pooled connection
 * ```ts ignore
 * import { ConnectionPool } from "@upstream/pool";
 *
 * const pool = new ConnectionPool();
 * const redis = { hostname: "127.0.0.1", port: 6379 };
 * for (let i = 0; i < 3; i++) {
 *   const { created, connection } = await pool.acquire(redis);
 *   await connection.write(new TextEncoder().encode("PING\r\n"));
 *   await connection.read(); // "+PONG\r\n"
 *   pool.retain(connection);
 *   console.log(created ? "opened" : "reused"); // opened, reused, reused
 * }
 * await pool.close();
 * ```
 *
 * @module
 */
export {
  type AcquireOptions,
  type CloseOptions,
  ConnectionPool,
  type ConnectionPoolOptions,
  type RetainOptions,
} from "./src/pool.ts";
export type { ExchangeOptions } from "./src/exchange.ts";
export type { AddressPolicyOptions, PerAddressOptions, PoolPolicyOptions } from "./src/options.ts";
export type {
  ClosedEvent,
  CloseReason,
  ConnectErrorEvent,
  ExpireEvent,
  HandedOutEvent,
  LeakEvent,
  OpenedEvent,
  PoolEvent,
  RetryEvent,
  ReturnedEvent,
  SetUpEvent,
} from "./src/events.ts";
export type {
  Acquired,
  ConnectionState,
  ReadOptions,
  UpstreamConnection,
} from "./src/connection.ts";
export {
  type Address,
  resolveAddress,
  type ResolvedAddress,
  type ResolvedTcpAddress,
  type ResolvedTlsOptions,
  type ResolvedUnixAddress,
  type TcpAddress,
  type TlsOptions,
  type UnixAddress,
} from "./src/address.ts";
export { PoolError, type PoolErrorCode, type PoolErrorOptions } from "./src/errors.ts";
export type { AddressCounts, PoolCounts, PoolStats, PoolTotals } from "./src/stats.ts";
export type {
  TlsInfo,
  TlsSessionCache,
  Transport,
  TransportConnection,
  TransportConnectOptions,
} from "./src/transports/transport.ts";
export { detectTransport } from "./src/transports/detect.ts";
