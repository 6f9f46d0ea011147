// What every HTTP client in the peer benchmarks offers: one keep-alive GET
// of nginx's `/`, nothing retried, and a way to close it.

/** One client: a pool of connections to one nginx, driven by any number of callers. */
export interface HttpClient {
  /**
   * Sends one GET and resolves once its complete 200 response was read.
   * Rejects on any failure; never retries (except where a variant's
   * purpose is its retry: upstream-pool's `exchange`).
   */
  get(): Promise<void>;
  /** Closes every connection. */
  close(): Promise<void>;
}

/** How the benchmarks build a client: one nginx port, at most `connections` connections. */
export type ClientFactory = (port: number, connections: number) => HttpClient;

/** A short description of a failure: its code or class, and the start of its message. */
export function describeFailure(error: unknown): string {
  if (!(error instanceof Error)) return String(error).slice(0, 80);
  const code = (error as { code?: unknown }).code;
  const kind = typeof code === "string" ? code : error.name;
  return `${kind}: ${error.message.slice(0, 80)}`;
}
