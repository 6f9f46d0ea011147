// The reverse proxy of examples/http_proxy.ts on this runtime: its response
// reader against replies cut at random places; its rules for giving
// connections back against a scripted upstream that misbehaves on cue; and
// the whole proxy in front of nginx (`keepalive_timeout 1s`), driven by wrk
// in bursts separated by pauses around that second, so that its idle
// upstream connections meet the edge: not one 5xx, not one socket error.
//
// `PROXY_SOAK=1` makes the wrk run a minute long; `PROXY_BENCH=1` measures
// requests/s with the pool, with a connection per request, and the
// baselines (nginx alone, a bare node:http server on this runtime).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import * as net from "node:net";
import * as path from "node:path";
import process from "node:process";
import { type HttpProxy, startProxy } from "../examples/http_proxy.ts";
import { ConnectionPool, type TcpAddress } from "../mod.ts";
import {
  type ByteSource,
  HttpParseError,
  latin1Encode,
  ReplyCutShort,
  ResponseReader,
} from "../examples/_http1.ts";
import { pattern, sameBytes } from "./_bytes.ts";
import { delay } from "./_async.ts";
import { runtime } from "./_runtime.ts";
import {
  findProgram,
  programVersion,
  realServersSkipReason,
  serverDir,
  ServerProcess,
} from "./_servers/process.ts";

const LONG = { timeout: 120_000 };
const SOAK = process.env.PROXY_SOAK === "1";
const BENCH = process.env.PROXY_BENCH === "1";

// ---------------------------------------------------------------------------
// The response reader, without a network

/** A seeded xorshift32 generator: the same seed gives the same cuts. */
function random(seed: number): (n: number) => number {
  let state = (Math.imul(seed ^ 0x2545f491, 0x9e3779b9) >>> 0) || 1;
  return (n) => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return Math.floor((state / 0x1_0000_0000) * n);
  };
}

/** Serves `bytes` cut into chunks of random sizes (1 to `most`); counts reads. */
class CutSource implements ByteSource {
  chunks: Uint8Array[] = [];
  reads = 0;

  constructor(bytes: Uint8Array, next: (n: number) => number, most: number) {
    for (let at = 0; at < bytes.length;) {
      const size = 1 + next(most);
      this.chunks.push(bytes.subarray(at, at + size));
      at += size;
    }
  }

  read(): Promise<Uint8Array | null> {
    this.reads++;
    return Promise.resolve(this.chunks.shift() ?? null);
  }
}

function concat(...parts: (string | Uint8Array)[]): Uint8Array {
  const bytes = parts.map((part) => typeof part === "string" ? latin1Encode(part) : part);
  const out = new Uint8Array(bytes.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of bytes) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** A body in chunked coding, cut into chunks of the given sizes, with extensions and a trailer. */
function chunked(body: Uint8Array, sizes: number[]): Uint8Array {
  const parts: (string | Uint8Array)[] = [];
  let at = 0;
  for (const size of sizes) {
    if (at >= body.length) break;
    const part = body.subarray(at, at + size);
    parts.push(`${part.length.toString(16)}${at % 2 ? ";ext=1" : ""}\r\n`, part, "\r\n");
    at += part.length;
  }
  if (at < body.length) {
    parts.push(`${(body.length - at).toString(16)}\r\n`, body.subarray(at), "\r\n");
  }
  parts.push("0\r\nX-Trailer: t\r\n\r\n");
  return concat(...parts);
}

async function readAll(reader: ResponseReader, method = "GET") {
  const head = await reader.readHead(method);
  const parts: Uint8Array[] = [];
  for await (const part of reader.body(head)) parts.push(part.slice());
  return { head, body: concat(...parts) };
}

describe("http proxy: the response reader", () => {
  test("replies cut into random pieces parse the same; only exact ends are reusable", async () => {
    for (let seed = 1; seed <= 300; seed++) {
      const next = random(seed);
      const body = pattern(next(3000), seed);
      const sizes = Array.from({ length: 8 }, () => 1 + next(700));
      const replies: {
        bytes: Uint8Array;
        method?: string;
        body: Uint8Array;
        keep: boolean;
        untilClose?: boolean;
      }[] = [
        {
          bytes: concat(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`, body),
          body,
          keep: true,
        },
        {
          bytes: concat(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
            "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n",
            chunked(body, sizes),
          ),
          body,
          keep: true,
        },
        {
          bytes: concat("HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"),
          method: "HEAD",
          body: new Uint8Array(0),
          keep: true,
        },
        {
          bytes: concat(
            `HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: ${body.length}\r\n\r\n`,
            body,
          ),
          body,
          keep: false,
        },
        { bytes: concat("HTTP/1.1 200 OK\r\n\r\n", body), body, keep: false, untilClose: true },
        {
          bytes: concat("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"),
          body: new Uint8Array(0),
          keep: false,
        },
      ];
      for (const [i, reply] of replies.entries()) {
        const where = `seed ${seed}, reply ${i}`;
        const source = new CutSource(reply.bytes, next, 1 + next(600));
        const reader = new ResponseReader(source);
        const got = await readAll(reader, reply.method);
        assert.ok(sameBytes(got.body, reply.body), `${where}: body differs`);
        assert.equal(reader.reusable(got.head), reply.keep, where);
        assert.equal(reader.received, reply.bytes.length, where);

        // The same reply with bytes after it: never reusable when the reader
        // saw them, and it never reads a chunk it does not need.
        const stray = "HTTP/1.1 200 OK\r\n";
        const extra = new CutSource(concat(reply.bytes, stray), next, 1 + next(600));
        const tail = new ResponseReader(extra);
        const again = await readAll(tail, reply.method);
        // A body delimited by the close takes everything up to it.
        const expected = reply.untilClose ? concat(reply.body, stray) : reply.body;
        assert.ok(sameBytes(again.body, expected), `${where}: body differs with a tail`);
        if (tail.leftover > 0 || !reply.keep) {
          assert.equal(tail.reusable(again.head), false, where);
        } else {
          assert.ok(extra.chunks.length > 0, `${where}: read past the reply`);
          assert.equal(tail.reusable(again.head), true, where);
        }
      }
    }
  });

  test("header octets above 0x7F stay the same octets; bare LF line ends are read", async () => {
    const value = new Uint8Array([0x61, 0x80, 0x81, 0x9f, 0xa0, 0xe9, 0xff]);
    const reply = concat("HTTP/1.1 200 OK\nX-Octets: ", value, "\r\nContent-Length: 0\n\n");
    const reader = new ResponseReader(new CutSource(reply, random(9), 5));
    const { head } = await readAll(reader);
    assert.deepEqual(head.headers[0], ["X-Octets", String.fromCharCode(...value)]);
    assert.ok(sameBytes(latin1Encode(head.headers[0]![1]), value));
    assert.equal(reader.reusable(head), true);
  });

  test("malformed replies are parse errors; a short one says how much came", async () => {
    const bad = [
      "HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
      "HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n",
      "HTTP/1.1 200 OK\r\n folded: x\r\n\r\n",
      "HTTP/2 200\r\n\r\n",
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
      `HTTP/1.1 200 OK\r\nX: ${"a".repeat(70_000)}\r\n\r\n`,
    ];
    for (const text of bad) {
      const reader = new ResponseReader(new CutSource(latin1Encode(text), random(7), 50));
      await assert.rejects(readAll(reader), HttpParseError, text.slice(0, 60));
    }
    const cut = new ResponseReader(
      new CutSource(latin1Encode("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc"), random(3), 9),
    );
    await assert.rejects(
      readAll(cut),
      (error) => error instanceof ReplyCutShort && error.received > 0,
    );
    const nothing = new ResponseReader(new CutSource(new Uint8Array(0), random(1), 1));
    await assert.rejects(
      readAll(nothing),
      (error) => error instanceof ReplyCutShort && error.received === 0,
    );
    // Both framings: read by the chunks, never reused.
    const both = new ResponseReader(
      new CutSource(
        latin1Encode(
          "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n",
        ),
        random(5),
        4,
      ),
    );
    const got = await readAll(both);
    assert.equal(new TextDecoder().decode(got.body), "ab");
    assert.equal(both.reusable(got.head), false);
  });
});

// ---------------------------------------------------------------------------
// Clients and upstreams

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Uint8Array;
}

/** One request on a new client connection (no agent): `chunked` sends the body in chunked coding. */
function request(
  port: number,
  method: string,
  path: string,
  body?: Uint8Array,
  chunkedBody = false,
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = chunkedBody
      ? { "transfer-encoding": "chunked" }
      : body
      ? { "content-length": String(body.length) }
      : {};
    const req = http.request(
      { host: "127.0.0.1", port, method, path, agent: false, headers },
      (res) => {
        const parts: Uint8Array[] = [];
        res.on("data", (part: Uint8Array) => parts.push(part));
        res.on(
          "end",
          () =>
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: concat(...parts) }),
        );
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    if (body && chunkedBody) {
      // Several chunks, so the proxy has several to re-chunk.
      for (let at = 0; at < body.length; at += 50_000) req.write(body.subarray(at, at + 50_000));
    } else if (body) req.write(body);
    req.end();
  });
}

const text = (bytes: Uint8Array): string => new TextDecoder().decode(bytes);

/** What a scripted upstream does with one request. */
type Action =
  | { reply: string; pieces?: number; thenClose?: boolean }
  | "hang up";

/**
 * An upstream that reads each request (head and `Content-Length` body) and
 * does what `script` says for it, given its path and its number on its
 * connection (1 for the first). It logs every request it read.
 */
async function scriptedUpstream(script: (path: string, nth: number) => Action) {
  const seen: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    let buffered = "";
    let nth = 0;
    socket.on("data", async (chunk: Uint8Array) => {
      buffered += String.fromCharCode(...chunk);
      for (;;) {
        const end = buffered.indexOf("\r\n\r\n");
        if (end === -1) return;
        const length = Number(/content-length: *(\d+)/i.exec(buffered.slice(0, end))?.[1] ?? 0);
        if (buffered.length < end + 4 + length) return;
        const [method, path] = buffered.slice(0, buffered.indexOf("\r\n")).split(" ");
        buffered = buffered.slice(end + 4 + length);
        seen.push(`${method} ${path}`);
        const action = script(path!, ++nth);
        if (action === "hang up") {
          socket.destroy();
          return;
        }
        const bytes = latin1Encode(action.reply);
        const pieces = action.pieces ?? 1;
        const size = Math.ceil(bytes.length / pieces);
        for (let at = 0; at < bytes.length; at += size) {
          socket.write(bytes.subarray(at, at + size));
          if (pieces > 1) await delay(1);
        }
        if (action.thenClose) socket.end();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    address: { hostname: "127.0.0.1", port: (server.address() as net.AddressInfo).port },
    seen,
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** The proxy's counters and pool totals as one flat object, to compare before and after. */
function snapshot(proxy: HttpProxy) {
  const { created, reused } = proxy.pool.stats().totals;
  return { ...proxy.counts, created, reused };
}

function delta(before: ReturnType<typeof snapshot>, proxy: HttpProxy) {
  const now = snapshot(proxy);
  const out: Partial<Record<keyof typeof now, number>> = {};
  for (const key of Object.keys(now) as (keyof typeof now)[]) {
    if (now[key] !== before[key]) out[key] = now[key] - before[key];
  }
  return out;
}

// ---------------------------------------------------------------------------
// The proxy's rules against an upstream that misbehaves on cue

describe("http proxy: what it retains, releases and retries", () => {
  let upstream: Awaited<ReturnType<typeof scriptedUpstream>>;
  let proxy: HttpProxy;
  const ok = (body: string, extra = ""): string =>
    `HTTP/1.1 200 OK\r\n${extra}Content-Length: ${body.length}\r\n\r\n${body}`;

  before(async () => {
    upstream = await scriptedUpstream((path, nth) => {
      // Second request on a connection: the keep-alive race, as the proxy sees it.
      if (path.startsWith("/race") && nth === 2) return "hang up";
      if (path === "/half" && nth === 2) return { reply: "HTTP/1.1 200 OK\r\n", thenClose: true };
      switch (path) {
        case "/leftover":
          return { reply: ok("ok") + "HTTP/1.1 200 OK\r\n" };
        case "/split":
          return {
            reply: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nsplit\r\n" +
              "3;x=y\r\n-ok\r\n0\r\nT: 1\r\n\r\n",
            pieces: 40,
          };
        case "/until-close":
          return { reply: "HTTP/1.1 200 OK\r\n\r\nto the end", thenClose: true };
        case "/close":
          return { reply: ok("closing", "Connection: close\r\n"), thenClose: true };
        case "/short-keep-alive":
          return { reply: ok("brief", "Keep-Alive: timeout=0\r\n") };
        case "/bad":
          return { reply: "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n" };
        case "/switch":
          return { reply: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n" };
        default:
          return { reply: ok(path) };
      }
    });
    proxy = await startProxy({ upstream: upstream.address });
  });

  after(async () => {
    await proxy.close();
    await upstream.close();
  });

  test("a reused connection that ends before replying: GET retried once, POST never", async () => {
    let before = snapshot(proxy);
    assert.equal(text((await request(proxy.port, "GET", "/race-a")).body), "/race-a");
    const got = await request(proxy.port, "GET", "/race-b");
    assert.equal(got.status, 200);
    assert.equal(text(got.body), "/race-b");
    assert.deepEqual(delta(before, proxy), {
      requests: 2,
      retried: 1,
      retained: 2, // the first, and the retry's new connection
      released: 1, // the reused one the upstream had closed
      created: 2, // pool.exchange opened a new connection for the retry
      reused: 1,
    });

    // The retry's connection was kept: start the POSTs on a new one, as the GETs did.
    proxy.pool.drain(upstream.address);
    before = snapshot(proxy);
    assert.equal((await request(proxy.port, "POST", "/race-c", latin1Encode("c"))).status, 200);
    const post = await request(proxy.port, "POST", "/race-d", latin1Encode("d"));
    assert.equal(post.status, 502, text(post.body));
    assert.match(text(post.body), /closed the connection before replying/);
    assert.deepEqual(delta(before, proxy), {
      requests: 2,
      failed: 1,
      retained: 1,
      released: 1,
      created: 1,
      reused: 1,
    });

    // A reply that had begun is never sent twice either.
    before = snapshot(proxy);
    assert.equal((await request(proxy.port, "GET", "/half")).status, 200);
    assert.equal((await request(proxy.port, "GET", "/half")).status, 502);
    assert.equal(delta(before, proxy).retried, undefined);
    assert.deepEqual(upstream.seen.slice(-7), [
      "GET /race-a",
      "GET /race-b",
      "GET /race-b",
      "POST /race-c",
      "POST /race-d",
      "GET /half",
      "GET /half",
    ]);
  });

  test("a reply read to its exact end is retained; any other is released", async () => {
    const cases: [path: string, status: number, body: string | RegExp, retained: boolean][] = [
      ["/plain", 200, "/plain", true],
      ["/split", 200, "split-ok", true],
      ["/leftover", 200, "ok", false],
      ["/until-close", 200, "to the end", false],
      ["/close", 200, "closing", false],
      ["/short-keep-alive", 200, "brief", false],
      ["/bad", 502, /bad Content-Length/, false],
      ["/switch", 502, /switched protocols/, false],
    ];
    for (const [path, status, body, retained] of cases) {
      const before = snapshot(proxy);
      const got = await request(proxy.port, "GET", path);
      assert.equal(got.status, status, path);
      if (typeof body === "string") assert.equal(text(got.body), body, path);
      else assert.match(text(got.body), body, path);
      const change = delta(before, proxy);
      assert.equal(change.retained ?? 0, retained ? 1 : 0, `${path}: ${JSON.stringify(change)}`);
      assert.equal(change.released ?? 0, retained ? 0 : 1, `${path}: ${JSON.stringify(change)}`);
      assert.equal(proxy.pool.stats().borrowed, 0);
    }
  });

  test("with reuse: false every request opens its own connection, however many overlap", async () => {
    const alone = await startProxy({ upstream: upstream.address, reuse: false });
    try {
      for (let round = 0; round < 5; round++) {
        const replies = await Promise.all(
          Array.from({ length: 16 }, (_, i) => request(alone.port, "GET", `/n${i}`)),
        );
        replies.forEach((reply, i) => assert.equal(text(reply.body), `/n${i}`));
      }
      const { created, reused } = alone.pool.stats().totals;
      const { requests, retained, released } = alone.counts;
      assert.deepEqual(
        { created, reused, requests, retained, released },
        { created: 80, reused: 0, requests: 80, retained: 0, released: 80 },
      );
    } finally {
      await alone.close();
    }
  });

  test("CONNECT is refused with 405 and opens no upstream connection", async () => {
    const before = snapshot(proxy);
    const reply = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(
        proxy.port,
        "127.0.0.1",
        () => socket.write("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
      );
      let got = "";
      socket.on("data", (chunk) => got += chunk);
      socket.on("end", () => resolve(got));
      socket.on("error", reject);
    });
    assert.match(reply, /^HTTP\/1\.1 405 /);
    assert.deepEqual(delta(before, proxy), { requests: 1, refused: 1 });
  });
});

// ---------------------------------------------------------------------------
// In front of nginx, driven by wrk

/** nginx on a free port: `keepalive_timeout 1s`; `/close/` closes after 3 requests; `/chunked/` streams files chunked; `/files/` takes PUT. */
async function startNginx() {
  const program = findProgram("nginx", "nginx");
  const dir = serverDir("proxy-nginx");
  const www = path.join(dir, "www");
  fs.mkdirSync(path.join(www, "files"), { recursive: true });
  fs.writeFileSync(path.join(www, "big.bin"), pattern(300_001, 7));
  fs.writeFileSync(path.join(www, "small.txt"), "small, chunked\n".repeat(20));
  const config = (port: number): string =>
    `daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  default_type application/octet-stream;
  keepalive_timeout 1s;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:${port};
    root ${www};
    location / { return 200 "$uri\\n"; }
    location = /big.bin { }
    # sub_filter rewrites the body as it goes, so the length is unknown: chunked.
    location /chunked/ { alias ${www}/; sub_filter_types *; sub_filter "@@@@" "-"; }
    location /close/ { keepalive_requests 3; return 200 "$uri\\n"; }
    location /files/ { dav_methods PUT; client_max_body_size 10m; client_body_buffer_size 1m; }
  }
}
`;
  const server = await ServerProcess.start("nginx", {
    program,
    args: (port) => {
      fs.writeFileSync(path.join(dir, `nginx-${port}.conf`), config(port));
      return [
        "-p",
        dir,
        "-c",
        path.join(dir, `nginx-${port}.conf`),
        "-e",
        path.join(dir, "error.log"),
      ];
    },
  });
  return {
    address: { hostname: "127.0.0.1", port: server.port },
    version: programVersion(program, ["-v"]),
    big: pattern(300_001, 7),
    async close() {
      await server.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

// Without nginx or wrk (and not under CI=true, where that fails) the tests
// that need them are skipped with the command that installs them.
const nginxSkip = realServersSkipReason([{ program: "nginx", debianPackage: "nginx" }]);
const wrkSkip = nginxSkip ?? realServersSkipReason([{ program: "wrk", debianPackage: "wrk" }]);
const NGINX = { ...LONG, skip: nginxSkip ?? false };

interface WrkResult {
  requests: number;
  perSecond: number;
  /** Responses with a status of 400 or more. */
  non2xx3xx: number;
  socketErrors: { connect: number; read: number; write: number; timeout: number };
  output: string;
}

/** Runs wrk (one thread) and parses its summary. */
function runWrk(
  wrk: string,
  url: string,
  options: { connections: number; seconds: number; script?: string },
): Promise<WrkResult> {
  const args = ["-t1", `-c${options.connections}`, `-d${options.seconds}s`, "--latency"];
  if (options.script) args.push("-s", options.script);
  return new Promise((resolve, reject) => {
    const child = spawn(wrk, [...args, url], { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (chunk) => output += chunk);
    child.stderr.on("data", (chunk) => output += chunk);
    const killer = setTimeout(() => child.kill("SIGKILL"), (options.seconds + 20) * 1000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(killer);
      const requests = /(\d+) requests in/.exec(output);
      const perSecond = /Requests\/sec:\s+([\d.]+)/.exec(output);
      if (code !== 0 || !requests || !perSecond) {
        reject(new Error(`wrk exited with ${code}:\n${output}`));
        return;
      }
      const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/
        .exec(output);
      resolve({
        requests: Number(requests[1]),
        perSecond: Number(perSecond[1]),
        non2xx3xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(output)?.[1] ?? 0),
        socketErrors: {
          connect: Number(errors?.[1] ?? 0),
          read: Number(errors?.[2] ?? 0),
          write: Number(errors?.[3] ?? 0),
          timeout: Number(errors?.[4] ?? 0),
        },
        output,
      });
    });
  });
}

/**
 * A wrk script: bursts of `burst` requests, alternating a `Content-Length`
 * reply and a chunked one, then every connection pauses once for the next
 * of `pausesMs` before the next burst. A paused connection makes no request,
 * so the next `connections` calls of `delay()` pause each connection once.
 */
function burstScript(burst: number, pausesMs: number[], connections: number): string {
  return `local paths = { "/r", "/chunked/small.txt" }
local pauses = { ${pausesMs.join(", ")} }
local sent, calls, phase, pausing = 0, 0, 0, 0
function request()
  sent = sent + 1
  return wrk.format(nil, paths[sent % 2 + 1])
end
function delay()
  calls = calls + 1
  if calls % ${burst} == 0 then
    phase = phase + 1
    pausing = ${connections}
  end
  if pausing > 0 then
    pausing = pausing - 1
    return pauses[(phase - 1) % #pauses + 1]
  end
  return 0
end
`;
}

/**
 * What the proxy's upstream side can do without its client side: `callers`
 * loops of acquire, GET, read the reply, retain, for `seconds`.
 */
async function poolClientRate(address: TcpAddress, callers: number, seconds: number) {
  const pool = new ConnectionPool();
  const get = latin1Encode("GET /r HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  const end = Date.now() + seconds * 1000;
  let done = 0;
  await Promise.all(Array.from({ length: callers }, async () => {
    while (Date.now() < end) {
      const { connection } = await pool.acquire(address);
      await connection.write(get);
      const reader = new ResponseReader(connection);
      const reply = await reader.readHead("GET");
      for await (const _ of reader.body(reply));
      if (reader.reusable(reply)) pool.retain(connection);
      else pool.release(connection);
      done++;
    }
  }));
  await pool.close();
  return done / seconds;
}

describe("http proxy: in front of nginx with keepalive_timeout 1s", () => {
  let nginx: Awaited<ReturnType<typeof startNginx>>;
  let proxy: HttpProxy;

  before(async () => {
    for (const reason of new Set([nginxSkip, wrkSkip])) if (reason) console.log(`  ${reason}`);
    if (nginxSkip) return;
    nginx = await startNginx();
    proxy = await startProxy({ upstream: nginx.address });
    console.log(`  ${nginx.version}; proxy on ${runtime}`);
  });

  after(async () => {
    await proxy?.close();
    await nginx?.close();
  });

  test("bodies stream through both ways: Content-Length, chunked, HEAD", NGINX, async () => {
    const big = await request(proxy.port, "GET", "/big.bin");
    assert.equal(big.status, 200);
    assert.equal(big.headers["content-length"], String(nginx.big.length));
    assert.ok(sameBytes(big.body, nginx.big), "the Content-Length body differs");
    const chunkedBig = await request(proxy.port, "GET", "/chunked/big.bin");
    assert.equal(chunkedBig.headers["transfer-encoding"], "chunked");
    assert.ok(sameBytes(chunkedBig.body, nginx.big), "the chunked body differs");
    const head = await request(proxy.port, "HEAD", "/big.bin");
    assert.equal(head.headers["content-length"], String(nginx.big.length));
    assert.equal(head.body.length, 0);

    const upload = pattern(250_003, 11);
    assert.equal((await request(proxy.port, "PUT", "/files/a.bin", upload)).status, 201);
    assert.ok(sameBytes((await request(proxy.port, "GET", "/files/a.bin")).body, upload));
    assert.equal((await request(proxy.port, "PUT", "/files/b.bin", upload, true)).status, 201);
    assert.ok(sameBytes((await request(proxy.port, "GET", "/files/b.bin")).body, upload));
    assert.equal(proxy.counts.failed, 0);
    assert.equal(proxy.counts.released, 0, "every exchange ended clean: all retained");
  });

  test(
    "Connection: close from nginx (keepalive_requests 3) releases the connection",
    NGINX,
    async () => {
      await delay(1100); // let connections of earlier tests expire: this one counts its own
      const before = snapshot(proxy);
      for (let i = 1; i <= 9; i++) {
        const got = await request(proxy.port, "GET", `/close/${i}`);
        assert.equal(text(got.body), `/close/${i}\n`);
      }
      // Requests 3, 6 and 9 carried Connection: close.
      assert.deepEqual(delta(before, proxy), {
        requests: 9,
        retained: 6,
        released: 3,
        created: 3,
        reused: 6,
      });
    },
  );

  test(
    "wrk in bursts with pauses around nginx's 1 s: no 5xx, no socket error",
    { ...LONG, skip: wrkSkip ?? false },
    async () => {
      const wrk = findProgram("wrk", "wrk");
      const connections = 16;
      const pauses = process.env.PROXY_PAUSES?.split(",").map(Number) ??
        (SOAK ? [950, 980, 995, 1000, 1005, 1020, 1050] : [900, 996, 998, 1000, 1100]);
      const script = path.join(serverDir("proxy-wrk"), "bursts.lua");
      fs.writeFileSync(script, burstScript(2000, pauses, connections));
      const before = snapshot(proxy);
      const result = await runWrk(wrk, `http://127.0.0.1:${proxy.port}`, {
        connections,
        seconds: Number(process.env.PROXY_SECONDS ?? (SOAK ? 60 : 6)),
        script,
      });
      fs.rmSync(path.dirname(script), { recursive: true, force: true });
      const change = delta(before, proxy);
      console.log(
        `  ${runtime}: ${result.requests} requests through the proxy, ${change.created ?? 0} ` +
          `upstream connections opened, ${change.reused ?? 0} reuses, ${change.retried ?? 0} ` +
          `retried after the keep-alive race`,
      );
      assert.ok(result.requests > 2000, result.output);
      assert.equal(result.non2xx3xx, 0, result.output);
      assert.deepEqual(result.socketErrors, { connect: 0, read: 0, write: 0, timeout: 0 });
      assert.equal(proxy.counts.failed, 0);
    },
  );

  test(
    "requests/s with the pool and with a connection per request (PROXY_BENCH=1)",
    { timeout: 120_000, skip: BENCH ? wrkSkip ?? false : "set PROXY_BENCH=1 to measure" },
    async () => {
      const wrk = findProgram("wrk", "wrk");
      const bare = http.createServer((_req, res) => {
        res.writeHead(200, { "content-type": "text/plain", "content-length": "3" });
        res.end("/r\n");
      });
      await new Promise<void>((resolve) => bare.listen(0, "127.0.0.1", resolve));
      const noReuse = await startProxy({ upstream: nginx.address, reuse: false });
      const targets: [string, number][] = [
        ["nginx alone", nginx.address.port],
        [`bare node:http server (${runtime})`, (bare.address() as net.AddressInfo).port],
        ["proxy, pooled upstream connections", proxy.port],
        ["proxy, a new upstream connection per request", noReuse.port],
      ];
      try {
        for (const [name, port] of targets) {
          await delay(1200);
          const result = await runWrk(wrk, `http://127.0.0.1:${port}/r`, {
            connections: 16,
            seconds: 3,
          });
          console.log(`  ${runtime}: ${name}: ${Math.round(result.perSecond)} requests/s`);
        }
        await delay(1200);
        const alone = await poolClientRate(nginx.address, 16, 3);
        console.log(
          `  ${runtime}: the proxy's upstream side alone: ${Math.round(alone)} requests/s`,
        );
      } finally {
        await noReuse.close();
        bare.closeAllConnections?.();
        await new Promise<void>((resolve) => bare.close(() => resolve()));
      }
    },
  );
});
