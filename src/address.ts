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
  /**
   * Speak TLS over the connection: `true` for the defaults (verify the
   * certificate against the runtime's trusted roots, for `hostname`), or
   * {@linkcode TlsOptions}. Connections are shared only between acquires
   * whose TLS options are the same.
   */
  tls?: boolean | TlsOptions;
}

/**
 * How a TLS connection is made. Every field is part of the connection's
 * identity: a connection opened with one set of options is never handed to
 * an acquire that gave another.
 *
 * @example Trust a private CA and present a client certificate
 * ```ts ignore
 * import type { TcpAddress } from "@upstream/pool";
 * const db: TcpAddress = {
 *   hostname: "10.0.0.7",
 *   port: 5433,
 *   tls: { serverName: "db.internal", caCerts: [caPem], cert: clientPem, key: clientKeyPem },
 * };
 * ```
 */
export interface TlsOptions {
  /**
   * The name sent in SNI and checked against the certificate; defaults to
   * the address's `hostname` (an IP address is checked as such, without SNI).
   */
  serverName?: string;
  /**
   * Root certificates to trust, in PEM. On Node and Bun they replace the
   * runtime's default roots; on Deno they are trusted in addition to them
   * (Deno has no way to drop its defaults).
   */
  caCerts?: readonly string[];
  /**
   * `false` accepts any certificate (Node and Bun only; Deno cannot turn
   * verification off per connection and rejects the connect). Default `true`.
   */
  verify?: boolean;
  /** A client certificate chain in PEM, with `key` (Node and Bun only). */
  cert?: string;
  /** The client certificate's private key in PEM, with `cert`. */
  key?: string;
  /** ALPN protocols to offer, such as `["http/1.1"]`. */
  alpnProtocols?: readonly string[];
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
  /** The TLS options with their defaults filled in, or `undefined` for plain TCP. */
  readonly tls: ResolvedTlsOptions | undefined;
  /**
   * The pool key: connections are shared only between acquires whose keys
   * are equal. Readable on purpose (`"127.0.0.1:6379"`, `"[::1]:80"`,
   * `"tls:db.internal:5432"`): it is also the name of the address in
   * `stats()`. A TLS key lists every option that differs from the defaults;
   * certificates appear as numbers, equal for equal PEM text
   * (`"tls:10.0.0.7:5433?sni=db.internal&ca=1"`).
   */
  readonly key: string;
}

/**
 * TLS options after validation, defaults filled in. Transports receive this.
 *
 * @example
 * ```ts
 * import { resolveAddress } from "@upstream/pool";
 * const address = resolveAddress({ hostname: "Example.com", port: 443, tls: true });
 * if (address.kind === "tcp") console.log(address.tls?.serverName); // "example.com"
 * ```
 */
export interface ResolvedTlsOptions {
  /** The name for SNI and certificate checks, in lower case. */
  readonly serverName: string;
  /** Root certificates to trust in PEM, or `undefined` for the runtime's defaults. */
  readonly caCerts: readonly string[] | undefined;
  /** Whether the server's certificate is checked. */
  readonly verify: boolean;
  /** The client certificate chain in PEM, if one is presented. */
  readonly cert: string | undefined;
  /** The client certificate's key in PEM, if one is presented. */
  readonly key: string | undefined;
  /** ALPN protocols to offer, if any. */
  readonly alpnProtocols: readonly string[] | undefined;
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
 * The result is frozen; passing it (or, unchanged, the same object as
 * before) again returns the same result at once, without checking anew.
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
  const known = knownResolution(address);
  if (known !== undefined) return known;
  const resolved = Object.freeze(resolveAnew(address));
  resolvedAddresses.add(resolved);
  const { tls } = address as { tls?: unknown };
  // Only plain fields can be compared cheaply; a TLS options object could
  // have changed inside, so an address with one is resolved each time.
  if (tls === undefined || typeof tls === "boolean") {
    const { hostname, port, path } = address as FieldsOf<TcpAddress & UnixAddress>;
    lastResolutions.set(address, { hostname, port, path, tls, resolved });
  }
  return resolved;
}

// Acquires usually pass the same address object again and again, or an
// address the pool resolved before (`connection.address`): both are
// recognised without validating and building the key anew, which also
// keeps the key the same string, so map lookups do not hash it again.
const resolvedAddresses = new WeakSet<object>();
type FieldsOf<T> = { [K in keyof T]: unknown };
interface LastResolution extends FieldsOf<TcpAddress & UnixAddress> {
  resolved: ResolvedAddress;
}
const lastResolutions = new WeakMap<object, LastResolution>();

function knownResolution(address: Address): ResolvedAddress | undefined {
  if (address === null || typeof address !== "object") return undefined;
  if (resolvedAddresses.has(address)) return address as ResolvedAddress;
  const last = lastResolutions.get(address);
  if (last === undefined) return undefined;
  const now = address as FieldsOf<TcpAddress & UnixAddress>;
  return now.hostname === last.hostname && now.port === last.port && now.path === last.path &&
      now.tls === last.tls
    ? last.resolved
    : undefined;
}

function resolveAnew(address: Address): ResolvedAddress {
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
    if ("tls" in address && address.tls !== undefined && address.tls !== false) {
      throw new TypeError("Invalid address: tls is for { hostname, port } addresses only");
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
  const hostPort = hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`;
  const tls = resolveTls(tcp.tls, hostname);
  const key = tls === undefined ? hostPort : `tls:${hostPort}${tlsKeySuffix(tls, hostname)}`;
  return { kind: "tcp", hostname, port, tls, key };
}

const TLS_OPTION_NAMES = new Set([
  "serverName",
  "caCerts",
  "verify",
  "cert",
  "key",
  "alpnProtocols",
]);

function resolveTls(tls: unknown, hostname: string): ResolvedTlsOptions | undefined {
  if (tls === undefined || tls === false) return undefined;
  if (tls === true) {
    return Object.freeze({
      serverName: hostname,
      caCerts: undefined,
      verify: true,
      cert: undefined,
      key: undefined,
      alpnProtocols: undefined,
    });
  }
  if (tls === null || typeof tls !== "object" || Array.isArray(tls)) {
    throw new TypeError(
      `Invalid address: tls must be a boolean or an object, got ${describe(tls)}`,
    );
  }
  // A misspelt option (say `ca` for `caCerts`) would silently trust the
  // default roots instead of the caller's: refuse it.
  for (const name of Object.keys(tls)) {
    if (!TLS_OPTION_NAMES.has(name)) {
      throw new TypeError(`Invalid address: unknown TLS option "${name}"`);
    }
  }
  const options = tls as TlsOptions;
  const serverName = options.serverName === undefined
    ? hostname
    : normaliseHostname(options.serverName, "tls.serverName");
  const verify = options.verify ?? true;
  if (typeof verify !== "boolean") {
    throw new TypeError(`Invalid address: tls.verify must be a boolean, got ${describe(verify)}`);
  }
  const cert = optionalPem(options.cert, "tls.cert");
  const key = optionalPem(options.key, "tls.key");
  if ((cert === undefined) !== (key === undefined)) {
    throw new TypeError("Invalid address: tls.cert and tls.key go together: give both or neither");
  }
  return Object.freeze({
    serverName,
    caCerts: optionalStrings(options.caCerts, "tls.caCerts"),
    verify,
    cert,
    key,
    alpnProtocols: alpnProtocols(options.alpnProtocols),
  });
}

// Certificates and keys get a number in the key: the same texts always get
// the same number within a process, so equal options share connections and
// the key stays short, readable and free of key material.
const pemIds = new Map<string, number>();

function pemId(pem: string): number {
  let id = pemIds.get(pem);
  if (id === undefined) pemIds.set(pem, id = pemIds.size + 1);
  return id;
}

/** The options that differ from the defaults, as a query string. */
function tlsKeySuffix(tls: ResolvedTlsOptions, hostname: string): string {
  const parts: string[] = [];
  // Every part is exact: two different sets of options never read the same.
  if (tls.serverName !== hostname) parts.push(`sni=${encodeURIComponent(tls.serverName)}`);
  if (tls.caCerts !== undefined) parts.push(`ca=${pemId(JSON.stringify(tls.caCerts))}`);
  if (!tls.verify) parts.push("verify=off");
  if (tls.cert !== undefined) parts.push(`cert=${pemId(JSON.stringify([tls.cert, tls.key]))}`);
  if (tls.alpnProtocols !== undefined) {
    parts.push(`alpn=${tls.alpnProtocols.map(encodeURIComponent).join(",")}`);
  }
  return parts.length === 0 ? "" : `?${parts.join("&")}`;
}

function optionalPem(value: unknown, name: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "string" || value.trim() === "") {
    throw new TypeError(`Invalid address: ${name} must be a PEM string, got ${describe(value)}`);
  }
  return value;
}

function alpnProtocols(value: unknown): readonly string[] | undefined {
  const protocols = optionalStrings(value, "tls.alpnProtocols");
  const encoder = new TextEncoder();
  for (const name of protocols ?? []) {
    if (encoder.encode(name).length > 255) {
      throw new RangeError(
        `Invalid address: an ALPN protocol name is at most 255 bytes, got ${JSON.stringify(name)}`,
      );
    }
  }
  return protocols;
}

function optionalStrings(value: unknown, name: string): readonly string[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || value.length === 0) {
    throw new TypeError(
      `Invalid address: ${name} must be a non-empty array of strings, got ${describe(value)}`,
    );
  }
  for (const item of value) {
    if (typeof item !== "string" || item.trim() === "") {
      throw new TypeError(
        `Invalid address: ${name} must hold non-empty strings, got ${describe(item)}`,
      );
    }
  }
  return Object.freeze([...value]);
}

function normaliseHostname(hostname: unknown, name = "hostname"): string {
  if (typeof hostname !== "string") {
    throw new TypeError(`Invalid address: ${name} must be a string, got ${describe(hostname)}`);
  }
  let host = hostname;
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  if (host === "") throw new TypeError(`Invalid address: ${name} must not be empty`);
  if (INVALID_HOST_CHARS.test(host)) {
    throw new TypeError(
      `Invalid address: ${name} ${JSON.stringify(hostname)} is not a host name or IP address`,
    );
  }
  if (host.includes(":") && !/^[0-9a-fA-F:.]+(%[\w.-]+)?$/.test(host)) {
    throw new TypeError(
      `Invalid address: ${name} ${JSON.stringify(hostname)} is not a valid IPv6 address`,
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
