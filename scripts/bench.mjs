// Runs bench/overhead.ts under Deno, Bun and Node, one after another (`npm run bench`).
//
// Deno and Bun run the TypeScript source; Node runs the npm build, so the
// build (scripts/build_npm.mjs, which compiles bench/ next to tests/) comes
// right before it. Each benchmark prints its own table; the summary at the
// end repeats the pool's overhead and the settle() cost of every runtime.
// Arguments go to every benchmark: `npm run bench -- --server=process`.
// The exit code is 1 if any step failed.
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const stepTimeoutMs = 90_000;
const benchArgs = process.argv.slice(2);
const env = { ...process.env, DENO_NO_UPDATE_CHECK: "1", DO_NOT_TRACK: "1" };
if (!process.stdout.isTTY && env.FORCE_COLOR === undefined) env.NO_COLOR = "1";

/** The project's pinned tool if installed, else whatever PATH has. */
function bin(name) {
  const local = path.join(root, "node_modules", ".bin", name);
  return fs.existsSync(local) ? local : name;
}

/** Runs a command from the repository root, echoing its output; resolves with code and output. */
function run(command, args) {
  const name = command.startsWith(root) ? path.relative(root, command) : path.basename(command);
  console.log(`\n━━ ${[name, ...args].join(" ")}`);
  return new Promise((resolve) => {
    const child = spawn(command, args, {
      cwd: root,
      env,
      stdio: ["ignore", "pipe", "pipe"],
      detached: true, // its own process group: a timeout also ends the echo server it started
    });
    let output = "";
    for (const [stream, sink] of [[child.stdout, process.stdout], [child.stderr, process.stderr]]) {
      stream.setEncoding("utf8");
      stream.on("data", (chunk) => {
        sink.write(chunk);
        output += chunk;
      });
    }
    let forceKill;
    const timer = setTimeout(() => {
      console.error(`\n!! ${name} timed out after ${stepTimeoutMs / 1000}s: stopping it`);
      killGroup(child, "SIGTERM");
      forceKill = setTimeout(() => killGroup(child, "SIGKILL"), 5000);
    }, stepTimeoutMs);
    let finished = false;
    const finish = (code) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      clearTimeout(forceKill);
      resolve({ code, output });
    };
    child.on("error", (error) => {
      console.error(`!! cannot start ${command}: ${error.message}`);
      finish(-1);
    });
    child.on("close", (code, signal) => finish(code ?? signal));
  });
}

function killGroup(child, signal) {
  try {
    process.kill(-child.pid, signal);
  } catch {
    // Already gone.
  }
}

const started = performance.now();
const summary = [];
let failed = false;

async function bench(runtime, command, args) {
  const { code, output } = await run(command, [...args, ...benchArgs]);
  const keyLines = output.split("\n").filter((line) =>
    line.startsWith("pool overhead per round trip:") || line.startsWith("settle() cost per reuse:")
  );
  if (code !== 0 || keyLines.length !== 2) {
    failed = true;
    summary.push(`${runtime}: FAILED (exit ${code})`);
  } else {
    summary.push(`${runtime}:`, ...keyLines.map((line) => `  ${line}`));
  }
}

await bench("Deno", bin("deno"), ["run", "--allow-all", "bench/overhead.ts"]);
await bench("Bun", bin("bun"), ["bench/overhead.ts"]);
const build = await run(process.execPath, ["scripts/build_npm.mjs"]);
if (build.code === 0) {
  await bench("Node", process.execPath, ["npm/esm/bench/overhead.js"]);
} else {
  failed = true;
  summary.push(`Node: not run, the npm build failed (exit ${build.code})`);
}

console.log(`\n━━ summary (${((performance.now() - started) / 1000).toFixed(1)}s)`);
for (const line of summary) console.log(line);
process.exitCode = failed ? 1 : 0;
