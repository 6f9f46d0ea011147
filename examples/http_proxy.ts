/**
 * A small HTTP/1.1 reverse proxy whose upstream connections come from the
 * pool: the job proxy.py's `UpstreamConnectionPool` was written for.
 *
 * Clients talk to a `node:http` server (the same code on Deno, Bun and
 * Node); each request goes to one upstream over a pooled keep-alive
 * connection, its body streamed through (`Content-Length`, or chunked,
 * re-chunked), and the reply streamed back (`Content-Length`, chunked or
 * close-delimited). The rules that keep a pooled connection safe:
 *
 * - **Retain** only after a reply read to its exact end, with nothing after
 *   it, from an upstream that did not say `Connection: close`.
 * - **Release** everything else: `Connection: close`, a body that ends at
 *   EOF, bytes past the end, a parse error, an unrequested `101 Switching
 *   Protocols`, a client that went away mid-reply, any error.
 * - **`CONNECT` is refused** with 405: this proxy never tunnels, so no
 *   connection ever carries someone's opaque stream (proxy.py's issue #748).
 *   `Upgrade` is a hop-by-hop header and is not forwarded.
 * - **One retry**, on a new connection, for a `GET`, `HEAD` or `OPTIONS`
 *   without a body that failed on a *reused* connection before any reply
 *   byte because the connection ended: the upstream closed it for idleness
 *   just as the request went out (Go's `http.Transport` rule). That is
 *   `pool.exchange(..., { idempotent })`'s rule: nothing else is ever sent
 *   twice.
 *
 * Run it in front of any HTTP/1.1 server:
 *
 * ```sh
 * deno run --allow-net examples/http_proxy.ts 127.0.0.1:8080 --port 8000
 * bun examples/http_proxy.ts 127.0.0.1:8080 --port 8000
 * node examples/http_proxy.ts 127.0.0.1:8080 --port 8000   # Node 24+
 * npm run build:npm && node npm/esm/examples/http_proxy.js 127.0.0.1:8080   # Node 20, 22
 * ```
 *
 * `--no-reuse` opens a new upstream connection per request instead (to
 * compare). `tests/http_proxy_test.ts` drives it with `wrk` against nginx.
 *
 * Left out to stay small: a timeout for a slow upstream, HTTPS upstreams
 * (the pool does TLS: an address with `tls` would do), trailers (read and
 * dropped), several upstreams, and sending a request body while its reply
 * already arrives (the body is sent first, then the reply read).
 *
 * @module
 */
import * as http from "node:http";
import type * as net from "node:net";
import * as path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { ConnectionPool, PoolError, type TcpAddress, type UpstreamConnection } from "../mod.ts";
import {
  HttpParseError,
  latin1Encode,
  ReplyCutShort,
  type ResponseHead,
  ResponseReader,
} from "./_http1.ts";

/** Options of {@linkcode startProxy}. */
export interface ProxyOptions {
  /** Where requests go. */
  upstream: TcpAddress;
  /** Port to listen on, on 127.0.0.1 unless `hostname` says otherwise; default 0 (any free one). */
  port?: number;
  hostname?: string;
  /** false: a new upstream connection per request, closed after it (the comparison). */
  reuse?: boolean;
}

/** What the proxy did, for tests and logs. */
export interface ProxyCounts {
  /** Requests received, `CONNECT` included. */
  requests: number;
  /** Requests sent again on a new connection after the keep-alive race (see the module doc). */
  retried: number;
  /** Requests answered 502/504, or whose reply was cut off, because of the upstream. */
  failed: number;
  /** `CONNECT` requests refused with 405. */
  refused: number;
  /** Upstream connections given back for reuse / closed after their exchange. */
  retained: number;
  released: number;
}

/** A running proxy. */
export interface HttpProxy {
  readonly port: number;
  readonly counts: ProxyCounts;
  /** The pool of upstream connections (its `stats()` say how many were opened and reused). */
  readonly pool: ConnectionPool;
  /** Stops listening, drops client connections and closes the pools. */
  close(): Promise<void>;
}

/** Request headers that concern one hop only (RFC 9110 §7.6.1), never forwarded. */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  // node:http already answered `100-continue` to the client and hands over
  // the body; asking the upstream too would only cost a round trip.
  "expect",
]);
/** Methods that may be sent twice (only without a body: see `handle`). */
const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS"]);
/** What `Keep-Alive: timeout=N` loses before the pool may rely on it (see `keepAliveDeadline`). */
const KEEP_ALIVE_MARGIN_MS = 500;

/**
 * Starts the proxy and resolves once it listens.
 *
 * @example
 * ```ts ignore
 * const proxy = await startProxy({ upstream: { hostname: "127.0.0.1", port: 8080 } });
 * console.log(`http://127.0.0.1:${proxy.port}/`, proxy.pool.stats().totals);
 * await proxy.close();
 * ```
 */
export async function startProxy(options: ProxyOptions): Promise<HttpProxy> {
  const { upstream, reuse = true } = options;
  const counts: ProxyCounts = {
    requests: 0,
    retried: 0,
    failed: 0,
    refused: 0,
    retained: 0,
    released: 0,
  };
  const pool = new ConnectionPool({
    onEvent: (event) => {
      if (event.type === "retry") counts.retried++;
    },
  });

  /**
   * Runs `exchange` on a pooled connection through `pool.exchange`: retained
   * (until the reply's `Keep-Alive: timeout` less a margin) if `exchange`
   * says it is reusable, released if not or if it threw. `pool.exchange`
   * sends an idempotent request once more, on a new connection, when that is
   * safe (see the module doc).
   */
  async function withConnection(
    idempotent: boolean,
    exchange: (connection: UpstreamConnection, reader: ResponseReader) => Promise<Reusable>,
  ): Promise<void> {
    await pool.exchange(upstream, async (connection) => {
      const reader = new ResponseReader(connection);
      let reply: Reusable;
      try {
        reply = await exchange(connection, reader);
      } catch (error) {
        counts.released++; // pool.exchange releases it (and may replay the request)
        throw error;
      }
      // retain() still closes it if bytes arrived meanwhile or it failed.
      if (reply.reusable && reuse && pool.retain(connection, { idleTimeout: reply.idleTimeout })) {
        counts.retained++;
        return;
      }
      if (reply.reusable && reuse) counts.released++; // retain() closed it
      else {
        pool.release(connection);
        counts.released++;
      }
    }, { idempotent });
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    counts.requests++;
    const method = req.method ?? "GET";
    if (method === "CONNECT") return refuseConnect(res, counts);
    const body = requestBodyFraming(req);
    const head = latin1Encode(requestHead(req, body, upstream));
    const client = new ClientSink(res);
    try {
      await withConnection(
        IDEMPOTENT.has(method) && body === "none",
        async (connection, reader) => {
          // The head goes out alone (one write), then the body as it arrives.
          // Replies are read after the whole request is sent: an upstream that
          // replies early and closes makes the rest fail, which is a 502.
          await connection.write(head);
          if (body !== "none") await sendBody(req, connection, body === "chunked");
          const reply = await reader.readHead(method);
          client.start(reply);
          // Each part is written when the next arrives, and the last with
          // end(): a reply that fits one read leaves in one write.
          let last: Uint8Array | undefined;
          for await (const part of reader.body(reply)) {
            if (last !== undefined) await client.write(last);
            last = part;
          }
          client.end(last);
          const idleTimeout = keepAliveDeadline(reply);
          return { reusable: reader.reusable(reply) && idleTimeout > 0, idleTimeout };
        },
      );
    } catch (error) {
      if (error instanceof ClientGone || res.destroyed) return;
      counts.failed++;
      client.fail(error);
    }
  }

  const server = http.createServer((req, res) => void handle(req, res));
  server.on("connect", (_req: http.IncomingMessage, socket: net.Socket) => {
    counts.requests++;
    counts.refused++;
    socket.on("error", () => {});
    socket.end(
      "HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH\r\n" +
        "Content-Length: 0\r\nConnection: close\r\n\r\n",
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, options.hostname ?? "127.0.0.1", () => resolve());
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    counts,
    pool,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections?.();
      await closed;
      await pool.close();
    },
  };
}

/** A request body is absent, `Content-Length`-framed, or chunked (node:http de-chunked it). */
type RequestBody = "none" | "length" | "chunked";

function requestBodyFraming(req: http.IncomingMessage): RequestBody {
  if (req.headers["transfer-encoding"] !== undefined) return "chunked";
  const length = req.headers["content-length"];
  return length === undefined || length === "0" ? "none" : "length";
}

/** The request line and headers for the upstream, hop-by-hop headers left out. */
function requestHead(req: http.IncomingMessage, body: RequestBody, upstream: TcpAddress): string {
  const dropped = connectionOptions(req.headers.connection);
  let head = `${req.method} ${req.url} HTTP/1.1\r\n`;
  let host = false;
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (HOP_BY_HOP.has(name) || dropped.has(name)) continue;
    if (name === "host") host = true;
    head += `${raw[i]}: ${raw[i + 1]}\r\n`;
  }
  if (!host) head += `Host: ${upstream.hostname}:${upstream.port}\r\n`;
  if (body === "chunked") head += "Transfer-Encoding: chunked\r\n";
  return head + "\r\n";
}

/** Header names listed in a `Connection` header: hop-by-hop too. */
function connectionOptions(value: string | string[] | undefined): Set<string> {
  const options = new Set<string>();
  for (const line of [value ?? []].flat()) {
    for (const option of line.split(",")) options.add(option.trim().toLowerCase());
  }
  return options;
}

/** Streams the client's request body to the upstream, re-chunking it if it came chunked. */
async function sendBody(
  req: http.IncomingMessage,
  connection: UpstreamConnection,
  chunked: boolean,
): Promise<void> {
  for await (const chunk of req as AsyncIterable<Uint8Array>) {
    if (chunk.length === 0) continue;
    if (chunked) await connection.write(latin1Encode(`${chunk.length.toString(16)}\r\n`));
    await connection.write(chunk);
    if (chunked) await connection.write(CRLF);
  }
  if (chunked) await connection.write(LAST_CHUNK);
}

const CRLF = latin1Encode("\r\n");
const LAST_CHUNK = latin1Encode("0\r\n\r\n");

/**
 * How long the connection may stay idle by the upstream's own word
 * (`Keep-Alive: timeout=N`, less a margin for the round trip and timer
 * slack, as undici and Node's Agent do); `Infinity` when it said nothing.
 * At 0 or less the connection is not kept. With the per-connection idle
 * deadline (`pool.retain(connection, { idleTimeout })`), the positive value
 * is what to pass.
 */
function keepAliveDeadline(reply: ResponseHead): number {
  if (reply.keepAliveTimeoutMs === undefined) return Infinity;
  return reply.keepAliveTimeoutMs - KEEP_ALIVE_MARGIN_MS;
}

/** Whether a reply left its connection reusable, and for how long it may then stay idle. */
interface Reusable {
  reusable: boolean;
  idleTimeout: number;
}

/** The client went away mid-reply: the upstream reply cannot be finished, so its connection goes. */
class ClientGone extends Error {
  override name = "ClientGone";
}

/** The client side of one exchange: the reply head, the body with backpressure, errors. */
class ClientSink {
  #res: http.ServerResponse;

  constructor(res: http.ServerResponse) {
    this.#res = res;
  }

  /** Sends the status and the end-to-end headers. */
  start(reply: ResponseHead): void {
    const headers: Record<string, string | string[]> = {};
    const dropped = new Set(HOP_BY_HOP);
    for (const [name, value] of reply.headers) {
      if (name.toLowerCase() === "connection") {
        for (const option of connectionOptions(value)) dropped.add(option);
      }
    }
    for (const [name, value] of reply.headers) {
      const key = name.toLowerCase();
      // The client-side length is node:http's to choose when the upstream's
      // body was not length-framed (it re-chunks); HEAD and 304 keep theirs.
      if (
        dropped.has(key) || (key === "content-length" && reply.framing !== "length" &&
          reply.framing !== "none")
      ) continue;
      const previous = headers[key];
      headers[key] = previous === undefined ? value : [previous, value].flat();
    }
    this.#res.writeHead(reply.status, reply.reason, headers);
  }

  /** Writes one body part; waits while the client's socket is full. */
  async write(part: Uint8Array): Promise<void> {
    const res = this.#res;
    if (res.destroyed) throw new ClientGone("the client closed its connection");
    if (res.write(part)) return;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        res.off("drain", done);
        res.off("close", done);
        resolve();
      };
      res.on("drain", done);
      res.on("close", done);
    });
    if (res.destroyed) throw new ClientGone("the client closed its connection");
  }

  /** Ends the reply, with its last part if any. */
  end(last: Uint8Array | undefined): void {
    if (last === undefined) this.#res.end();
    else this.#res.end(last);
  }

  /** Answers 502 (504 for timeouts) if nothing was sent yet; otherwise cuts the reply off. */
  fail(error: unknown): void {
    const res = this.#res;
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const timeout = error instanceof PoolError &&
      (error.code === "CONNECT_TIMEOUT" || error.code === "ACQUIRE_TIMEOUT");
    const text = `${timeout ? "504 Gateway Timeout" : "502 Bad Gateway"}: ${describe(error)}\n`;
    res.writeHead(timeout ? 504 : 502, { "content-type": "text/plain", connection: "close" });
    res.end(text);
  }
}

function refuseConnect(res: http.ServerResponse, counts: ProxyCounts): void {
  counts.refused++;
  res.writeHead(405, {
    allow: "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH",
    connection: "close",
  });
  res.end();
}

function describe(error: unknown): string {
  if (error instanceof PoolError) return `${error.code}: ${error.message}`;
  if (error instanceof HttpParseError || error instanceof ReplyCutShort) return error.message;
  return "upstream error";
}

// Run as a script: `http_proxy.ts HOST:PORT [--port N] [--no-reuse]`.
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const upstreamPattern = /^\[?([^\]]+?)\]?:(\d+)$/;
  const target = upstreamPattern.exec(args.find((arg) => upstreamPattern.test(arg)) ?? "");
  const portFlag = args.indexOf("--port");
  if (target === null) {
    console.error("usage: http_proxy.ts UPSTREAM_HOST:PORT [--port N] [--no-reuse]");
    process.exit(2);
  }
  const proxy = await startProxy({
    upstream: { hostname: target[1]!, port: Number(target[2]) },
    port: portFlag === -1 ? 8000 : Number(args[portFlag + 1]),
    reuse: !args.includes("--no-reuse"),
  });
  console.log(`proxying http://127.0.0.1:${proxy.port}/ to ${target[0]}`);
  const stop = async (): Promise<void> => {
    const { created, reused } = proxy.pool.stats().totals;
    await proxy.close();
    console.log({ ...proxy.counts, upstreamConnectionsOpened: created, reused });
    process.exit(0);
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
}
