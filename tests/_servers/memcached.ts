// memcached with `-o idle_timeout=1`: a pipelined set and get of a value
// unique to the request, so a reply read by the wrong request shows.
import * as os from "node:os";
import { type RealServer, startRealServer } from "./real_server.ts";
import type { ReplyReader } from "./reply_reader.ts";

/** Starts memcached on TCP only (no UDP), with room for the tests' connections. */
export function startMemcached(): Promise<RealServer> {
  return startRealServer({
    name: "memcached",
    debianPackage: "memcached",
    program: "memcached",
    versionArgs: ["-V"],
    args: (port) => [
      "-l",
      "127.0.0.1",
      "-p",
      String(port),
      "-U",
      "0",
      "-c",
      "4096",
      "-t",
      "2",
      "-o",
      "idle_timeout=1",
      // As root, memcached runs only with an explicit user.
      ...(os.userInfo().uid === 0 ? ["-u", "root"] : []),
    ],
    // Idle time is compared in whole seconds by a thread that scans all
    // connections and then sleeps: closed 1.7-3.9 s after the last command,
    // as measured on memcached 1.6.
    idleClose: { min: 1000, max: 3500 },
    exchange: setAndGet,
  });
}

async function setAndGet(reader: ReplyReader, id: number): Promise<void> {
  const key = `k${id}`;
  const value = `v${id}.${Math.random().toString(36).slice(2)}`;
  await reader.send(`set ${key} 0 0 ${value.length}\r\n${value}\r\nget ${key}\r\n`);
  await reader.expect(`STORED\r\nVALUE ${key} 0 ${value.length}\r\n${value}\r\nEND\r\n`);
  reader.finish();
}
