/**
 * The pool's TLS session cache: the latest session per pool key, so that a
 * new connection to an upstream can resume instead of a full handshake.
 *
 * The key names the whole TLS identity (server name, trusted CAs,
 * verification, client certificate), so a session is only ever offered to a
 * connection made with the same options it was made with.
 *
 * @module
 */
import type { TlsSessionCache } from "./transports/transport.ts";

/** Upstreams remembered at most; the least recently saved is forgotten first. */
const MAX_KEYS = 1024;

/** A bounded map from pool key to the latest session a transport saved. */
export class TlsSessions implements TlsSessionCache {
  readonly #sessions = new Map<string, unknown>();

  get(key: string): unknown {
    return this.#sessions.get(key);
  }

  set(key: string, session: unknown): void {
    const sessions = this.#sessions;
    sessions.delete(key); // re-inserted last: Map order is the eviction order
    sessions.set(key, session);
    if (sessions.size > MAX_KEYS) sessions.delete(sessions.keys().next().value!);
  }

  /** Forgets every session (when the pool closes). */
  clear(): void {
    this.#sessions.clear();
  }
}
