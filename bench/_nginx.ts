// nginx as the HTTP/1.1 upstream of the peer benchmarks, started by the
// benchmark itself: one foreground process (no master, one worker) on a
// free port of 127.0.0.1, with a generated config in a temporary directory,
// stopped by its pid. `/` answers a small static 200 with a Content-Length;
// `/status` is nginx's stub_status, which counts accepted connections.
import { type ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import process from "node:process";

/** The body of every response to `/`. */
export const BODY = "hello from nginx\n";

export interface Nginx {
  readonly port: number;
  readonly pid: number;
  /** Such as "nginx/1.22.1". */
  readonly version: string;
  /** Connections nginx has accepted since it started (stub_status; its own queries excluded). */
  accepted(): Promise<number>;
  /** SIGTERM to its pid, SIGKILL after 3 s; removes its directory. */
  stop(): Promise<void>;
}

export interface NginxOptions {
  /** nginx's `keepalive_timeout`, such as "1s" or "300s". */
  keepaliveTimeout: string;
}

const started = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of started) {
    try {
      process.kill(child.pid!, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
});

/** Where nginx is, or an error that says how to install it. */
function findNginx(): string {
  const dirs = [...(process.env.PATH ?? "").split(":"), "/usr/sbin", "/usr/local/sbin"];
  for (const dir of dirs) {
    const candidate = path.join(dir, "nginx");
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // Not here.
    }
  }
  throw new Error(
    "nginx is not installed; the peer benchmarks need it " +
      "(`apt-get install --no-install-recommends nginx`)",
  );
}

function config(port: number, dir: string, options: NginxOptions): string {
  return `daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  default_type text/plain;
  keepalive_timeout ${options.keepaliveTimeout};
  keepalive_requests 100000000;
  server {
    listen 127.0.0.1:${port} backlog=4096;
    location = /status { stub_status; }
    location / { return 200 ${JSON.stringify(BODY).replace("\n", "\\n")}; }
  }
}
`;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

/** Connections this module opened to an nginx, by port: not the clients'. */
const ownConnections = new Map<number, number>();

/** One HTTP/1.0 request on a connection of its own; resolves with the whole response. */
function fetchOnce(port: number, target: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    let text = "";
    socket.setEncoding("utf8");
    socket.setTimeout(5000, () => socket.destroy(new Error(`GET ${target}: no answer in 5 s`)));
    socket.on("connect", () => {
      ownConnections.set(port, (ownConnections.get(port) ?? 0) + 1);
      socket.write(`GET ${target} HTTP/1.0\r\n\r\n`);
    });
    socket.on("data", (chunk: string) => text += chunk);
    socket.on("error", reject);
    socket.on("close", () => resolve(text));
  });
}

/** Starts nginx and resolves once it answers. */
export async function startNginx(options: NginxOptions): Promise<Nginx> {
  const program = findNginx();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "upstream-pool-bench-nginx-"));
  const port = await freePort();
  const configPath = path.join(dir, "nginx.conf");
  fs.writeFileSync(configPath, config(port, dir, options));
  const child = spawn(program, ["-p", dir, "-c", configPath, "-e", path.join(dir, "error.log")], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  started.add(child);
  let stderr = "";
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (text: string) => stderr = (stderr + text).slice(-2000));
  const exited = new Promise<void>((resolve) => {
    child.once("exit", () => {
      started.delete(child);
      resolve();
    });
    child.once("error", (error) => {
      stderr += error.message;
      started.delete(child);
      resolve();
    });
  });
  let gone = false;
  void exited.then(() => gone = true);
  const stop = async (): Promise<void> => {
    if (!gone && child.pid !== undefined) {
      process.kill(child.pid, "SIGTERM");
      const timer = setTimeout(() => {
        if (!gone) process.kill(child.pid!, "SIGKILL");
      }, 3000);
      await exited;
      clearTimeout(timer);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 10_000;
  for (;;) {
    const status = await fetchOnce(port, "/status").catch(() => "");
    if (status.startsWith("HTTP/1.1 200")) break;
    if (gone || Date.now() > deadline) {
      await stop();
      throw new Error(`nginx did not start on 127.0.0.1:${port}: ${stderr.trim()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const version = /nginx\/[\d.]+/.exec(
    await fetchOnce(port, "/status").then((text) => text.slice(0, 400)),
  )?.[0] ?? "nginx";
  return {
    port,
    pid: child.pid!,
    version,
    async accepted() {
      const text = await fetchOnce(port, "/status");
      // "server accepts handled requests\n A H R": A counts the status queries too.
      const counts = /accepts handled requests\s+(\d+)/.exec(text);
      if (counts === null) throw new Error(`Unexpected stub_status answer: ${text.slice(0, 200)}`);
      return Number(counts[1]) - ownConnections.get(port)!;
    },
    stop,
  };
}
