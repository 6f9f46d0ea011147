/**
 * Upstream addresses: what callers pass, how it is checked, and the key
 * that decides which connections may be shared.
 *
 * @module
 */

/**
 * A TCP upstream, as callers give it.
 *
 * @example
 * ```ts
 * import type { TcpAddress } from "@upstream/pool";
 * const redis: TcpAddress = { hostname: "127.0.0.1", port: 6379 };
 * ```
 */
export interface TcpAddress {
  /** Host name or IP address. IPv6 may be bracketed (`"[::1]"`); case does not matter. */
  hostname: string;
  /** TCP port, 1 to 65535. A decimal string such as `"6379"` is accepted too. */
  port: number | string;
}

/**
 * A Unix-domain socket upstream, as callers give it.
 *
 * @example
 * ```ts
 * import type { UnixAddress } from "@upstream/pool";
 * const postgres: UnixAddress = { path: "/run/postgresql/.s.PGSQL.5432" };
 * ```
 */
export interface UnixAddress {
  /** The socket's file system path, used as given (a relative path is relative to the working directory). */
  path: string;
}

/**
 * An upstream, as callers give it: TCP (`{ hostname, port }`) or a Unix
 * socket (`{ path }`).
 *
 * @example
 * ```ts
 * import type { Address } from "@upstream/pool";
 * const upstreams: Address[] = [{ hostname: "127.0.0.1", port: 6379 }, { path: "/tmp/app.sock" }];
 * ```
 */
export type Address = TcpAddress | UnixAddress;

/**
 * A TCP address after validation: host name in lower case, IPv6 without
 * brackets, port as a number.
 *
 * @example
 * ```ts
 * import { resolveAddress } from "@upstream/pool";
 * const resolved = resolveAddress({ hostname: "[::1]", port: "80" });
 * // resolved.kind === "tcp", resolved.hostname === "::1", resolved.port === 80
 * ```
 */
export interface ResolvedTcpAddress {
  /** A TCP upstream. */
  readonly kind: "tcp";
  /** Lower-case host name or IP address, IPv6 without brackets. */
  readonly hostname: string;
  /** Port as an integer from 1 to 65535. */
  readonly port: number;
  /**
   * The pool key: connections are shared only between acquires whose keys
   * are equal. Readable on purpose (`"127.0.0.1:6379"`, `"[::1]:80"`): it is
   * also the name of the address in `stats()`.
   */
  readonly key: string;
}

/**
 * A Unix-socket address after validation.
 *
 * @example
 * ```ts
 * import { resolveAddress } from "@upstream/pool";
 * console.log(resolveAddress({ path: "/tmp/app.sock" }).key); // "unix:/tmp/app.sock"
 * ```
 */
export interface ResolvedUnixAddress {
  /** A Unix-domain socket upstream. */
  readonly kind: "unix";
  /** The socket's path, as given. */
  readonly path: string;
  /** The pool key, `"unix:" + path`; also the address's name in `stats()`. */
  readonly key: string;
}

/**
 * An address after validation and normalisation, with its pool key.
 * Transports receive this.
 *
 * @example
 * ```ts
 * import { type ResolvedAddress, resolveAddress } from "@upstream/pool";
 * const address: ResolvedAddress = resolveAddress({ hostname: "LocalHost", port: 8080 });
 * console.log(address.kind === "tcp" ? address.hostname : address.path); // "localhost"
 * ```
 */
export type ResolvedAddress = ResolvedTcpAddress | ResolvedUnixAddress;

// Control characters, white space and characters that never appear in a
// host name or IP literal; rejecting them early gives a clear error instead
// of a confusing DNS failure.
// deno-lint-ignore no-control-regex -- matching control characters is the point
const INVALID_HOST_CHARS = /[\s\x00-\x1f\x7f/\\?#@[\]]/;

/**
 * Checks an address and returns its normalised form with its pool key.
 *
 * @param address The upstream, as a caller gave it.
 * @returns The normalised address.
 * @throws {TypeError} If `address`, `hostname`, `port` or `path` has the
 * wrong type, if both or neither of `path` and `hostname` are given, or if
 * `hostname` or `path` is empty or holds characters it cannot have.
 * @throws {RangeError} If `port` is not an integer from 1 to 65535.
 *
 * @example
 * ```ts
 * import { resolveAddress } from "@upstream/pool";
 * const a = resolveAddress({ hostname: "LocalHost", port: 8080 });
 * const b = resolveAddress({ hostname: "localhost", port: "8080" });
 * console.log(a.key === b.key); // true
 * ```
 */
export function resolveAddress(address: Address): ResolvedAddress {
  if (address === null || typeof address !== "object") {
    throw new TypeError(
      `Invalid address: expected an object like { hostname, port } or { path }, got ${
        describe(address)
      }`,
    );
  }
  if ("path" in address && address.path !== undefined) {
    if ("hostname" in address || "port" in address) {
      throw new TypeError("Invalid address: give either { hostname, port } or { path }, not both");
    }
    const path = address.path;
    if (typeof path !== "string") {
      throw new TypeError(`Invalid address: path must be a string, got ${describe(path)}`);
    }
    if (path === "" || path.includes("\0")) {
      throw new TypeError(`Invalid address: path ${JSON.stringify(path)} is not a socket path`);
    }
    return { kind: "unix", path, key: `unix:${path}` };
  }
  const tcp = address as TcpAddress;
  const hostname = normaliseHostname(tcp.hostname);
  const port = normalisePort(tcp.port);
  const key = hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`;
  return { kind: "tcp", hostname, port, key };
}

function normaliseHostname(hostname: unknown): string {
  if (typeof hostname !== "string") {
    throw new TypeError(`Invalid address: hostname must be a string, got ${describe(hostname)}`);
  }
  let host = hostname;
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  if (host === "") throw new TypeError("Invalid address: hostname must not be empty");
  if (INVALID_HOST_CHARS.test(host)) {
    throw new TypeError(
      `Invalid address: hostname ${JSON.stringify(hostname)} is not a host name or IP address`,
    );
  }
  if (host.includes(":") && !/^[0-9a-fA-F:.]+(%[\w.-]+)?$/.test(host)) {
    throw new TypeError(
      `Invalid address: hostname ${JSON.stringify(hostname)} is not a valid IPv6 address`,
    );
  }
  return host.toLowerCase();
}

function normalisePort(port: unknown): number {
  let value: number;
  if (typeof port === "number") {
    value = port;
  } else if (typeof port === "string" && /^[0-9]+$/.test(port)) {
    value = Number(port);
  } else if (typeof port === "string") {
    throw new TypeError(`Invalid address: port ${JSON.stringify(port)} is not a decimal number`);
  } else {
    throw new TypeError(`Invalid address: port must be a number, got ${describe(port)}`);
  }
  if (!Number.isInteger(value) || value < 1 || value > 65535) {
    throw new RangeError(
      `Invalid address: port must be an integer from 1 to 65535, got ${String(port)}`,
    );
  }
  return value;
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number" || typeof value === "boolean") return `${typeof value} ${value}`;
  return typeof value;
}
