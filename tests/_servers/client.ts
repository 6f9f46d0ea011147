// How the real-server tests run one request through the pool, and the one
// retry they allow.
//
// A server may close an idle connection at the very moment the pool hands
// it out: the close leaves the server after the pool's last look, and the
// request meets a closed socket. No pool can prevent that; the client's
// answer (Go's http.Transport, undici) is to send the request again when it
// failed on a *reused* connection before any reply byte arrived. The tests
// do the same, up to MAX_RETRIES times, and count every such race. A failure
// on a new connection, after a reply byte, or of any other kind is final.
import { type ConnectionPool, PoolError } from "../../mod.ts";
import type { HandoutProbe } from "./handout_probe.ts";
import type { RealServer } from "./real_server.ts";
import { ReplyCutShort, ReplyReader } from "./reply_reader.ts";

const MAX_RETRIES = 3;

/** What one client saw over many requests. */
export class RequestCounts {
  /** Requests that succeeded. */
  ok = 0;
  /** Attempts on a new connection / on a reused one. */
  created = 0;
  reused = 0;
  /** Requests retried because a reused connection was closed under them (see above). */
  races = 0;
  /** How long each raced connection had been idle when its request was written (ms). */
  raceIdleMs: number[] = [];
  /** Handouts of a connection whose close the pool had already been told of: must stay 0. */
  deadAtHandout = 0;
  /** The longest idle time of a reused connection that then served its request (ms). */
  longestIdleReuse = 0;
}

/** Runs request `id` with the retry above; throws the final failure. */
export async function request(
  pool: ConnectionPool,
  server: RealServer,
  id: number,
  counts: RequestCounts,
  probe?: HandoutProbe,
): Promise<void> {
  for (let attempt = 0;; attempt++) {
    const { created, connection } = await pool.acquire(server.address);
    if (created) counts.created++;
    else counts.reused++;
    const reader = new ReplyReader(connection);
    try {
      await server.exchange(reader, id);
    } catch (error) {
      pool.release(connection);
      const seen = reader.sent && probe?.writeOf(reader.sent);
      if (seen?.closeSeen && !created) counts.deadAtHandout++;
      if (!created && reader.received === 0 && closedUnder(error) && attempt < MAX_RETRIES) {
        counts.races++;
        if (seen) counts.raceIdleMs.push(Math.round(seen.idleMs));
        continue;
      }
      throw error;
    }
    const seen = reader.sent && probe?.writeOf(reader.sent);
    if (seen && !created) {
      if (seen.closeSeen) counts.deadAtHandout++;
      counts.longestIdleReuse = Math.max(counts.longestIdleReuse, seen.idleMs);
    }
    // A complete, exact reply: the exchange is over. (retain closes the
    // connection instead if the server closed it meanwhile.)
    pool.retain(connection);
    counts.ok++;
    return;
  }
}

/** The connection was closed or reset under the request: EOF, or the pool's CONNECTION_LOST. */
export function closedUnder(error: unknown): boolean {
  return error instanceof ReplyCutShort ||
    (error instanceof PoolError && error.code === "CONNECTION_LOST");
}
