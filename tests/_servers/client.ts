// How the real-server tests run one request through the pool, in the two
// ways the pool offers against the keep-alive edge (a server closing an idle
// connection just as the pool hands it out):
//
// - `pool.exchange(..., { idempotent: true })`: the pool sends the request
//   again, on a new connection, when it failed on a reused connection that
//   the server ended before a single reply byte came back. The test client
//   has no retry of its own; the pool counts its retries in
//   `stats().totals.retried`.
// - An idle deadline shorter than the server's timeout,
//   `retain(connection, { idleTimeout })`, and no retry at all: the pool
//   never hands out a connection idle that long, so the server cannot have
//   closed it yet.
//
// Either way a failed request is final here, and the tests demand none.
import type { ConnectionPool, UpstreamConnection } from "../../mod.ts";
import type { HandoutProbe } from "./handout_probe.ts";
import type { RealServer } from "./real_server.ts";
import { ReplyReader } from "./reply_reader.ts";

/** What the test client keeps per connection, in `connection.state`. */
export interface ClientState {
  /** Attempts run on this connection so far (more than 1: it was reused). */
  attempts?: number;
}

/** A pool of the test client's connections. */
export type ClientPool = ConnectionPool<ClientState>;

/** What one client saw over many requests. */
export class RequestCounts {
  /** Requests that succeeded. */
  ok = 0;
  /** Attempts on a new connection / on a reused one. */
  created = 0;
  reused = 0;
  /**
   * Attempts on a reused connection that failed before a reply byte came
   * back, and how long that connection had been idle when its request was
   * written (ms): the races at the keep-alive edge.
   */
  racesIdleMs: number[] = [];
  /** Handouts of a connection whose close the pool had already been told of: must stay 0. */
  deadAtHandout = 0;
  /** The longest idle time of a reused connection that then served its request (ms). */
  longestIdleReuse = 0;
}

/** Request `id` through `pool.exchange`, replayable; throws if it failed even so. */
export function request(
  pool: ClientPool,
  server: RealServer,
  id: number,
  counts: RequestCounts,
  probe?: HandoutProbe,
): Promise<void> {
  return pool.exchange(
    server.address,
    (connection) => attempt(connection, server, id, counts, probe),
    { idempotent: true },
  );
}

/**
 * Request `id` on a connection retained with an idle deadline of
 * `idleTimeout` ms, and no retry: throws on any failure.
 */
export async function requestWithDeadline(
  pool: ClientPool,
  server: RealServer,
  id: number,
  counts: RequestCounts,
  idleTimeout: number,
  probe?: HandoutProbe,
): Promise<void> {
  const { connection } = await pool.acquire(server.address);
  try {
    await attempt(connection, server, id, counts, probe);
  } catch (error) {
    pool.release(connection);
    throw error;
  }
  // A complete, exact reply: the exchange is over. (retain closes the
  // connection instead if the server closed it meanwhile.)
  pool.retain(connection, { idleTimeout });
}

/** One attempt of request `id` on a borrowed connection, with what the probe saw counted. */
async function attempt(
  connection: UpstreamConnection<ClientState>,
  server: RealServer,
  id: number,
  counts: RequestCounts,
  probe: HandoutProbe | undefined,
): Promise<void> {
  const attempts = connection.state.attempts = (connection.state.attempts ?? 0) + 1;
  const reused = attempts > 1;
  if (reused) counts.reused++;
  else counts.created++;
  const reader = new ReplyReader(connection);
  try {
    await server.exchange(reader, id);
  } catch (error) {
    const seen = reader.sent && probe?.writeOf(reader.sent);
    if (seen?.closeSeen && reused) counts.deadAtHandout++;
    if (reused && reader.received === 0) counts.racesIdleMs.push(Math.round(seen?.idleMs ?? -1));
    throw error;
  }
  const seen = reader.sent && probe?.writeOf(reader.sent);
  if (seen && reused) {
    if (seen.closeSeen) counts.deadAtHandout++;
    counts.longestIdleReuse = Math.max(counts.longestIdleReuse, seen.idleMs);
  }
  counts.ok++;
}
