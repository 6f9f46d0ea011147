// Runs a fixture script under the same runtime as the suite, so tests can
// assert what only a whole process shows (that nothing keeps it alive).
import { spawn } from "node:child_process";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { runtime } from "./_runtime.ts";

export interface FixtureResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Milliseconds from spawn to exit. */
  elapsed: number;
  /** True if the fixture had to be killed after `timeoutMs`. */
  killed: boolean;
}

/** Runs `tests/_fixtures/<name>` (`.ts`, or `.js` in the Node build) with `args`. */
export function runFixture(name: string, args: string[], timeoutMs = 5000): Promise<FixtureResult> {
  return runScript(`./_fixtures/${name}`, args, timeoutMs);
}

/**
 * Runs a script given by its path from `tests/` without extension, under the
 * runtime running the suite: the `.ts` source, or the `.js` build where this
 * file was compiled (Node runs the sources too where it strips types).
 */
export function runScript(
  relative: string,
  args: string[],
  timeoutMs = 5000,
): Promise<FixtureResult> {
  const ext = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
  const file = fileURLToPath(new URL(`${relative}${ext}`, import.meta.url));
  const argv = runtime === "deno"
    ? ["run", "--allow-all", file, ...args]
    : runtime === "bun"
    ? ["run", file, ...args]
    : [file, ...args];
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, argv, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    let killed = false;
    child.stdout.on("data", (d) => stdout += d);
    child.stderr.on("data", (d) => stderr += d);
    const timer = setTimeout(() => {
      killed = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, elapsed: Date.now() - started, killed });
    });
  });
}
