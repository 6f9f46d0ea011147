// redis-server with `timeout 1`: a pipelined SET and GET of a value unique
// to the request, so a reply read by the wrong request shows. Optionally
// with a password and a number of databases, for the driver-hook test
// (redis_setup.ts).
import { type RealServer, startRealServer } from "./real_server.ts";
import type { ReplyReader } from "./reply_reader.ts";

/** How to configure the redis server beyond the defaults. */
export interface RedisOptions {
  /** `requirepass`: every connection must send `AUTH` first. */
  password?: string;
  /** `databases`: how many numbered databases `SELECT` can choose from. */
  databases?: number;
}

/** Starts redis-server without persistence, in its own directory. */
export function startRedis(options: RedisOptions = {}): Promise<RealServer> {
  const extra: string[] = [];
  if (options.password !== undefined) extra.push("--requirepass", options.password);
  if (options.databases !== undefined) extra.push("--databases", String(options.databases));
  return startRealServer({
    name: options.password === undefined ? "redis" : "redis-auth",
    debianPackage: "redis-server",
    program: "redis-server",
    versionArgs: ["--version"],
    args: (port, dir) => [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--timeout",
      "1",
      "--save",
      "",
      "--appendonly",
      "no",
      "--dir",
      dir,
      "--daemonize",
      "no",
      "--loglevel",
      "warning",
      ...extra,
    ],
    // Idle time is compared in whole seconds (more than 1) by a cron that
    // visits each client about once a second: closed 1.4-2.7 s after the
    // last command, as measured on redis 7.0.
    idleClose: { min: 1000, max: 2500 },
    exchange: setAndGet,
  });
}

/** A command in RESP, as an array of bulk strings. */
export function command(...parts: string[]): string {
  return `*${parts.length}\r\n${parts.map((part) => `$${part.length}\r\n${part}\r\n`).join("")}`;
}

async function setAndGet(reader: ReplyReader, id: number): Promise<void> {
  const key = `k${id}`;
  const value = `v${id}.${Math.random().toString(36).slice(2)}`;
  await reader.send(command("SET", key, value) + command("GET", key));
  await reader.expect(`+OK\r\n$${value.length}\r\n${value}\r\n`);
  reader.finish();
}
