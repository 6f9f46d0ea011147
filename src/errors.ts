/**
 * The library's own errors. Wrong arguments are `TypeError`/`RangeError`;
 * conditions a caller is expected to handle are a {@linkcode PoolError}
 * with a stable `code`.
 *
 * @module
 */

/**
 * Every `code` a {@linkcode PoolError} can carry.
 *
 * - `CONNECT_REFUSED`: the upstream refused the connection.
 * - `HOST_NOT_FOUND`: the host name did not resolve.
 * - `CONNECT_TIMEOUT`: the connect took longer than `connectTimeout`.
 * - `ACQUIRE_TIMEOUT`: the acquire took longer than `acquireTimeout`
 *   (waiting and connecting); `cause` is the last connect error, if any.
 * - `QUEUE_FULL`: `maxWaiting` acquires already wait for that address.
 * - `LIMIT_REACHED`: `add` found the address or the pool at its connection limit.
 * - `TLS_CERT_INVALID`: the server's TLS certificate failed verification
 *   (unknown issuer, wrong name, expired; the runtime's error is `cause`).
 *   Never retried without verification.
 * - `TLS_HANDSHAKE_FAILED`: the TLS handshake failed for another reason
 *   (the server does not speak TLS, no common protocol version, ...).
 * - `TLS_UNSUPPORTED`: the runtime cannot make the TLS connection asked for
 *   (Deno cannot turn verification off or present a client certificate).
 * - `CONNECT_FAILED`: any other connect failure (see `cause`).
 * - `POOL_CLOSED`: the pool was closed.
 * - `NOT_BORROWED`: `retain`/`release` of a connection that this pool did
 *   not hand out, or that was already given back.
 * - `LEASE_ENDED`: a read or write on a connection after it was given back.
 * - `CONNECTION_LOST`: a read or write failed on an open connection (reset,
 *   broken pipe; see `cause`). `reused` and `received` tell whether the
 *   request may safely be sent again on a new connection.
 * - `SETUP_FAILED`: the pool's `setup` hook threw, or left unread bytes or a
 *   half-closed connection behind; the connection was closed (the hook's
 *   error is `cause`). Handled like any connect error.
 *
 * @example Retry only what may succeed on a second try
 * ```ts
 * import type { PoolErrorCode } from "@upstream/pool";
 * const transient: PoolErrorCode[] = ["CONNECT_REFUSED", "CONNECTION_LOST"];
 * ```
 */
export type PoolErrorCode =
  | "CONNECT_REFUSED"
  | "HOST_NOT_FOUND"
  | "CONNECT_TIMEOUT"
  | "ACQUIRE_TIMEOUT"
  | "QUEUE_FULL"
  | "LIMIT_REACHED"
  | "TLS_CERT_INVALID"
  | "TLS_HANDSHAKE_FAILED"
  | "TLS_UNSUPPORTED"
  | "CONNECT_FAILED"
  | "POOL_CLOSED"
  | "NOT_BORROWED"
  | "LEASE_ENDED"
  | "CONNECTION_LOST"
  | "SETUP_FAILED";

/**
 * Options for {@linkcode PoolError}.
 *
 * @example
 * ```ts
 * import { PoolError } from "@upstream/pool";
 * const error = new PoolError("POOL_CLOSED", "The pool is closed", { address: "db.test:5432" });
 * console.log(error.address); // "db.test:5432"
 * ```
 */
export interface PoolErrorOptions {
  /** The upstream's pool key, such as `"127.0.0.1:6379"`, when one is involved. */
  address?: string;
  /** The underlying error, such as the runtime's socket error. */
  cause?: unknown;
  /** What failed: `"connect"`, `"acquire"`, `"read"`, `"write"`, `"setup"`, ... */
  operation?: string;
  /** For errors on a connection: whether it had been handed out before this lease. */
  reused?: boolean;
  /** For errors on a connection: bytes received on it during this lease. */
  received?: number;
}

/**
 * An error raised by the pool, with a machine-readable `code`.
 *
 * @example Tell a refused upstream from other failures
 * ```ts
 * import { ConnectionPool, PoolError } from "@upstream/pool";
 * const pool = new ConnectionPool();
 * try {
 *   await pool.acquire({ hostname: "127.0.0.1", port: 1 });
 * } catch (error) {
 *   if (error instanceof PoolError && error.code === "CONNECT_REFUSED") {
 *     console.log(`${error.address} is down`);
 *   }
 * }
 * await pool.close();
 * ```
 */
export class PoolError extends Error {
  /** What went wrong, stable across versions. */
  readonly code: PoolErrorCode;
  /** The upstream's pool key, when the error concerns one upstream. */
  readonly address: string | undefined;
  /** What failed (`"connect"`, `"acquire"`, `"read"`, `"write"`, ...), when known. */
  readonly operation: string | undefined;
  /**
   * For an error on a borrowed connection: `true` if the connection had been
   * handed out before this lease (it was reused), as Go's `GotConnInfo.Reused`
   * and Node's `req.reusedSocket` say. `undefined` for other errors.
   */
  readonly reused: boolean | undefined;
  /**
   * For an error on a borrowed connection: how many bytes were received on it
   * during this lease. With `reused` and 0 here, the upstream never answered:
   * an idempotent request may be sent again on a new connection.
   */
  readonly received: number | undefined;

  /**
   * Creates an error with a code and, optionally, the address and cause.
   *
   * @param code What went wrong.
   * @param message A sentence for people: what failed and why.
   * @param options The address concerned and the underlying cause.
   */
  constructor(code: PoolErrorCode, message: string, options: PoolErrorOptions = {}) {
    super(message, "cause" in options ? { cause: options.cause } : undefined);
    this.name = "PoolError";
    this.code = code;
    this.address = options.address;
    this.operation = options.operation;
    this.reused = options.reused;
    this.received = options.received;
  }
}

const DNS_CODES = new Set(["ENOTFOUND", "EAI_AGAIN", "EAI_NONAME", "EAI_FAIL", "EAI_NODATA"]);

/**
 * Turns whatever a transport's connect rejected with into a
 * {@linkcode PoolError} whose code says what happened.
 */
export function connectError(address: string, cause: unknown): PoolError {
  if (cause instanceof PoolError) return cause;
  const code = (cause as { code?: unknown } | null)?.code;
  const detail = cause instanceof Error ? cause.message : String(cause);
  if (code === "ECONNREFUSED") {
    return new PoolError("CONNECT_REFUSED", `Cannot connect to "${address}": connection refused`, {
      address,
      cause,
      operation: "connect",
    });
  }
  if (typeof code === "string" && DNS_CODES.has(code)) {
    return new PoolError(
      "HOST_NOT_FOUND",
      `Cannot connect to "${address}": the host name did not resolve`,
      { address, cause, operation: "connect" },
    );
  }
  return new PoolError("CONNECT_FAILED", `Cannot connect to "${address}": ${detail}`, {
    address,
    cause,
    operation: "connect",
  });
}

/** The error an acquire or connect for `key` gets once the pool is closed. */
export function closedError(key: string, cause?: unknown): PoolError {
  return new PoolError(
    "POOL_CLOSED",
    `Cannot acquire a connection to "${key}": the pool is closed`,
    cause === undefined
      ? { address: key, operation: "acquire" }
      : { address: key, cause, operation: "acquire" },
  );
}
