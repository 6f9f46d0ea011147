// undici's `Pool` (the npm package, a development dependency), loaded so
// that each runtime runs the real thing: Bun answers `import "undici"`
// with a built-in stub whose `Pool.request` does nothing, so under Bun the
// package's own file is imported by path.
import * as fs from "node:fs";
import * as path from "node:path";
import process from "node:process";
import { fileURLToPath, pathToFileURL } from "node:url";
import type * as Undici from "undici";
import { BODY } from "../_nginx.ts";
import type { HttpClient } from "./client.ts";

export type UndiciModule = typeof Undici;

/** The undici package directory: the nearest node_modules/undici above this file. */
function packageDir(): string | undefined {
  for (let dir = path.dirname(fileURLToPath(import.meta.url));; dir = path.dirname(dir)) {
    const candidate = path.join(dir, "node_modules", "undici");
    if (fs.existsSync(path.join(candidate, "package.json"))) return candidate;
    if (path.dirname(dir) === dir) return undefined;
  }
}

/**
 * Loads undici, or resolves with why it cannot run here (such as undici 8
 * on a Node older than its `engines` range).
 */
export async function loadUndici(): Promise<UndiciModule | string> {
  try {
    if ("Bun" in globalThis) {
      const dir = packageDir();
      if (dir === undefined) return "the undici package is not installed (npm ci)";
      return await import(pathToFileURL(path.join(dir, "index.js")).href) as UndiciModule;
    }
    return await import("undici");
  } catch (error) {
    const engines = readEngines();
    return `undici does not load here${engines ? ` (it needs Node ${engines})` : ""}: ` +
      `${error instanceof Error ? error.message.slice(0, 100) : String(error)}`;
  }
}

function readEngines(): string | undefined {
  const dir = packageDir();
  if (dir === undefined || "Deno" in globalThis || "Bun" in globalThis) return undefined;
  try {
    const json = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8"));
    return `${json.engines?.node} and this is ${process.version}`;
  } catch {
    return undefined;
  }
}

export interface UndiciClientOptions {
  /** Client-side idle limit (undici's `keepAliveTimeout`); undici's default (4 s) if unset. */
  keepAliveTimeout?: number;
}

/** An undici `Pool` with `connections` connections to 127.0.0.1:`port`. */
export function undiciClient(
  undici: UndiciModule,
  port: number,
  connections: number,
  options: UndiciClientOptions = {},
): HttpClient {
  const pool = new undici.Pool(`http://127.0.0.1:${port}`, {
    connections,
    ...(options.keepAliveTimeout === undefined ? {} : {
      keepAliveTimeout: options.keepAliveTimeout,
      keepAliveMaxTimeout: Math.max(options.keepAliveTimeout, 600_000),
    }),
  });
  return {
    async get() {
      const { statusCode, body } = await pool.request({ path: "/", method: "GET" });
      const length = (await body.arrayBuffer()).byteLength;
      if (statusCode !== 200) throw new Error(`Expected status 200, got ${statusCode}`);
      if (length !== BODY.length) {
        throw new Error(`Expected ${BODY.length} body bytes, got ${length}`);
      }
    },
    close: () => pool.close(),
  };
}
