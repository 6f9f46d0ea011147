// The names each options object and address may have, and the check that
// refuses any other. A misspelt key (`TLS` for `tls`, `maxPerhost`) would
// otherwise be ignored and the pool would quietly do something else:
// connect in plaintext, or without a limit.
//
// Adding an option: declare it on its interface, then add one line to its
// list below (the compiler insists: each list is a Record over the
// interface's keys, so a missing or extra name does not compile).
import type { TcpAddress, TlsOptions, UnixAddress } from "./address.ts";
import type { AddressPolicyOptions, PerAddressOptions } from "./options.ts";
import type { ExchangeOptions } from "./exchange.ts";
import type { ReadOptions } from "./connection.ts";
import type { AcquireOptions, CloseOptions, ConnectionPoolOptions, RetainOptions } from "./pool.ts";
import { quote, show } from "./_show.ts";

/** The names an object may have, with hints for names that belong elsewhere. */
export interface KnownKeys<T> {
  readonly names: ReadonlySet<keyof T & string>;
  /** Names that are options of another object: the hint says which. */
  readonly elsewhere: ReadonlyMap<string, string>;
}

/** The known keys of `T`, from a record naming every one of them. */
export function knownKeys<T>(
  names: Record<keyof T & string, true>,
  elsewhere: ReadonlyMap<string, string> = new Map(),
): KnownKeys<T> {
  return { names: new Set(Object.keys(names) as Array<keyof T & string>), elsewhere };
}

export const ADDRESS_KEYS: KnownKeys<TcpAddress & UnixAddress> = knownKeys<
  TcpAddress & UnixAddress
>({
  hostname: true,
  port: true,
  tls: true,
  path: true,
});

export const TLS_OPTION_KEYS: KnownKeys<TlsOptions> = knownKeys<TlsOptions>({
  serverName: true,
  caCerts: true,
  verify: true,
  cert: true,
  key: true,
  alpnProtocols: true,
});

/** Options that each address may set for itself (`perAddress`), and the pool for all. */
const ADDRESS_POLICY_KEYS: Record<keyof AddressPolicyOptions, true> = {
  maxPerHost: true,
  maxIdlePerHost: true,
  minIdlePerHost: true,
  idleTimeout: true,
  maxLifetime: true,
  connectTimeout: true,
  maxWaiting: true,
  setup: true,
  validate: true,
  validateAfter: true,
  keepAlive: true,
  maxUses: true,
};

export const POOL_OPTION_KEYS: KnownKeys<ConnectionPoolOptions> = knownKeys<
  ConnectionPoolOptions
>({
  ...ADDRESS_POLICY_KEYS,
  maxTotal: true,
  maxIdle: true,
  acquireTimeout: true,
  order: true,
  leakTimeout: true,
  perAddress: true,
  transport: true,
  onEvent: true,
});

export const PER_ADDRESS_KEYS: KnownKeys<PerAddressOptions> = knownKeys<PerAddressOptions>(
  { ...ADDRESS_POLICY_KEYS, address: true },
  new Map(
    [...POOL_OPTION_KEYS.names]
      .filter((name) => !(name in ADDRESS_POLICY_KEYS))
      .map((name) => [name, "it is a pool-wide option, not one per address"]),
  ),
);

export const ACQUIRE_OPTION_KEYS: KnownKeys<AcquireOptions> = knownKeys<AcquireOptions>({
  signal: true,
});

export const READ_OPTION_KEYS: KnownKeys<ReadOptions> = knownKeys<ReadOptions>({
  signal: true,
});

export const CLOSE_OPTION_KEYS: KnownKeys<CloseOptions> = knownKeys<CloseOptions>({
  timeout: true,
});

export const RETAIN_OPTION_KEYS: KnownKeys<RetainOptions> = knownKeys<RetainOptions>({
  idleTimeout: true,
});

export const EXCHANGE_OPTION_KEYS: KnownKeys<ExchangeOptions> = knownKeys<ExchangeOptions>({
  idempotent: true,
  signal: true,
  idleTimeout: true,
});

// Names other pools and socket APIs use for the same thing. A hint is only
// given where its target is a known key of the object at hand.
const SYNONYMS: ReadonlyMap<string, string> = new Map([
  ["ssl", "tls"],
  ["secure", "tls"],
  ["host", "hostname"],
  ["socketpath", "path"],
  ["unix", "path"],
  ["max", "maxPerHost"],
  ["maxsockets", "maxPerHost"],
  ["maxconnections", "maxPerHost"],
  ["maxconnsperhost", "maxPerHost"],
  ["connections", "maxPerHost"],
  ["maxtotalsockets", "maxTotal"],
  ["maxfreesockets", "maxIdlePerHost"],
  ["maxidleconnsperhost", "maxIdlePerHost"],
  ["maxidleconns", "maxIdle"],
  ["min", "minIdlePerHost"],
  ["minimumidle", "minIdlePerHost"],
  ["idletimeoutmillis", "idleTimeout"],
  ["acquiretimeoutmillis", "acquireTimeout"],
  ["maxwaitingclients", "maxWaiting"],
  ["leakdetectionthreshold", "leakTimeout"],
  ["ca", "caCerts"],
  ["rejectunauthorized", "verify"],
]);

const EMPTY = Object.freeze(Object.create(null));

/** Unknown names longer than this get no "did you mean": the search is quadratic. */
const MAX_SUGGESTED_LENGTH = 64;

/**
 * Checks that `value` is a plain object (`{...}` or `Object.create(null)`)
 * whose own properties all have known names, then reads each of them once,
 * into a snapshot with no prototype. Validate the snapshot, never `value`:
 * inherited properties do not count (so a polluted `Object.prototype` or an
 * options object's prototype cannot switch anything on or off), and a
 * getter or proxy cannot answer one thing to the check and another later.
 * Symbol-keyed properties are not options and are ignored.
 *
 * @param what Names the object in messages: `"pool options"`, `"address"`.
 * @throws {TypeError} If `value` is not a plain object, or has an own
 * property that is not known; the message names it and, where one is
 * close, the name probably meant.
 */
export function checkKnownKeys<T>(
  value: unknown,
  known: KnownKeys<T>,
  what: string,
): { [K in keyof T]?: unknown } {
  if (!isPlainObject(value)) {
    throw new TypeError(`Invalid ${what}: expected a plain object, got ${show(value)}`);
  }
  const names = Object.getOwnPropertyNames(value);
  // The common `acquire(address)`, with its default `{}`: nothing to copy.
  if (names.length === 0) return EMPTY;
  for (const name of names) {
    if (!known.names.has(name as keyof T & string)) throw unknownKey(name, known, what);
  }
  const snapshot = Object.create(null) as Record<string, unknown>;
  for (const name of names) snapshot[name] = (value as Record<string, unknown>)[name];
  return snapshot as { [K in keyof T]?: unknown };
}

/**
 * Whether `value` is an object literal's kind of object: its prototype is
 * `Object.prototype` (of any realm) or `null`. Arrays, maps, class instances
 * and objects made with another object as prototype are not.
 */
export function isPlainObject(value: unknown): value is object {
  if (value === null || typeof value !== "object") return false;
  const prototype = Object.getPrototypeOf(value);
  if (prototype === null || prototype === Object.prototype) return true;
  // Another realm's Object.prototype (node:vm, an iframe): the root of its chain.
  return Object.getPrototypeOf(prototype) === null &&
    Object.hasOwn(prototype, "hasOwnProperty") && Object.hasOwn(prototype, "isPrototypeOf") &&
    !Array.isArray(value);
}

function unknownKey<T>(name: string, known: KnownKeys<T>, what: string): TypeError {
  const elsewhere = known.elsewhere.get(name);
  if (elsewhere !== undefined) {
    return new TypeError(`Invalid ${what}: unknown option ${quote(name)}: ${elsewhere}`);
  }
  const likely = suggestion(name, [...known.names]);
  return new TypeError(
    `Invalid ${what}: unknown option ${quote(name)}` +
      (likely === undefined
        ? ` (known: ${[...known.names].join(", ")})`
        : `; did you mean "${likely}"?`),
  );
}

/** The known name `name` was probably meant to be, if one is close enough. */
export function suggestion(name: string, names: readonly string[]): string | undefined {
  if (name.length > MAX_SUGGESTED_LENGTH) return undefined;
  const lower = name.toLowerCase();
  const sameButCase = names.find((known) => known.toLowerCase() === lower);
  if (sameButCase !== undefined) return sameButCase;
  const synonym = SYNONYMS.get(lower);
  if (synonym !== undefined && names.includes(synonym)) return synonym;
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const known of names) {
    const distance = editDistance(lower, known.toLowerCase());
    // One slip in a short name, two in a longer one.
    if (distance <= (known.length < 6 ? 1 : 2) && distance < bestDistance) {
      best = known;
      bestDistance = distance;
    }
  }
  return best;
}

/**
 * Edits (insert, delete, replace, swap two neighbours) that turn `a` into
 * `b`: the optimal string alignment distance.
 */
function editDistance(a: string, b: string): number {
  const rows: number[][] = [];
  for (let i = 0; i <= a.length; i++) {
    const row: number[] = [i];
    for (let j = 1; j <= b.length; j++) {
      if (i === 0) {
        row.push(j);
        continue;
      }
      const above = rows[i - 1]!;
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let distance = Math.min(above[j]! + 1, row[j - 1]! + 1, above[j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        distance = Math.min(distance, rows[i - 2]![j - 2]! + 1);
      }
      row.push(distance);
    }
    rows.push(row);
  }
  return rows[a.length]![b.length]!;
}
