// The driver hooks against a real redis: started with `requirepass` and 4
// databases (and `timeout 1`, so it closes idle connections and the pool
// opens new ones), it rejects every command but AUTH on a connection that
// has not authenticated, and counts each rejection in `INFO errorstats`
// (`errorstat_NOAUTH`) and `INFO commandstats` (`rejected_calls`). The pools'
// `setup` sends AUTH and SELECT n and records n in `connection.state`; every
// request checks that its connection is on the database its state names.
// Connections opened by `warm()` and by `minIdlePerHost`, as well as by
// acquires, must all have been set up before their first command.
import assert from "node:assert/strict";
import { ConnectionPool, type PoolEvent, type UpstreamConnection } from "../../mod.ts";
import { waitUntil } from "../_async.ts";
import type { RealServer } from "./real_server.ts";
import { command } from "./redis.ts";
import { ReplyMismatch, ReplyReader } from "./reply_reader.ts";

/** What the pools keep per connection. */
export interface RedisState {
  /** The database `setup` selected. */
  database?: number;
}

/** An error reply (`-ERR ...`), as a value. */
class RedisError {
  readonly message: string;
  constructor(message: string) {
    this.message = message;
  }
}

type Reply = string | number | null | RedisError | Reply[];

/** Reads one RESP2 reply. */
async function readReply(reader: ReplyReader): Promise<Reply> {
  const line = await reader.until("\r\n");
  const rest = line.slice(1);
  switch (line[0]) {
    case "+":
      return rest;
    case "-":
      return new RedisError(rest);
    case ":":
      return Number(rest);
    case "$": {
      if (rest === "-1") return null;
      const text = await reader.take(Number(rest));
      await reader.expect("\r\n");
      return text;
    }
    case "*": {
      const items: Reply[] = [];
      for (let i = 0; i < Number(rest); i++) items.push(await readReply(reader));
      return items;
    }
    default:
      throw new ReplyMismatch("a RESP reply", line);
  }
}

/**
 * Runs `commands` (each a list of arguments) on a connection of its own,
 * after `AUTH password` unless `password` is undefined, and returns their
 * replies (without AUTH's). The connection is closed after.
 */
async function control(
  server: RealServer,
  password: string | undefined,
  ...commands: string[][]
): Promise<Reply[]> {
  const all = password === undefined ? commands : [["AUTH", password], ...commands];
  const pool = new ConnectionPool();
  try {
    const { connection } = await pool.acquire(server.address);
    const reader = new ReplyReader(connection);
    await reader.send(all.map((parts) => command(...parts)).join(""));
    const replies: Reply[] = [];
    for (let i = 0; i < all.length; i++) replies.push(await readReply(reader));
    reader.finish();
    pool.release(connection);
    if (password !== undefined) assert.equal(replies.shift(), "OK", "control AUTH");
    return replies;
  } finally {
    await pool.close();
  }
}

/** The `name:value` fields of an INFO reply. */
function infoFields(reply: Reply): Map<string, string> {
  assert.equal(typeof reply, "string", `INFO reply: ${JSON.stringify(reply)}`);
  const fields = new Map<string, string>();
  for (const line of (reply as string).split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon > 0 && !line.startsWith("#")) fields.set(line.slice(0, colon), line.slice(colon + 1));
  }
  return fields;
}

/** `calls=3,usec=...,rejected_calls=0` as numbers by name. */
function statFields(text: string | undefined): Map<string, number> {
  const fields = new Map<string, number>();
  for (const pair of (text ?? "").split(",")) {
    const [name, value] = pair.split("=");
    if (name && value !== undefined) fields.set(name, Number(value));
  }
  return fields;
}

/** What one pool's events said about the connections it opened. */
class PoolWatch {
  /** Requests of this pool in flight (inside `exchange`). */
  inFlight = 0;
  /** True while `warm()` runs. */
  warming = false;
  /** Set-ups by when they happened: in warm(), with no request in flight, or during requests. */
  setUps = { warm: new Set<number>(), quiet: new Set<number>(), busy: new Set<number>() };
  opened = 0;
  /** Connections handed out for the first time. */
  firstHandouts = new Set<number>();
  /** Connections handed out before their set-up finished: must stay empty. */
  notSetUp = new Set<number>();

  onEvent = (event: PoolEvent): void => {
    if (event.type === "opened") this.opened++;
    if (event.type === "set-up") {
      const when = this.warming ? "warm" : this.inFlight === 0 ? "quiet" : "busy";
      this.setUps[when].add(event.id);
    }
    if (event.type === "handed-out") {
      if (!this.#setUp(event.id)) this.notSetUp.add(event.id);
      if (event.created) this.firstHandouts.add(event.id);
    }
  };

  get setUpCount(): number {
    return this.setUps.warm.size + this.setUps.quiet.size + this.setUps.busy.size;
  }

  /** How many of `ids` went on to serve a request. */
  served(ids: Set<number>): number {
    return [...ids].filter((id) => this.firstHandouts.has(id)).length;
  }

  #setUp(id: number): boolean {
    return this.setUps.warm.has(id) || this.setUps.quiet.has(id) || this.setUps.busy.has(id);
  }
}

export interface SetupCheckOptions {
  password: string;
  databases: number;
  /** Requests in all, split over the bursts. */
  requests: number;
  /**
   * Bursts of requests. Between two, the pools wait until the server has
   * closed the idle connections of the `minIdlePerHost` pool and that pool
   * has opened 4 new ones.
   */
  bursts: number;
  /** Requests in flight at once during a burst, over both pools. */
  concurrency: number;
}

/**
 * Two pools share one `setup` (AUTH, then SELECT of the next database in
 * turn): one filled by `warm()`, one kept topped up by `minIdlePerHost`.
 * Requests in bursts, through `exchange`, each pipelining `GET db` (a
 * marker key whose value is its database's number), SET and GET of a key
 * unique to it. Then redis itself is asked: no command was rejected for
 * want of AUTH, AUTH and SELECT ran once per connection the pools set up,
 * and every key is in the database its connection's state named.
 */
export async function checkSetupOnEveryConnection(
  server: RealServer,
  options: SetupCheckOptions,
): Promise<string> {
  const { password, databases } = options;
  // Markers, then the proof that a command on an unauthenticated connection
  // would show in the server's statistics; then statistics from zero.
  const seed: string[][] = [];
  for (let db = 0; db < databases; db++) seed.push(["SELECT", String(db)], ["SET", "db", `${db}`]);
  await control(server, password, ...seed);
  const [rejected] = await control(server, undefined, ["GET", "db"]);
  assert.ok(
    rejected instanceof RedisError && rejected.message.startsWith("NOAUTH"),
    `an unauthenticated GET: ${JSON.stringify(rejected)}`,
  );
  const [before] = await control(server, password, ["INFO", "errorstats"], [
    "CONFIG",
    "RESETSTAT",
  ]);
  assert.equal(infoFields(before!).get("errorstat_NOAUTH"), "count=1", "NOAUTH is counted");

  let nextDatabase = 0;
  const setup = async (connection: UpstreamConnection<RedisState>): Promise<void> => {
    const database = nextDatabase++ % databases;
    const reader = new ReplyReader(connection);
    await reader.send(command("AUTH", password) + command("SELECT", String(database)));
    await reader.expect("+OK\r\n+OK\r\n");
    reader.finish();
    connection.state.database = database;
  };
  const warmed = new PoolWatch();
  const kept = new PoolWatch();
  const pools = [
    {
      watch: warmed,
      pool: new ConnectionPool<RedisState>({ setup, onEvent: warmed.onEvent, maxPerHost: 12 }),
    },
    {
      watch: kept,
      pool: new ConnectionPool<RedisState>({
        setup,
        onEvent: kept.onEvent,
        maxPerHost: 12,
        minIdlePerHost: 4,
      }),
    },
  ];
  const keysIn: string[][] = Array.from({ length: databases }, () => []);
  const failures: unknown[] = [];
  let nextId = 1;
  const started = Date.now();
  try {
    warmed.warming = true;
    await pools[0]!.pool.warm(server.address, 8);
    warmed.warming = false;
    assert.equal(warmed.setUps.warm.size, 8, "warm(8) set up 8 connections before resolving");
    assert.equal(pools[0]!.pool.stats().idle, 8);

    const one = async (): Promise<void> => {
      const id = nextId++;
      const { pool, watch } = pools[id % 2]!;
      const key = `k${id}`;
      const value = `v${id}.${Math.random().toString(36).slice(2)}`;
      watch.inFlight++;
      try {
        const database = await pool.exchange(server.address, async (connection) => {
          const database = connection.state.database;
          if (database === undefined) {
            throw new Error(`connection ${connection.id} has no database: it was not set up`);
          }
          const reader = new ReplyReader(connection);
          await reader.send(
            command("GET", "db") + command("SET", key, value) + command("GET", key),
          );
          const marker = String(database);
          await reader.expect(
            `$${marker.length}\r\n${marker}\r\n+OK\r\n$${value.length}\r\n${value}\r\n`,
          );
          reader.finish();
          return database;
        }, { idempotent: true });
        keysIn[database]!.push(key);
      } catch (error) {
        failures.push(error);
      } finally {
        watch.inFlight--;
      }
    };
    for (let burst = 0; burst < options.bursts; burst++) {
      if (burst > 0) {
        const refilled = kept.setUps.quiet.size + 4;
        await waitUntil(
          () => kept.setUps.quiet.size >= refilled,
          server.idleClose.max + 3000,
          `${server.name}: minIdlePerHost reopens the 4 connections the server closed`,
        );
      }
      const end = Math.round(options.requests * (burst + 1) / options.bursts);
      await Promise.all(Array.from({ length: options.concurrency }, async () => {
        while (nextId <= end) await one();
      }));
    }
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    assert.deepEqual(failures.slice(0, 3), [], `${server.name}: ${failures.length} failed`);
    const requests = keysIn.reduce((sum, keys) => sum + keys.length, 0);
    assert.equal(requests, options.requests);

    // What redis counted. (This control connection's own AUTH is counted too.)
    const [stats, errors, commands] = await control(
      server,
      password,
      ["INFO", "stats"],
      ["INFO", "errorstats"],
      ["INFO", "commandstats"],
    );
    const errorStats = [...infoFields(errors!)].map(([name, value]) => `${name}:${value}`);
    assert.deepEqual(errorStats, [], `${server.name}: error replies`);
    assert.equal(infoFields(stats!).get("total_error_replies"), "0");
    const calls = new Map(
      [...infoFields(commands!)].map(([name, value]) => [name, statFields(value)]),
    );
    for (const [name, fields] of calls) {
      assert.equal(fields.get("rejected_calls") ?? 0, 0, `${name}: rejected calls`);
      assert.equal(fields.get("failed_calls") ?? 0, 0, `${name}: failed calls`);
    }
    let setUps = 0;
    let retried = 0;
    for (const { pool, watch } of pools) {
      const totals = pool.stats().totals;
      assert.deepEqual(
        [...watch.notSetUp],
        [],
        `${server.name}: connections handed out before setup`,
      );
      assert.equal(watch.setUpCount, watch.opened, "every opened connection was set up");
      assert.equal(watch.setUpCount, totals.created, "every connection was set up once");
      setUps += watch.setUpCount;
      retried += totals.retried;
    }
    assert.equal(calls.get("cmdstat_auth")?.get("calls"), setUps + 1, "AUTH once per connection");
    assert.equal(calls.get("cmdstat_select")?.get("calls"), setUps, "SELECT once per connection");
    assert.equal(calls.get("cmdstat_get")?.get("calls"), 2 * requests, "GETs");
    assert.equal(calls.get("cmdstat_set")?.get("calls"), requests, "SETs");

    // Connections opened by warm() and by minIdlePerHost served requests.
    assert.equal(warmed.served(warmed.setUps.warm), 8, "the warmed connections served requests");
    assert.ok(kept.setUps.quiet.size > 0, "minIdlePerHost opened connections between bursts");
    const keptServed = kept.served(kept.setUps.quiet);
    assert.ok(keptServed > 0, "a connection minIdlePerHost opened served a request");

    // Every key is in the database its connection's state named, and no other.
    const checks: string[][] = [];
    for (let db = 0; db < databases; db++) {
      checks.push(["SELECT", String(db)], ["DBSIZE"]);
      if (keysIn[db]!.length > 0) checks.push(["EXISTS", ...keysIn[db]!]);
    }
    const replies = await control(server, password, ...checks);
    for (let db = 0, at = 0; db < databases; db++) {
      assert.equal(replies[at++], "OK");
      assert.equal(replies[at++], keysIn[db]!.length + 1, `keys in db ${db} (with its marker)`);
      if (keysIn[db]!.length > 0) assert.equal(replies[at++], keysIn[db]!.length, `db ${db}`);
    }

    const spread = keysIn.map((keys, db) => `db ${db}: ${keys.length}`).join(", ");
    return `AUTH + SELECT in setup: ${requests} requests in ${seconds}s, 0 failed, ` +
      `${retried} retried by exchange; ${setUps} connections set up: ` +
      `${warmed.setUps.warm.size} by warm() (${warmed.served(warmed.setUps.warm)} served), ` +
      `${kept.setUps.quiet.size} by minIdlePerHost between bursts (${keptServed} served), ` +
      `${warmed.setUps.quiet.size} by warm()'s upkeep between bursts, ` +
      `${warmed.setUps.busy.size + kept.setUps.busy.size} during bursts; redis counted ` +
      `${setUps + 1} AUTH (1 the check's own), ${setUps} SELECT, 0 NOAUTH or other error ` +
      `replies; keys by database ${spread}`;
  } finally {
    await Promise.all(pools.map(({ pool }) => pool.close()));
  }
}
