// Hostile and careless input (issue 9): durations past 2^31-1 ms, unknown
// and inherited keys, getters that change their answer, malformed host
// names and IPv6 literals, zone ids, non-plain objects, and error messages
// that must stay short whatever the input. On the in-memory transport: the
// checks run before any runtime code, so every runtime must agree.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import { ConnectionPool, PoolError, resolveAddress } from "../mod.ts";
import { MemoryTransport } from "../src/transports/memory.ts";
import { longTimeout, MAX_TIMER_DELAY } from "../src/_timers.ts";
import { checkKnownKeys, POOL_OPTION_KEYS, suggestion } from "../src/_known_keys.ts";
import { delay } from "./_async.ts";

const A = { hostname: "input.test", port: 7000 };
/** Longest message any rejection below may have. */
const MAX_MESSAGE = 400;

function setup(options: Record<string, unknown> = {}, accept?: () => Promise<void>) {
  const transport = new MemoryTransport();
  transport.listen(A, (peer) => peer.echo(), accept === undefined ? {} : { accept });
  const pool = new ConnectionPool({ transport, ...options });
  return { transport, pool };
}

function catchError(run: () => unknown): Error {
  try {
    run();
  } catch (error) {
    assert.ok(error instanceof Error, `threw a non-Error: ${error}`);
    return error;
  }
  assert.fail("expected it to throw");
}

/**
 * Runs `body` while counting the timers armed with a long delay (over 10^9 ms)
 * and any delay past what runtimes honour, and the process warnings
 * (TimeoutOverflowWarning on Node and Bun).
 */
async function watchTimers(body: () => Promise<void>) {
  const globals = globalThis as unknown as Record<string, (...args: unknown[]) => unknown>;
  const originals = { setTimeout: globals.setTimeout!, setInterval: globals.setInterval! };
  const seen = { long: 0, overflowing: 0, warnings: [] as string[] };
  const onWarning = (warning: Error): void => {
    seen.warnings.push(`${warning.name}: ${warning.message}`);
  };
  process.on("warning", onWarning);
  for (const name of ["setTimeout", "setInterval"] as const) {
    globals[name] = (callback: unknown, ms?: unknown, ...rest: unknown[]) => {
      if (typeof ms === "number" && ms > 1e9) seen.long++;
      if (typeof ms === "number" && ms > MAX_TIMER_DELAY) seen.overflowing++;
      return originals[name](callback, ms, ...rest);
    };
  }
  try {
    await body();
  } finally {
    globals.setTimeout = originals.setTimeout;
    globals.setInterval = originals.setInterval;
    process.off("warning", onWarning);
  }
  await delay(5); // warnings are emitted on a later tick
  return seen;
}

describe("durations past 2^31-1 ms are honoured, up to Infinity", () => {
  const LONG = [2 ** 31, 1e10, Number.MAX_VALUE];

  function assertQuiet(seen: Awaited<ReturnType<typeof watchTimers>>, what: string): void {
    assert.equal(seen.overflowing, 0, `${what}: a delay past 2^31-1 ms reached the runtime`);
    assert.ok(seen.long <= 2, `${what}: ${seen.long} long timers armed: a re-arming storm`);
    assert.deepEqual(seen.warnings, [], `${what}: warnings`);
  }

  for (const ms of LONG) {
    test(`idleTimeout and maxLifetime of ${ms}: the idle connection stays, no storm`, async () => {
      for (const option of ["idleTimeout", "maxLifetime"]) {
        const { pool } = setup({ [option]: ms });
        const seen = await watchTimers(async () => {
          const { connection } = await pool.acquire(A);
          assert.equal(pool.retain(connection), true);
          await delay(60);
        });
        assertQuiet(seen, option);
        const stats = pool.stats();
        assert.equal(stats.idle, 1, `${option}: the idle connection was closed`);
        assert.equal(stats.totals.expired, 0, option);
        await pool.close();
      }
    });

    test(`acquireTimeout of ${ms}: a waiter keeps waiting, no storm`, async () => {
      const { pool } = setup({ acquireTimeout: ms, maxPerHost: 1 });
      const first = await pool.acquire(A);
      let outcome: unknown = "waiting";
      const seen = await watchTimers(async () => {
        const second = pool.acquire(A).then((acquired) => acquired, (error) => error);
        second.then((value) => outcome = value);
        await delay(60);
        assert.equal(outcome, "waiting", `the waiter gave up: ${outcome}`);
        pool.retain(first.connection);
        const served = await second;
        assert.ok(!(served instanceof Error), `${served}`);
        pool.retain(served.connection);
      });
      assertQuiet(seen, "acquireTimeout");
      assert.equal(pool.stats().totals.timedOut, 0);
      await pool.close();
    });

    test(`leakTimeout of ${ms}: no report, no storm`, async () => {
      const events: Array<{ type: string }> = [];
      const { pool } = setup({
        leakTimeout: ms,
        onEvent: (event: { type: string }) => events.push(event),
      });
      const seen = await watchTimers(async () => {
        const { connection } = await pool.acquire(A);
        await delay(60);
        pool.retain(connection);
      });
      assertQuiet(seen, "leakTimeout");
      assert.deepEqual(events.filter((event) => event.type === "leak"), []);
      await pool.close();
    });

    test(`connectTimeout of ${ms}: a connect that takes 60 ms succeeds`, async () => {
      const { pool } = setup({ connectTimeout: ms }, () => delay(60));
      const seen = await watchTimers(async () => {
        const result = await pool.acquire(A).catch((error) => error);
        assert.ok(!(result instanceof Error), `the connect failed: ${result}`);
        pool.retain(result.connection);
      });
      assertQuiet(seen, "connectTimeout");
      await pool.close();
    });
  }

  for (const timeout of [2 ** 31, 1e10, Infinity]) {
    test(`close({ timeout: ${timeout} }) waits for a borrowed connection`, async () => {
      const { pool, transport } = setup();
      const { connection } = await pool.acquire(A);
      let closed = false;
      const seen = await watchTimers(async () => {
        const closing = pool.close({ timeout }).then(() => closed = true);
        await delay(60);
        assert.equal(closed, false, "close() gave up waiting at once");
        assert.equal(transport.openConnections, 1, "the borrowed connection was closed at once");
        await connection.write(new TextEncoder().encode("still here"));
        assert.equal(new TextDecoder().decode((await connection.read())!), "still here");
        assert.equal(pool.retain(connection), false); // closed: the pool is closed
        await closing;
      });
      assert.equal(seen.overflowing, 0);
      assert.deepEqual(seen.warnings, []);
      assert.equal(transport.openConnections, 0);
    });
  }

  test("longTimeout steps through a long delay and fires once, at the end", () => {
    const globals = globalThis as unknown as Record<string, unknown>;
    const original = globals.setInterval;
    const armed: Array<{ tick: () => void; ms: number }> = [];
    globals.setInterval = (tick: () => void, ms: number) => {
      armed.push({ tick, ms });
      return (original as typeof setInterval)(() => {}, MAX_TIMER_DELAY);
    };
    let fired = 0;
    let handle: ReturnType<typeof setTimeout>;
    try {
      handle = longTimeout(() => fired++, 3 * MAX_TIMER_DELAY + 5);
    } finally {
      globals.setInterval = original;
    }
    clearTimeout(handle);
    assert.equal(armed.length, 1);
    assert.ok(armed[0]!.ms <= MAX_TIMER_DELAY && armed[0]!.ms * 4 >= 3 * MAX_TIMER_DELAY + 5);
    for (let step = 1; step <= 3; step++) {
      armed[0]!.tick();
      assert.equal(fired, 0, `fired after ${step} of 4 steps`);
    }
    armed[0]!.tick();
    assert.equal(fired, 1);
  });
});

describe("unknown keys are a TypeError that names them", () => {
  const cases: Array<[string, () => unknown, RegExp]> = [
    ["address TLS", () => resolveAddress({ ...A, TLS: true } as never), /"TLS".*"tls"/],
    ["address ssl", () => resolveAddress({ ...A, ssl: {} } as never), /"ssl".*"tls"/],
    ["address host", () => resolveAddress({ host: "a.test", port: 1 } as never), /"hostname"/],
    ["tls ca", () => resolveAddress({ ...A, tls: { ca: ["pem"] } } as never), /"ca".*"caCerts"/],
    [
      "tls rejectUnauthorized",
      () => resolveAddress({ ...A, tls: { rejectUnauthorized: false } } as never),
      /"rejectUnauthorized".*"verify"/,
    ],
    [
      "tls servername",
      () => resolveAddress({ ...A, tls: { servername: "x.test" } } as never),
      /"servername".*"serverName"/,
    ],
    ["pool max", () => new ConnectionPool({ max: 4 } as never), /"max".*"maxPerHost"/],
    ["pool maxSockets", () => new ConnectionPool({ maxSockets: 4 } as never), /"maxPerHost"/],
    ["pool maxPerhost", () => new ConnectionPool({ maxPerhost: 4 } as never), /"maxPerHost"/],
    ["pool idleTimout", () => new ConnectionPool({ idleTimout: 4 } as never), /"idleTimeout"/],
    [
      "perAddress maxConnections",
      () => new ConnectionPool({ perAddress: [{ address: A, maxConnections: 2 }] } as never),
      /perAddress\[0\].*"maxConnections".*"maxPerHost"/,
    ],
    [
      "perAddress maxTotal",
      () => new ConnectionPool({ perAddress: [{ address: A, maxTotal: 2 }] } as never),
      /perAddress\[0\].*"maxTotal".*pool-wide/,
    ],
    [
      "perAddress address with a typo",
      () => new ConnectionPool({ perAddress: [{ address: { ...A, tsl: true } }] } as never),
      /"tsl".*"tls"/,
    ],
  ];
  for (const [name, run, shows] of cases) {
    test(name, () => {
      const error = catchError(run);
      assert.ok(error instanceof TypeError, `${name}: got ${error}`);
      assert.match(error.message, shows);
    });
  }

  test("acquire, retain, exchange and close options", async () => {
    const { pool } = setup();
    await assert.rejects(pool.acquire(A, { timeout: 5 } as never), (error: Error) => {
      assert.ok(error instanceof TypeError);
      assert.match(error.message, /acquire options.*"timeout"/);
      return true;
    });
    await assert.rejects(pool.acquire(A, { signall: undefined } as never), /"signal"/);
    await assert.rejects(pool.close({ timout: 5 } as never), (error: Error) => {
      assert.ok(error instanceof TypeError);
      assert.match(error.message, /close options.*"timout".*"timeout"/);
      return true;
    });
    const { connection } = await pool.acquire(A);
    assert.throws(() => pool.retain(connection, { idleTimout: 5 } as never), /"idleTimeout"/);
    assert.equal(pool.retain(connection, { idleTimeout: 1000 }), true);
    await assert.rejects(
      pool.exchange(A, () => 1, { idempotant: true } as never),
      /exchange options.*"idempotant".*"idempotent"/,
    );
    assert.equal(await pool.exchange(A, () => 1, { idempotent: true, idleTimeout: 1000 }), 1);
    assert.equal(pool.closed, false);
    await pool.close();
  });

  test("a connection is never opened for an address with an unknown key", async () => {
    const { pool, transport } = setup();
    for (const address of [{ ...A, TLS: true }, { ...A, ssl: { verify: true } }]) {
      await assert.rejects(pool.acquire(address as never), TypeError);
      await assert.rejects(pool.add(address as never), TypeError);
      await assert.rejects(pool.warm(address as never, 1), TypeError);
    }
    assert.equal(transport.openConnections, 0);
    await pool.close();
  });

  test("a key added to an address after it was resolved is checked too", () => {
    const address: Record<string, unknown> = { ...A };
    resolveAddress(address as never);
    address.TLS = true;
    assert.throws(() => resolveAddress(address as never), /"TLS"/);
  });

  test("suggestions: case, one slip, other libraries' names; none for far-off names", () => {
    const names = [...POOL_OPTION_KEYS.names];
    assert.equal(suggestion("MAXPERHOST", names), "maxPerHost");
    assert.equal(suggestion("maxPerHots", names), "maxPerHost");
    assert.equal(suggestion("maxTotalSockets", names), "maxTotal");
    assert.equal(suggestion("banana", names), undefined);
    assert.equal(suggestion("x".repeat(100_000), names), undefined);
  });

  test("checkKnownKeys returns a prototype-less snapshot of own properties", () => {
    const snapshot = checkKnownKeys({ maxPerHost: 3 }, POOL_OPTION_KEYS, "pool options");
    assert.equal(Object.getPrototypeOf(snapshot), null);
    assert.deepEqual(Object.keys(snapshot), ["maxPerHost"]);
    assert.equal(snapshot.maxPerHost, 3);
  });
});

describe("only own properties count, each read once", () => {
  test("an inherited verify: false never turns verification off", () => {
    const inherited = Object.create({ verify: false });
    const error = catchError(() => resolveAddress({ ...A, tls: inherited }));
    assert.ok(error instanceof TypeError, `${error}`);
    assert.match(error.message, /plain object/);
  });

  test("a polluted Object.prototype changes nothing", async () => {
    const prototype = Object.prototype as Record<string, unknown>;
    const polluted = { verify: false, tls: true, maxPerHost: 1, caCerts: ["EVIL CA"], path: "/x" };
    Object.assign(prototype, polluted);
    try {
      assert.equal(resolveAddress({ hostname: "p.test", port: 1 }).key, "p.test:1");
      const tls = resolveAddress({ hostname: "p.test", port: 2, tls: {} });
      assert.equal(tls.kind === "tcp" && tls.tls?.verify, true);
      assert.equal(tls.key, "tls:p.test:2");
      const { pool } = setup();
      const held = [await pool.acquire(A), await pool.acquire(A)]; // no limit of 1
      for (const { connection } of held) pool.retain(connection);
      await pool.close();
    } finally {
      for (const name of Object.keys(polluted)) delete prototype[name];
    }
  });

  test("a getter that changes its answer never slips past the cache", () => {
    const answers = ["good.test", "evil.test", "evil.test", "other.test", "other.test"];
    let reads = 0;
    let last = "";
    const address = {
      get hostname(): string {
        last = answers[Math.min(reads++, answers.length - 1)]!;
        return last;
      },
      port: 80,
    };
    for (let i = 0; i < 4; i++) {
      const readsBefore = reads;
      const { key } = resolveAddress(address);
      assert.equal(key, `${last}:80`, `call ${i}: resolved a value it did not read last`);
      assert.ok(reads - readsBefore <= 2, `call ${i}: hostname read ${reads - readsBefore} times`);
    }
  });

  test("a TLS options getter is read once per resolution", () => {
    let reads = 0;
    const tls = {
      get verify(): boolean {
        reads++;
        return reads === 1; // true for the check, false if read again
      },
    };
    const resolved = resolveAddress({ ...A, tls });
    assert.equal(reads, 1);
    assert.equal(resolved.kind === "tcp" && resolved.tls?.verify, true);
    assert.equal(resolved.key, `tls:${A.hostname}:${A.port}`);
  });
});

describe("addresses are checked strictly, the same on every runtime", () => {
  const invalid: Array<[string, unknown, typeof TypeError | typeof RangeError]> = [
    ["host:port as IPv6", "127.0.0.1:6379", TypeError],
    [":::", ":::", TypeError],
    ["1:2", "1:2", TypeError],
    ["two ::", "1::2::3", TypeError],
    ["a group of 5 digits", "12345::", TypeError],
    ["nine groups", "1:2:3:4:5:6:7:8:9", TypeError],
    ["eight groups and ::", "1:2:3:4:5:6:7::8", TypeError],
    ["IPv4 not last", "::1.2.3.4:5", TypeError],
    ["bad embedded IPv4", "::ffff:1.2.3.256", TypeError],
    ["a zone on ::1", "::1%lo", TypeError],
    ["a numeric zone", "fe80::1%2", TypeError],
    ["an empty zone", "fe80::1%", TypeError],
    ["brackets around a name", "[example.test]", TypeError],
    ["an empty label", "a..test", TypeError],
    ["a leading dot", ".a.test", TypeError],
    ["IPv4 shorthand", "127.1", TypeError],
    ["IPv4 in hex", "0x7f000001", TypeError],
    ["IPv4 with a leading zero", "010.0.0.1", TypeError],
    ["IPv4 octet 256", "256.1.1.1", TypeError],
    ["not ASCII", "bücher.test", TypeError],
    ["a percent sign", "a%b.test", TypeError],
    ["a label of 64", `${"a".repeat(64)}.test`, RangeError],
    ["254 characters", `${"a".repeat(63)}.`.repeat(3) + "a".repeat(62), RangeError],
    ["1,000,000 characters", "a".repeat(1_000_000), RangeError],
  ];
  for (const [name, hostname, ErrorType] of invalid) {
    test(`hostname: ${name}`, async () => {
      const error = catchError(() => resolveAddress({ hostname: hostname as string, port: 80 }));
      assert.ok(error instanceof ErrorType, `${name}: expected ${ErrorType.name}, got ${error}`);
      assert.ok(error.message.length < MAX_MESSAGE, `${name}: ${error.message.length} chars`);
      const { pool, transport } = setup();
      await assert.rejects(pool.acquire({ hostname: hostname as string, port: 80 }), ErrorType);
      assert.equal(transport.openConnections, 0);
      await pool.close();
    });
  }

  const valid: Array<[string, string]> = [
    ["::1", "[::1]:80"],
    ["[::1]", "[::1]:80"],
    ["::", "[::]:80"],
    ["1::", "[1::]:80"],
    ["::ffff:1.2.3.4", "[::ffff:1.2.3.4]:80"],
    ["FE80::1", "[fe80::1]:80"],
    ["1:2:3:4:5:6:7:8", "[1:2:3:4:5:6:7:8]:80"],
    ["1:2:3:4:5:6::8", "[1:2:3:4:5:6::8]:80"],
    ["fe80::1%eth0", "[fe80::1%eth0]:80"],
    ["[FE80::A%Eth0]", "[fe80::a%Eth0]:80"],
    ["0.0.0.0", "0.0.0.0:80"],
    ["255.255.255.255", "255.255.255.255:80"],
    ["Example.TEST.", "example.test.:80"],
    ["_srv.example.test", "_srv.example.test:80"],
    ["xn--bcher-kva.test", "xn--bcher-kva.test:80"],
    ["1.2.3.4.example", "1.2.3.4.example:80"],
    [`${"a".repeat(63)}.`.repeat(3) + "a".repeat(61), ""],
  ];
  for (const [hostname, key] of valid) {
    test(`hostname ${hostname.length > 40 ? `of ${hostname.length} characters` : hostname}`, () => {
      const resolved = resolveAddress({ hostname, port: 80 });
      if (key !== "") assert.equal(resolved.key, key);
    });
  }

  test("a Unix socket path of 108 bytes or more is a RangeError (runtimes differ past it)", () => {
    const base = "/tmp/";
    assert.equal(resolveAddress({ path: base + "x".repeat(107 - base.length) }).kind, "unix");
    for (
      const path of [base + "x".repeat(108 - base.length), "/tmp/é".repeat(20), "/".repeat(1e6)]
    ) {
      const error = catchError(() => resolveAddress({ path }));
      assert.ok(error instanceof RangeError, `${error}`);
      assert.ok(error.message.length < MAX_MESSAGE);
    }
  });

  test("a zone id is not part of the TLS server name", () => {
    const resolved = resolveAddress({ hostname: "fe80::1%eth0", port: 443, tls: true });
    assert.equal(resolved.kind === "tcp" && resolved.tls?.serverName, "fe80::1");
    assert.throws(
      () => resolveAddress({ ...A, tls: { serverName: "fe80::1%eth0" } }),
      /zone/,
    );
  });

  const notPlain: Array<[string, unknown]> = [
    ["a Map", new Map([["verify", false]])],
    ["an array", []],
    [
      "a class instance",
      new (class TlsConfig {
        verify = false;
      })(),
    ],
    ["a Date", new Date()],
  ];
  for (const [name, tls] of notPlain) {
    test(`tls: ${name} is a TypeError`, () => {
      const error = catchError(() => resolveAddress({ ...A, tls } as never));
      assert.ok(error instanceof TypeError, `${error}`);
      assert.match(error.message, /tls/);
    });
  }

  test("a plain address from Object.create(null) is fine", () => {
    const address = Object.assign(Object.create(null), A);
    assert.equal(resolveAddress(address).key, "input.test:7000");
  });

  test("new ConnectionPool(null) says it got null", () => {
    const error = catchError(() => new ConnectionPool(null as never));
    assert.ok(error instanceof TypeError);
    assert.match(error.message, /expected a plain object, got null/);
    assert.match(catchError(() => new ConnectionPool(new Map() as never)).message, /Map/);
  });
});

describe("error messages quote input only up to a bounded length", () => {
  const huge = "x".repeat(1_000_000);
  const cases: Array<[string, () => unknown]> = [
    ["a huge port string", () => resolveAddress({ hostname: "a.test", port: "9".repeat(1e6) })],
    ["a huge non-decimal port", () => resolveAddress({ hostname: "a.test", port: huge })],
    ["a huge path with NUL", () => resolveAddress({ path: huge + "\0" })],
    ["a huge unknown key", () => resolveAddress({ ...A, [huge]: 1 } as never)],
    ["a huge serverName", () => resolveAddress({ ...A, tls: { serverName: huge } })],
    ["a huge bad hostname", () => resolveAddress({ hostname: `${huge} x`, port: 1 })],
    ["a huge ALPN name", () => resolveAddress({ ...A, tls: { alpnProtocols: [huge] } })],
    ["a huge verify value", () => resolveAddress({ ...A, tls: { verify: huge } as never })],
    ["a huge order", () => new ConnectionPool({ order: huge as never })],
    ["a huge unknown option", () => new ConnectionPool({ [huge]: 1 } as never)],
    ["a huge onEvent", () => new ConnectionPool({ onEvent: huge as never })],
  ];
  for (const [name, run] of cases) {
    test(name, () => {
      const error = catchError(run);
      assert.ok(error instanceof TypeError || error instanceof RangeError, `${name}: ${error}`);
      assert.ok(
        error.message.length < MAX_MESSAGE,
        `${name}: a message of ${error.message.length} characters`,
      );
    });
  }

  test("a key with a long ALPN list stays short", () => {
    const alpnProtocols = Array.from({ length: 1000 }, (_, i) => `protocol-${i}`);
    const { key } = resolveAddress({ ...A, tls: { alpnProtocols } });
    assert.ok(key.length < 200, key);
    const other = resolveAddress({ ...A, tls: { alpnProtocols: alpnProtocols.slice(1) } });
    assert.notEqual(other.key, key);
  });

  test("PoolError is still what a connect failure gives", async () => {
    const pool = new ConnectionPool({ transport: new MemoryTransport() });
    const error = await pool.acquire({ hostname: "nobody.test", port: 1 }).catch((e) => e);
    assert.ok(error instanceof PoolError && error.code === "CONNECT_REFUSED", `${error}`);
    await pool.close();
  });
});
