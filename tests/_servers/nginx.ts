// nginx as an HTTP/1.1 keep-alive upstream: `keepalive_timeout 1s`, and a
// reply body that names the request, so a reply read by the wrong request
// shows.
import * as fs from "node:fs";
import * as path from "node:path";
import { ReplyMismatch, type ReplyReader } from "./reply_reader.ts";
import { type RealServer, startRealServer } from "./real_server.ts";

/** Starts nginx in the foreground, one process, everything in its own directory. */
export function startNginx(): Promise<RealServer> {
  return startRealServer({
    name: "nginx",
    debianPackage: "nginx",
    program: "nginx",
    versionArgs: ["-v"],
    args: (port, dir) => {
      const config = path.join(dir, "nginx.conf");
      fs.writeFileSync(config, nginxConfig(port, dir));
      return ["-p", dir, "-c", config, "-e", path.join(dir, "error.log")];
    },
    // A timer per connection: closed 1 s after its last response, to the millisecond.
    idleClose: { min: 1000, max: 1000 },
    exchange: httpGet,
  });
}

/**
 * An nginx configuration for a foreground server on 127.0.0.1:`port` that
 * keeps its files in `dir` and closes idle connections after 1 s; `server`
 * is the rest of the server block (by default every path answers its URI).
 */
export function nginxConfig(
  port: number,
  dir: string,
  server = 'location / { return 200 "$uri\\n"; }',
  defaultType = "text/plain",
): string {
  return `daemon off;
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
  default_type ${defaultType};
  keepalive_timeout 1s;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:${port};
    ${server}
  }
}
`;
}

/** `GET /r<id>` with keep-alive; the reply must be 200 with body `/r<id>\n` and keep the connection. */
async function httpGet(reader: ReplyReader, id: number): Promise<void> {
  await reader.send(`GET /r${id} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
  await reader.expect("HTTP/1.1 200 OK\r\n");
  const headers = new Map<string, string>();
  for (const line of (await reader.until("\r\n\r\n")).split("\r\n")) {
    const colon = line.indexOf(":");
    headers.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
  }
  const body = await reader.take(Number(headers.get("content-length")));
  if (body !== `/r${id}\n`) throw new ReplyMismatch(`/r${id}\n`, body);
  if (headers.get("connection") !== "keep-alive") {
    throw new ReplyMismatch("Connection: keep-alive", `Connection: ${headers.get("connection")}`);
  }
  reader.finish();
}
