// Generators for the property suite (tests/property_test.ts), with fast-check:
// addresses and option values, well-formed and hostile, and what the README
// and JSDoc say the pool must answer to each (the oracles). Values whose
// printing could run hostile code (getters, proxies) are generated as plain
// descriptions and built by the test, so a counterexample always prints.
import fc from "fast-check";

/**
 * What hostile getters, proxies, hooks and exchange functions throw. The
 * pool may pass it on to the caller (it is the caller's own exception), but
 * never turn it into something else or throw it synchronously from a method
 * that returns a promise.
 */
export class Hostile extends Error {
  constructor(what: string) {
    super(`hostile ${what}`);
    this.name = "Hostile";
  }
}

/** What an input must get: accepted, or rejected with an error of this class. */
export type Expect = "ok" | "TypeError" | "RangeError" | "Hostile";

// ---------------------------------------------------------------------------
// Strings

/** A string of `min` to `max` characters, made by repeating a short piece: long input, cheaply. */
export function longString(
  min: number,
  max: number,
  piece = fc.string({ minLength: 1, maxLength: 3 }),
): fc.Arbitrary<string> {
  return fc.tuple(piece, fc.integer({ min, max })).map(([unit, length]) =>
    unit.repeat(Math.ceil(length / unit.length)).slice(0, length)
  );
}

const DOTTED_QUAD =
  /^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}$/;

/** Whether `text` is a plain dotted-quad IPv4 address (the README's rule, written again here). */
export function isDottedQuad(text: string): boolean {
  return DOTTED_QUAD.test(text);
}

// ---------------------------------------------------------------------------
// Addresses

/** Host names and IP literals the README says are accepted. */
export const validHostname: fc.Arbitrary<string> = fc.oneof(
  fc.domain(),
  fc.domain().map((name) => name.toUpperCase()),
  fc.ipV4(),
  fc.ipV6(),
  fc.ipV6().map((ip) => `[${ip}]`),
  fc.ipV6().map((ip) => ip.toUpperCase()),
  fc.constantFrom(
    "localhost",
    "LocalHost",
    "example.com.",
    "a_b.internal",
    "x",
    "xn--bcher-kva.example",
    "fe80::1%eth0",
    "FE80::A%lo",
    "[fe80::1%eth0]",
    "fe80::1%br-0.1",
    "::ffff:10.0.0.1",
    "0:0:0:0:0:0:0:1",
    "a".repeat(63) + ".example",
    `${"abcdefghi.".repeat(25)}abc`, // 253 characters
    `${"abcdefghi.".repeat(25)}abc.`, // 253, and a final dot
  ),
);

/** Host names and IP literals that are malformed or too long, and values that are no strings. */
export const hostileHostname: fc.Arbitrary<unknown> = fc.oneof(
  longString(254, 300_000, fc.constantFrom("a", "ab.", "x-", "9.")),
  longString(64, 200, fc.constant("a")).map((label) => `${label}.example`),
  fc.string({ unit: "binary", minLength: 1, maxLength: 12 }),
  fc.string({ unit: "grapheme", minLength: 1, maxLength: 12 }),
  fc.ipV4Extended(),
  fc.ipV6().map((ip) => `${ip}%eth0`),
  fc.ipV6().chain((ip) =>
    fc.string({ maxLength: 20 }).map((zone) => `fe80::${ip.length % 9}%${zone}`)
  ),
  fc.constantFrom(
    ":::",
    "1:2",
    "127.0.0.1:6379",
    "::1%lo",
    "::1%",
    "fe80::1%",
    "fe80::1%0",
    "fe80::1%25eth0",
    "fe80::1%eth0%eth1",
    `fe80::1%${"e".repeat(16)}`,
    "[::1",
    "::1]",
    "[[::1]]",
    "[]",
    "[127.0.0.1]",
    "[localhost]",
    "1::2::3",
    "1:2:3:4:5:6:7:8:9",
    "::ffff:1.2.3.256",
    "::ffff:01.2.3.4",
    "a..b",
    ".a",
    "..",
    ".",
    "",
    " ",
    "a b",
    "a\0b",
    "a/b",
    "ex%61mple.com",
    "bücher.example",
    "例え.テスト",
    "\u200b",
    "-",
    "0",
    "127.1",
    "0x7f000001",
    "256.0.0.1",
    "1.2.3.4.5",
    "01.2.3.4",
    "١٢٧.٠.٠.١",
    "localhost\n",
    `${"abcdefghi.".repeat(25)}abcd`, // 254 characters
  ),
  fc.constantFrom(null, undefined, 0, 1, true, [], ["localhost"], 10n),
  fc.constant(null).map(() => ({})),
  fc.constant(null).map(() => Symbol("hostname")),
  fc.constant(null).map(() => new String("localhost")),
);

export const validPort: fc.Arbitrary<number | string> = fc.oneof(
  fc.integer({ min: 1, max: 65535 }),
  fc.integer({ min: 1, max: 65535 }).map(String),
  fc.constantFrom(1, 65535, "080", "00001"),
);

export const hostilePort: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(
    0,
    -1,
    65536,
    1.5,
    NaN,
    Infinity,
    -Infinity,
    -0,
    2 ** 31,
    1e21,
    Number.MAX_SAFE_INTEGER + 2,
    "",
    " 80",
    "80 ",
    "+80",
    "0x50",
    "1e3",
    "٨٠",
    "65536",
    "99999999999999999999",
    "0",
    null,
    undefined,
    true,
    80n,
  ),
  fc.double(),
  fc.integer(),
  fc.string({ maxLength: 6 }),
  longString(100, 100_000, fc.constantFrom("8", "x", "0")),
  fc.constant(null).map(() => [80]),
  fc.constant(null).map(() => new Number(80)),
  fc.constant(null).map(() => ({ valueOf: () => 80 })),
);

export const validPath: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom("/tmp/app.sock", "relative.sock", "/run/ü.sock", "x".repeat(107), "é".repeat(53)),
  fc.string({ minLength: 1, maxLength: 40 }).filter((path) => !path.includes("\0")),
);

export const hostilePath: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(
    "",
    "\0",
    "/tmp/a\0b",
    "x".repeat(108),
    "é".repeat(54),
    "😀".repeat(27),
    null,
    1,
    true,
  ),
  longString(108, 300_000),
  fc.constant(null).map(() => ["/tmp/a.sock"]),
  fc.constant(null).map(() => new URL("file:///tmp/a.sock")),
);

const pem = fc.constantFrom(
  "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
  "not a pem, but a string",
);

/** TLS options objects the README describes. */
export const validTlsOptions: fc.Arbitrary<Record<string, unknown>> = fc.oneof(
  fc.record({
    serverName: fc.oneof(fc.domain(), fc.ipV4(), fc.ipV6()),
    caCerts: fc.array(pem, { minLength: 1, maxLength: 2 }),
    verify: fc.boolean(),
    alpnProtocols: fc.array(fc.constantFrom("h2", "http/1.1", "x".repeat(255)), {
      minLength: 1,
      maxLength: 3,
    }),
  }, { requiredKeys: [] }),
  fc.record({ cert: pem, key: pem }),
);

export const validTls: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(true, false, undefined),
  validTlsOptions,
);

/**
 * Arrays a careless or hostile caller may pass: sparse with 2^32-1 holes, or
 * with an iterator of their own that never ends. They print as a short
 * description (fast-check would walk every hole).
 */
export const ODD_ARRAY: unique symbol = Symbol("odd array");

export function oddArray(kind: "sparse" | "endless", item: unknown): unknown[] {
  const array: unknown[] = kind === "sparse" ? [] : [item];
  if (kind === "sparse") array.length = 2 ** 32 - 1;
  else {
    Object.defineProperty(array, Symbol.iterator, {
      value: function* () {
        for (;;) yield item;
      },
    });
  }
  Object.defineProperty(array, fc.toStringMethod, { value: () => `${kind} array` });
  Object.defineProperty(array, ODD_ARRAY, { value: kind });
  return array;
}

export const hostileTls: fc.Arbitrary<unknown> = fc.oneof(
  fc.constant(null).map(() => ({ verify: null })),
  fc.constant(null).map(() => ({ serverName: null })),
  fc.constant(null).map(() => ({ cert: null, key: null })),
  fc.constant(null).map(() => ({ caCerts: oddArray("sparse", "pem") })),
  fc.constant(null).map(() => ({ alpnProtocols: oddArray("sparse", "h2") })),
  fc.constant(null).map(() => ({ caCerts: oddArray("endless", "pem") })),
  fc.constantFrom(null, "yes", 1, 0, "true"),
  fc.constant(null).map(() => new Map()),
  fc.constant(null).map(() => []),
  fc.constant(null).map(() => ({ TLS: true })),
  fc.constant(null).map(() => ({ ca: "pem" })),
  fc.constant(null).map(() => ({ rejectUnauthorized: false })),
  fc.constant(null).map(() => ({ verify: "no" })),
  fc.constant(null).map(() => ({ cert: "pem" })),
  fc.constant(null).map(() => ({ caCerts: [] })),
  fc.constant(null).map(() => ({ caCerts: ["  "] })),
  fc.constant(null).map(() => ({ caCerts: "pem" })),
  fc.constant(null).map(() => ({ alpnProtocols: ["x".repeat(256)] })),
  fc.constant(null).map(() => ({ alpnProtocols: [""] })),
  fc.constant(null).map(() => Object.create({ verify: false })),
  hostileHostname.map((serverName) => ({ serverName })),
);

/** Keys no address has: misspellings, other libraries' names, junk. */
export const unknownKey: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    "TLS",
    "ssl",
    "secure",
    "host",
    "Hostname",
    "hostName",
    "PORT",
    "socketPath",
    "unix",
    "family",
    "localAddress",
    "constructor",
    "toString",
    "hasOwnProperty",
    "__proto__",
    "",
  ),
  fc.string({ minLength: 1, maxLength: 80 }),
  longString(65, 100_000),
).filter((key) => !["hostname", "port", "path", "tls"].includes(key));

/** A well-formed address, as the README describes them. */
export const validAddress: fc.Arbitrary<Record<string, unknown>> = fc.oneof(
  fc.record({ hostname: validHostname, port: validPort }),
  fc.record({ hostname: validHostname, port: validPort, tls: validTls }),
  fc.record({ path: validPath }),
);

/** How an address object is built around its fields: shapes the pool must refuse or see through. */
export type AddressShape =
  | "plain"
  | "null-prototype"
  | "inherited"
  | "class-instance"
  | "frozen"
  | "non-enumerable"
  | "symbol-key"
  | "proxy"
  | "throwing-getter"
  | "proxy-throwing-keys";

export interface AddressDescription {
  shape: AddressShape;
  fields: Record<string, unknown>;
  /** An extra own key, if any. */
  extra?: { key: string; value: unknown };
}

/** Any address: well-formed or not, in any shape, maybe with a key it cannot have. */
export const anyAddress: fc.Arbitrary<AddressDescription | { shape: "value"; value: unknown }> = fc
  .oneof(
    {
      weight: 6,
      arbitrary: fc.record({
        shape: fc.constantFrom<AddressShape>(
          "plain",
          "plain",
          "plain",
          "null-prototype",
          "inherited",
          "class-instance",
          "frozen",
          "non-enumerable",
          "symbol-key",
          "proxy",
          "throwing-getter",
          "proxy-throwing-keys",
        ),
        fields: fc.oneof(
          validAddress,
          fc.record({
            hostname: fc.oneof(validHostname, hostileHostname),
            port: fc.oneof(validPort, hostilePort),
            tls: fc.oneof(validTls, hostileTls),
          }, { requiredKeys: [] }),
          fc.record({
            path: fc.oneof(validPath, hostilePath),
            hostname: fc.oneof(validHostname, hostileHostname),
            tls: fc.oneof(validTls, hostileTls),
          }, { requiredKeys: ["path"] }),
        ),
        extra: fc.option(
          fc.record({ key: unknownKey, value: fc.constantFrom(true, 1, "x", null) }),
          {
            nil: undefined,
            freq: 4,
          },
        ),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        shape: fc.constant("value" as const),
        value: fc.oneof(
          fc.constantFrom(null, undefined, "127.0.0.1:80", "unix:/tmp/a.sock", 80, true),
          fc.constant(null).map(() => []),
          fc.constant(null).map(() =>
            new Map<string, unknown>([["hostname", "localhost"], ["port", 1]])
          ),
          fc.constant(null).map(() => new URL("tcp://localhost:80")),
          fc.constant(null).map(() => () => ({ hostname: "localhost", port: 1 })),
        ),
      }),
    },
  );

class AddressLike {
  constructor(fields: Record<string, unknown>) {
    Object.assign(this, fields);
  }
}

/** Builds the object an address description stands for (getters and proxies throw {@linkcode Hostile}). */
export function buildAddress(
  description: AddressDescription | { shape: "value"; value: unknown },
): unknown {
  if (description.shape === "value") return description.value;
  const fields: Record<string, unknown> = { ...description.fields };
  const own = (target: object): object => {
    if (description.extra !== undefined) {
      Object.defineProperty(target, description.extra.key, {
        value: description.extra.value,
        enumerable: true,
        configurable: true,
        writable: true,
      });
    }
    return target;
  };
  switch (description.shape) {
    case "plain":
      return own(Object.assign({}, fields));
    case "null-prototype":
      return own(Object.assign(Object.create(null), fields));
    case "inherited":
      return own(Object.create(Object.assign({}, fields)));
    case "class-instance":
      return own(new AddressLike(fields));
    case "frozen":
      return Object.freeze(own(Object.assign({}, fields)));
    case "non-enumerable": {
      const target = own({});
      for (const [key, value] of Object.entries(fields)) {
        Object.defineProperty(target, key, { value, enumerable: false, configurable: true });
      }
      return target;
    }
    case "symbol-key":
      return own(Object.assign({ [Symbol("hostname")]: "evil.example" }, fields));
    case "proxy":
      return new Proxy(own(Object.assign({}, fields)), {});
    case "throwing-getter": {
      const target = own(Object.assign({}, fields));
      const key = Object.keys(fields)[0] ?? "hostname";
      Object.defineProperty(target, key, {
        get() {
          throw new Hostile(`getter of ${key}`);
        },
        enumerable: true,
        configurable: true,
      });
      return target;
    }
    case "proxy-throwing-keys":
      return new Proxy(own(Object.assign({}, fields)), {
        ownKeys() {
          throw new Hostile("ownKeys trap");
        },
      });
  }
}

// ---------------------------------------------------------------------------
// Option values

/** Values of no option's type, or of a near miss (a boxed number, a numeric string). */
export const notANumber: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom("1", "10", "", null, true, false, 5n),
  fc.constant(null).map(() => ({})),
  fc.constant(null).map(() => [1]),
  fc.constant(null).map(() => new Number(5)),
  fc.constant(null).map(() => Symbol("n")),
);

/** Millisecond values: ordinary, past 2^31-1, Infinity, and out of range. */
export const duration: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(
    1,
    5,
    20,
    1000,
    60_000,
    2 ** 31 - 1,
    2 ** 31,
    1e10,
    Number.MAX_VALUE,
    Infinity,
    0.5,
    5e-324,
    0,
    -0,
    -1,
    NaN,
    -Infinity,
  ),
  fc.double(),
  notANumber,
);

/** Count values: ordinary, huge, Infinity, fractional, negative. */
export const count: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(
    0,
    1,
    2,
    3,
    1000,
    2 ** 31,
    2 ** 53,
    Infinity,
    -1,
    1.5,
    NaN,
    -Infinity,
    Number.MAX_VALUE,
    -0,
  ),
  fc.integer({ min: -5, max: 5 }),
  notANumber,
);

/** What the README says of a value of each kind of option. */
export type OptionKind =
  | "count>=1"
  | "count>=0"
  | "ms"
  | "ms>=0"
  | "keepAlive"
  | "order"
  | "hook"
  | "onEvent";

export function expectOption(kind: OptionKind, value: unknown): Expect {
  if (value === undefined) return "ok"; // absent
  switch (kind) {
    case "count>=1":
    case "count>=0": {
      if (typeof value !== "number") return "TypeError";
      const min = kind === "count>=1" ? 1 : 0;
      return value === Infinity || (Number.isInteger(value) && value >= min) ? "ok" : "RangeError";
    }
    case "ms":
      if (typeof value !== "number") return "TypeError";
      return value > 0 ? "ok" : "RangeError"; // NaN > 0 is false
    case "ms>=0":
      if (typeof value !== "number") return "TypeError";
      return value >= 0 ? "ok" : "RangeError";
    case "keepAlive":
      if (value === false) return "ok";
      if (typeof value !== "number") return "TypeError";
      return value >= 1000 ? "ok" : "RangeError";
    case "order":
      return value === "lifo" || value === "fifo" ? "ok" : "TypeError";
    case "hook":
    case "onEvent":
      return typeof value === "function" ? "ok" : "TypeError";
  }
}

/** The options each address may set for itself, and the pool for all. */
export const ADDRESS_OPTIONS: Record<string, OptionKind> = {
  maxPerHost: "count>=1",
  maxIdlePerHost: "count>=0",
  minIdlePerHost: "count>=0",
  idleTimeout: "ms",
  maxLifetime: "ms",
  connectTimeout: "ms",
  maxWaiting: "count>=0",
  setup: "hook",
  validate: "hook",
  validateAfter: "ms>=0",
  keepAlive: "keepAlive",
  maxUses: "count>=1",
};

/** The pool-wide options. */
export const POOL_OPTIONS: Record<string, OptionKind> = {
  ...ADDRESS_OPTIONS,
  maxTotal: "count>=1",
  maxIdle: "count>=0",
  acquireTimeout: "ms",
  order: "order",
  leakTimeout: "ms",
  onEvent: "onEvent",
};

/** A value for an option of `kind`: mostly valid when `valid`, anything otherwise. */
export function optionValue(kind: OptionKind, valid: boolean): fc.Arbitrary<unknown> {
  const good = {
    "count>=1": fc.constantFrom(1, 2, 3, 8, 2 ** 31, Infinity),
    "count>=0": fc.constantFrom(0, 1, 2, 3, 2 ** 31, Infinity),
    "ms": fc.constantFrom(
      1,
      5,
      20,
      1000,
      60_000,
      2 ** 31 - 1,
      2 ** 31,
      1e10,
      Number.MAX_VALUE,
      Infinity,
      0.5,
      5e-324,
    ),
    "ms>=0": fc.constantFrom(0, -0, 1, 1000, 2 ** 31, 1e10, Infinity),
    "keepAlive": fc.constantFrom(false, 1000, 30_000, 2 ** 31, 1e10, Infinity),
    "order": fc.constantFrom("lifo", "fifo"),
    "hook": fc.constantFrom("async-ok", "sync-ok"),
    "onEvent": fc.constant("record"),
  }[kind];
  if (valid) return good;
  const bad = {
    "count>=1": count,
    "count>=0": count,
    "ms": duration,
    "ms>=0": duration,
    "keepAlive": fc.oneof(duration, fc.constantFrom(true, 999, 0)),
    "order": fc.constantFrom("LIFO", "random", "", 0, null, true),
    "hook": fc.constantFrom(null, 0, "function", true),
    "onEvent": fc.constantFrom(null, 0, "log", true),
  }[kind];
  return fc.oneof({ weight: 1, arbitrary: good }, { weight: 2, arbitrary: bad });
}
