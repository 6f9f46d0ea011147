// Child processes for the benchmarks that need more sockets or a cleaner
// heap than one process gives: the many-port echo upstreams (always Node),
// and a part of a benchmark run in a fresh process of the same runtime.
import { spawn } from "node:child_process";
import process from "node:process";
import { fileURLToPath } from "node:url";

export interface Upstreams {
  readonly ports: number[];
  close(): Promise<void>;
}

/**
 * Starts bench/_upstreams.mjs under Node with `count` listening ports and
 * `options` (such as `--churn=...`); `onLine` gets each line it prints
 * after the first (the ports).
 */
export async function startUpstreams(
  count: number,
  options: string[] = [],
  onLine: (line: string) => void = () => {},
): Promise<Upstreams> {
  const script = fileURLToPath(new URL("./_upstreams.mjs", import.meta.url));
  // Under Node, this very Node; under Deno and Bun, the `node` on PATH.
  const node = "Deno" in globalThis || "Bun" in globalThis ? "node" : process.execPath;
  const child = spawn(node, [script, String(count), ...options], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const ports = await new Promise<number[]>((resolve, reject) => {
    const fail = (why: string): void => {
      clearTimeout(timer);
      child.kill();
      reject(new Error(`Cannot start ${node} ${script}: ${why}`));
    };
    const timer = setTimeout(() => fail("no ports within 30 s"), 30_000);
    const onExit = (code: number | null): void => fail(`it exited with ${code}`);
    child.once("error", (error) => fail(error.message));
    child.once("exit", onExit);
    let rest = "";
    let first = true;
    child.stdout!.setEncoding("utf8");
    child.stdout!.on("data", (text: string) => {
      const lines = (rest + text).split("\n");
      rest = lines.pop()!;
      for (const line of lines) {
        if (!first) {
          onLine(line);
          continue;
        }
        first = false;
        clearTimeout(timer);
        child.off("exit", onExit);
        resolve((JSON.parse(line) as { ports: number[] }).ports);
      }
    });
  });
  return {
    ports,
    async close() {
      child.stdin!.end(); // the upstreams exit when their stdin closes
      const timer = setTimeout(() => child.kill(), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/**
 * Runs `script` in a new process of this runtime, with garbage collection
 * exposed (`globalThis.gc`, or `Bun.gc` under Bun), and resolves with the
 * last line it printed that starts with `prefix`, minus the prefix. Its
 * other output passes through.
 */
export async function runPart(
  script: string,
  args: string[],
  prefix: string,
  timeoutMs: number,
  env: Record<string, string> = {},
): Promise<string> {
  const runtimeArgs = "Deno" in globalThis
    ? ["run", "--allow-all", "--v8-flags=--expose-gc", script]
    : "Bun" in globalThis
    ? [script]
    : ["--expose-gc", script];
  const child = spawn(process.execPath, [...runtimeArgs, ...args], {
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, ...env },
  });
  let output = "";
  child.stdout!.setEncoding("utf8");
  child.stdout!.on("data", (text: string) => {
    output += text;
    process.stdout.write(text.split("\n").filter((line) => !line.startsWith(prefix)).join("\n"));
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  const code = await new Promise<number | null>((resolve) => child.once("close", resolve));
  clearTimeout(timer);
  const line = output.split("\n").filter((each) => each.startsWith(prefix)).pop();
  if (code !== 0 || line === undefined) {
    throw new Error(`${script} ${args.join(" ")} exited with ${code} and no result`);
  }
  return line.slice(prefix.length);
}

/** Collects garbage if the runtime lets this process do so; true if it did. */
export function collectGarbage(): boolean {
  const host = globalThis as { gc?: () => void; Bun?: { gc(force: boolean): void } };
  if (host.Bun !== undefined) {
    host.Bun.gc(true);
    return true;
  }
  if (typeof host.gc === "function") {
    host.gc();
    return true;
  }
  return false;
}
