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
  /**
   * Host name (at most 253 characters), dotted-quad IPv4 or IPv6 address.
   * IPv6 may be bracketed (`"[::1]"`) and, if link-local, have a zone id
   * naming an interface (`"fe80::1%eth0"`); case does not matter.
   */
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
   * certificates and keys appear as the SHA-256 of their PEM text, equal
   * for equal text in every pool and process
   * (`"tls:10.0.0.7:5433?sni=db.internal&ca=CSTwVH2-K4tC-JqFqeekS9BBOh9lyUEWjJ9nAF9BX_Q"`).
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

import { normaliseHost } from "./_host_names.ts";
import { ADDRESS_KEYS, checkKnownKeys, isPlainObject, TLS_OPTION_KEYS } from "./_known_keys.ts";
import { sha256Text } from "./_sha256.ts";
import { quote, show } from "./_show.ts";

/** Bytes of a Unix socket path at most: Linux's sun_path holds 108, with the final NUL. */
export const MAX_SOCKET_PATH_BYTES = 107;

/**
 * Checks an address and returns its normalised form with its pool key.
 * The result is frozen; passing it (or, unchanged, the same object as
 * before) again returns the same result at once, without checking anew.
 *
 * Only the address's own properties count (inherited ones are ignored),
 * each read once per call.
 *
 * @param address The upstream, as a caller gave it.
 * @returns The normalised address.
 * @throws {TypeError} If `address` or its `tls` is not a plain object or
 * has a key it cannot have (the message names it, and the key probably
 * meant); if `hostname`, `port` or `path` has the wrong type; if both or
 * neither of `path` and `hostname` are given; if `hostname` is not a host
 * name, a dotted-quad IPv4 address or an IPv6 address (a zone id only on a
 * link-local one, by interface name); or if `path` is empty or holds a NUL.
 * @throws {RangeError} If `port` is not an integer from 1 to 65535, a host
 * name is longer than 253 characters (a label than 63), or `path` is longer
 * than 107 bytes.
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
  const anew = resolveAnew(address);
  const resolved = Object.freeze(anew.resolved);
  resolvedAddresses.add(resolved);
  const { hostname, port, path, tls } = anew.fields;
  // Only plain fields can be compared cheaply; a TLS options object could
  // have changed inside, so an address with one is resolved each time. The
  // values remembered are those the resolution was made from (read once),
  // so a getter that answers differently next time never matches them.
  if (tls === undefined || typeof tls === "boolean") {
    const keys = Object.keys(address).length;
    lastResolutions.set(address, { hostname, port, path, tls, keys, resolved });
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
  /** How many own enumerable keys the address had: one added since is checked. */
  keys: number;
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
      now.tls === last.tls && Object.keys(address).length === last.keys
    ? last.resolved
    : undefined;
}

/** Validates an address and builds its resolution, from one snapshot of its own properties. */
function resolveAnew(address: Address): {
  resolved: ResolvedAddress;
  fields: { [K in keyof (TcpAddress & UnixAddress)]?: unknown };
} {
  if (!isPlainObject(address)) {
    throw new TypeError(
      `Invalid address: expected a plain object like { hostname, port } or { path }, got ${
        show(address)
      }`,
    );
  }
  const fields = checkKnownKeys(address, ADDRESS_KEYS, "address");
  if (fields.path !== undefined) {
    if ("hostname" in fields || "port" in fields) {
      throw new TypeError("Invalid address: give either { hostname, port } or { path }, not both");
    }
    if (fields.tls !== undefined && fields.tls !== false) {
      throw new TypeError("Invalid address: tls is for { hostname, port } addresses only");
    }
    const path = checkPath(fields.path);
    return { fields, resolved: { kind: "unix", path, key: `unix:${path}` } };
  }
  const hostname = normaliseHost(fields.hostname, "hostname", true);
  const port = normalisePort(fields.port);
  const hostPort = hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`;
  const tls = resolveTls(fields.tls, hostname);
  const key = tls === undefined
    ? hostPort
    : `tls:${hostPort}${tlsKeySuffix(tls.options, tls.digests, hostname)}`;
  return { fields, resolved: { kind: "tcp", hostname, port, tls: tls?.options, key } };
}

function checkPath(path: unknown): string {
  if (typeof path !== "string") {
    throw new TypeError(`Invalid address: path must be a string, got ${show(path)}`);
  }
  if (path === "" || path.includes("\0")) {
    throw new TypeError(`Invalid address: path ${quote(path)} is not a socket path`);
  }
  // Runtimes differ past the limit (Deno, Bun and Node 24: EINVAL; Node 20:
  // ENOENT), so it is checked here.
  const bytes = path.length > MAX_SOCKET_PATH_BYTES ? encoder.encode(path).length : 0;
  if (bytes > MAX_SOCKET_PATH_BYTES) {
    throw new RangeError(
      `Invalid address: path ${
        quote(path)
      } is ${bytes} bytes long; a Unix socket path has at most ${MAX_SOCKET_PATH_BYTES}`,
    );
  }
  return path;
}

const encoder = new TextEncoder();

/** Digests of a TLS options object's certificates, for its key. */
interface TlsDigests {
  ca: string | undefined;
  cert: string | undefined;
}

function resolveTls(
  tls: unknown,
  hostname: string,
): { options: ResolvedTlsOptions; digests: TlsDigests } | undefined {
  if (tls === undefined || tls === false) return undefined;
  if (tls === true) {
    return {
      options: defaultTls(withoutZone(hostname)),
      digests: { ca: undefined, cert: undefined },
    };
  }
  if (tls === null || typeof tls !== "object") {
    throw new TypeError(
      `Invalid address: tls must be true, false or a plain object of TLS options, got ${show(tls)}`,
    );
  }
  // A misspelt option (say `ca` for `caCerts`) would silently trust the
  // default roots instead of the caller's: refuse it.
  const options = checkKnownKeys(tls, TLS_OPTION_KEYS, "address (tls)");
  const serverName = options.serverName === undefined
    ? withoutZone(hostname)
    : normaliseHost(options.serverName, "tls.serverName", false);
  const verify = options.verify === undefined ? true : options.verify; // null is a mistake
  if (typeof verify !== "boolean") {
    throw new TypeError(`Invalid address: tls.verify must be a boolean, got ${show(verify)}`);
  }
  const cert = optionalPem(options.cert, "tls.cert");
  const key = optionalPem(options.key, "tls.key");
  if ((cert === undefined) !== (key === undefined)) {
    throw new TypeError("Invalid address: tls.cert and tls.key go together: give both or neither");
  }
  const caCerts = optionalStrings(options.caCerts, "tls.caCerts");
  return {
    options: Object.freeze({
      serverName,
      caCerts,
      verify,
      cert,
      key,
      alpnProtocols: alpnProtocols(options.alpnProtocols),
    }),
    digests: {
      ca: caCerts === undefined ? undefined : pemDigest(tls, "ca", caCerts),
      cert: cert === undefined ? undefined : pemDigest(tls, "cert", [cert, key!]),
    },
  };
}

/** The address without its zone id: what a certificate names, for `fe80::1%eth0`. */
function withoutZone(hostname: string): string {
  const at = hostname.indexOf("%");
  return at === -1 ? hostname : hostname.slice(0, at);
}

function defaultTls(hostname: string): ResolvedTlsOptions {
  return Object.freeze({
    serverName: hostname,
    caCerts: undefined,
    verify: true,
    cert: undefined,
    key: undefined,
    alpnProtocols: undefined,
  });
}

// Certificates and keys appear in the key as the SHA-256 of their text:
// equal texts give equal keys in every pool and process, different texts
// never the same (a collision is not known to be findable), and nothing is
// kept: no table of texts that would grow with every CA ever seen, hold
// private keys for the life of the process, or renumber a text it forgot.
// Hashing takes a few µs per 2 KB, so the digest is also remembered with
// the caller's TLS options object (and goes with it), for the next acquire
// that passes the same object.
const digestMemo = new WeakMap<
  object,
  {
    ca?: { texts: readonly string[]; digest: string };
    cert?: { texts: readonly string[]; digest: string };
  }
>();

function pemDigest(owner: object, slot: "ca" | "cert", texts: readonly string[]): string {
  let memo = digestMemo.get(owner);
  const last = memo?.[slot];
  if (
    last !== undefined && last.texts.length === texts.length &&
    last.texts.every((text, i) => text === texts[i])
  ) {
    return last.digest;
  }
  const digest = sha256Text(JSON.stringify(texts));
  if (memo === undefined) digestMemo.set(owner, memo = {});
  memo[slot] = { texts, digest };
  return digest;
}

/** ALPN lists up to this length appear in the key as they are; longer ones as a digest. */
const MAX_ALPN_IN_KEY = 64;

/** The options that differ from the defaults, as a query string. */
function tlsKeySuffix(tls: ResolvedTlsOptions, digests: TlsDigests, hostname: string): string {
  const parts: string[] = [];
  // Every part is exact: two different sets of options never read the same.
  if (tls.serverName !== withoutZone(hostname)) {
    parts.push(`sni=${encodeURIComponent(tls.serverName)}`);
  }
  if (digests.ca !== undefined) parts.push(`ca=${digests.ca}`);
  if (!tls.verify) parts.push("verify=off");
  if (digests.cert !== undefined) parts.push(`cert=${digests.cert}`);
  if (tls.alpnProtocols !== undefined) {
    const list = tls.alpnProtocols.map(encodeURIComponent).join(",");
    // A long list would make a long key (and long messages): its digest, under a name of its own.
    parts.push(
      list.length <= MAX_ALPN_IN_KEY
        ? `alpn=${list}`
        : `alpn-sha256=${sha256Text(JSON.stringify(tls.alpnProtocols))}`,
    );
  }
  return parts.length === 0 ? "" : `?${parts.join("&")}`;
}

function optionalPem(value: unknown, name: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "string" || value.trim() === "") {
    throw new TypeError(`Invalid address: ${name} must be a PEM string, got ${show(value)}`);
  }
  return value;
}

function alpnProtocols(value: unknown): readonly string[] | undefined {
  const protocols = optionalStrings(value, "tls.alpnProtocols");
  for (const name of protocols ?? []) {
    if (encoder.encode(name).length > 255) {
      throw new RangeError(
        `Invalid address: an ALPN protocol name is at most 255 bytes, got ${quote(name)}`,
      );
    }
  }
  return protocols;
}

function optionalStrings(value: unknown, name: string): readonly string[] | undefined {
  if (value === undefined) return undefined;
  const length = Array.isArray(value) ? value.length : 0;
  if (length === 0) {
    throw new TypeError(
      `Invalid address: ${name} must be a non-empty array of strings, got ${show(value)}`,
    );
  }
  // One read of the length and of each item, by index: the copy is what is
  // used. Spreading would run the array's own iterator (which may never end)
  // and copy every hole of a sparse array (2^32-1 of them: a fatal
  // out-of-memory) before the first one is checked.
  const items: string[] = [];
  for (let i = 0; i < length; i++) {
    const item: unknown = (value as unknown[])[i];
    if (typeof item !== "string" || item.trim() === "") {
      throw new TypeError(
        `Invalid address: ${name} must hold non-empty strings, got ${show(item)}`,
      );
    }
    items.push(item);
  }
  return Object.freeze(items);
}

function normalisePort(port: unknown): number {
  let value: number;
  if (typeof port === "number") {
    value = port;
  } else if (typeof port === "string" && /^[0-9]+$/.test(port)) {
    value = Number(port);
  } else if (typeof port === "string") {
    throw new TypeError(`Invalid address: port ${quote(port)} is not a decimal number`);
  } else {
    throw new TypeError(`Invalid address: port must be a number, got ${show(port)}`);
  }
  if (!Number.isInteger(value) || value < 1 || value > 65535) {
    throw new RangeError(
      `Invalid address: port must be an integer from 1 to 65535, got ${show(port)}`,
    );
  }
  return value;
}
