// Runs the benchmarks in bench/ under Deno, Bun and Node (`npm run bench`)
// and writes BENCHMARKS.md with the chart bench/results/ratios.svg.
//
// Deno and Bun run the TypeScript source; Node runs the npm build, so the
// build (scripts/build_npm.mjs, which compiles bench/ next to tests/) comes
// first. Benchmarks run one after another, each on the three runtimes in
// turn; each prints its own table and one `@@bench-result {json}` line,
// which is collected here.
//
//   npm run bench                    every benchmark; writes BENCHMARKS.md,
//                                    bench/results/ratios.svg and results.json
//   npm run bench -- reuse scale     only those (by file name in bench/)
//   npm run bench -- --quick         fewer rounds and samples: a smoke run
//   npm run bench -- --out=DIR       write this run's report to DIR instead
//   npm run bench -- --render        rewrite BENCHMARKS.md and the chart from
//                                    bench/results/results.json (the last full
//                                    run) after editing bench/analysis.md
//
// A partial or quick run writes nothing unless --out is given, so the
// committed report always comes from a full run. The exit code is 1 if any
// step failed.
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { machineInfo, renderMarkdown, renderSvg } from "./_bench_report.mjs";

const root = fileURLToPath(new URL("..", import.meta.url));
const benchmarks = ["overhead", "reuse", "bookkeeping", "scale", "detection", "contention"];
const stepTimeoutMs = 180_000;
const resultPrefix = "@@bench-result ";
const env = { ...process.env, DENO_NO_UPDATE_CHECK: "1", DO_NOT_TRACK: "1" };
if (!process.stdout.isTTY && env.FORCE_COLOR === undefined) env.NO_COLOR = "1";

const args = process.argv.slice(2);
const quick = args.includes("--quick");
const renderOnly = args.includes("--render");
const outArg = args.find((arg) => arg.startsWith("--out="));
const names = args.filter((arg) => !arg.startsWith("--"));
const unknown = [
  ...names.filter((name) => !benchmarks.includes(name)),
  ...args.filter((arg) => arg.startsWith("--") && !["--quick", "--render", outArg].includes(arg)),
];
if (unknown.length > 0) {
  console.error(
    `bench: unknown ${unknown.join(", ")}: use benchmark names (${benchmarks.join(", ")}), ` +
      "--quick, --out=DIR, --render",
  );
  process.exit(2);
}
const selected = names.length === 0 ? benchmarks : benchmarks.filter((b) => names.includes(b));
const complete = names.length === 0 && !quick;

/** The project's pinned tool if installed, else whatever PATH has. */
function bin(name) {
  const local = path.join(root, "node_modules", ".bin", name);
  return fs.existsSync(local) ? local : name;
}

/** Runs a command from the repository root, echoing its output; resolves with code and output. */
function run(command, commandArgs) {
  const name = command.startsWith(root) ? path.relative(root, command) : path.basename(command);
  console.log(`\n━━ ${[name, ...commandArgs].join(" ")}`);
  const started = performance.now();
  return new Promise((resolve) => {
    const child = spawn(command, commandArgs, {
      cwd: root,
      env,
      stdio: ["ignore", "pipe", "pipe"],
      detached: true, // its own process group: a timeout also ends the upstreams it started
    });
    let output = "";
    for (const [stream, sink] of [[child.stdout, process.stdout], [child.stderr, process.stderr]]) {
      stream.setEncoding("utf8");
      stream.on("data", (chunk) => {
        output += chunk;
        // The result line is for this script; the table above it is for the reader.
        sink.write(chunk.split("\n").filter((line) => !line.startsWith(resultPrefix)).join("\n"));
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
      console.log(`━━ exit ${code} in ${((performance.now() - started) / 1000).toFixed(1)}s`);
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

/** How each runtime runs one benchmark. */
const runtimes = [
  { key: "deno", command: bin("deno"), args: (name) => ["run", "--allow-all", `bench/${name}.ts`] },
  { key: "bun", command: bin("bun"), args: (name) => [`bench/${name}.ts`] },
  { key: "node", command: process.execPath, args: (name) => [`npm/esm/bench/${name}.js`] },
];

/** Writes BENCHMARKS.md, the chart and the raw results into `dir`. */
async function writeReport(dir, report) {
  const markdownPath = path.join(dir, "BENCHMARKS.md");
  const resultsDir = path.join(dir, "bench", "results");
  fs.mkdirSync(resultsDir, { recursive: true });
  fs.writeFileSync(path.join(resultsDir, "ratios.svg"), renderSvg(report));
  fs.writeFileSync(path.join(resultsDir, "results.json"), JSON.stringify(report, null, 2) + "\n");
  fs.writeFileSync(markdownPath, renderMarkdown(report, benchmarks));
  // deno fmt owns the Markdown layout (`npm test` checks it): let it align the tables.
  const fmt = await run(bin("deno"), ["fmt", "--quiet", markdownPath]);
  console.log(
    `\nwrote ${path.relative(root, markdownPath) || markdownPath} and ${
      path.relative(root, resultsDir)
    }/ratios.svg, results.json`,
  );
  return fmt.code === 0;
}

if (renderOnly) {
  const saved = path.join(root, "bench", "results", "results.json");
  const report = JSON.parse(fs.readFileSync(saved, "utf8"));
  const written = await writeReport(
    outArg === undefined ? root : path.resolve(outArg.slice(6)),
    report,
  );
  process.exit(written ? 0 : 1);
}

const started = performance.now();
const machine = machineInfo(bin);
const results = [];
const failures = [];

const build = await run(process.execPath, ["scripts/build_npm.mjs"]);
const nodeBuilt = build.code === 0;
if (!nodeBuilt) failures.push(`npm build failed (exit ${build.code}): Node not run`);

for (const name of selected) {
  for (const runtime of runtimes) {
    if (runtime.key === "node" && !nodeBuilt) continue;
    const { code, output } = await run(runtime.command, [
      ...runtime.args(name),
      ...(quick ? ["--quick"] : []),
    ]);
    const line = output.split("\n").find((each) => each.startsWith(resultPrefix));
    if (code !== 0 || line === undefined) {
      failures.push(`${name} on ${runtime.key}: exit ${code}${line ? "" : ", no result"}`);
      continue;
    }
    results.push(JSON.parse(line.slice(resultPrefix.length)));
  }
}

const minutes = (performance.now() - started) / 60_000;
const report = {
  date: new Date().toISOString(),
  command: `npm run bench${args.length > 0 ? ` -- ${args.join(" ")}` : ""}`,
  minutes,
  machine,
  quick,
  results,
  failures,
};

console.log(`\n━━ summary (${minutes.toFixed(1)} min)`);
for (const result of results) {
  for (const ratio of result.ratios) {
    const unit = ratio.unit ?? "×";
    const value = unit === "×" ? `${ratio.value.toFixed(3)}×` : `${ratio.value} ${unit}`;
    const target = ratio.target === undefined
      ? ""
      : `  target ${ratio.better === "lower" ? "≤" : "≥"} ${ratio.target}: ${
        (ratio.better === "lower" ? ratio.value <= ratio.target : ratio.value >= ratio.target)
          ? "met"
          : "MISSED"
      }`;
    console.log(`  ${result.runtime.padEnd(4)} ${ratio.label}: ${value}${target}`);
  }
}
for (const failure of failures) console.log(`  FAILED ${failure}`);

const outDir = outArg === undefined ? (complete ? root : undefined) : path.resolve(outArg.slice(6));
if (outDir === undefined) {
  console.log(
    "\nA partial or quick run: BENCHMARKS.md is not rewritten (--out=DIR writes it there).",
  );
} else if (!await writeReport(outDir, report)) {
  failures.push("deno fmt failed on BENCHMARKS.md");
}
process.exitCode = failures.length > 0 ? 1 : 0;
