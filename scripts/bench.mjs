// Runs the benchmarks in bench/ under Deno, Bun and Node (`npm run bench`)
// and writes BENCHMARKS.md with the chart bench/results/ratios.svg.
//
// Deno and Bun run the TypeScript source; Node runs the npm build, so the
// build (scripts/build_npm.mjs, which compiles bench/ next to tests/) comes
// first. Benchmarks run one after another, each on the three runtimes in
// turn; each prints its own table and one `@@bench-result {json}` line,
// which is collected here. Every benchmark also runs on every other Node
// found (see --nodes), from the same build.
//
//   npm run bench                    every benchmark; writes BENCHMARKS.md,
//                                    bench/results/ratios.svg and results.json
//   npm run bench -- reuse scale     only those (by file name in bench/)
//   npm run bench -- --quick         fewer rounds and samples: a smoke run
//   npm run bench -- --out=DIR       write this run's report to DIR instead
//   npm run bench -- --render        rewrite BENCHMARKS.md and the chart from
//                                    bench/results/results.json (the last full
//                                    run) after editing bench/analysis.md
//   npm run bench -- peers --merge   run only those and put their results into
//                                    the last full run's results.json in place
//                                    of the old ones, then rewrite the report
//                                    (BENCHMARKS.md says which sections are
//                                    from which run)
//   npm run bench -- --nodes=LIST    other Node binaries to run them on too:
//                                    comma-separated binaries, or
//                                    directories holding node<N>/bin/node
//                                    (default: $BENCH_NODES, else the Node
//                                    versions package.json pins); the Node
//                                    running this script is always one
//
// A partial or quick run writes nothing unless --out or --merge is given, so
// the committed report always comes from a full run (or says otherwise). The
// exit code is 1 if any step failed.
import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { machineInfo, renderMarkdown, renderSvg } from "./_bench_report.mjs";
import { pinnedNodes } from "./_node_versions.mjs";

const root = fileURLToPath(new URL("..", import.meta.url));
const benchmarks = [
  "overhead",
  "reuse",
  "bookkeeping",
  "scale",
  "detection",
  "contention",
  "peers",
  "keepalive_edge",
];
/** The benchmarks that also run on every other Node version found: all of them. */
const everyNode = benchmarks;
const defaultTimeoutMs = 180_000;
/** Benchmarks that take longer by design (keepalive_edge waits through idle gaps). */
const stepTimeoutsMs = { keepalive_edge: 300_000 };
const resultPrefix = "@@bench-result ";
const env = { ...process.env, DENO_NO_UPDATE_CHECK: "1", DO_NOT_TRACK: "1" };
if (!process.stdout.isTTY && env.FORCE_COLOR === undefined) env.NO_COLOR = "1";

const args = process.argv.slice(2);
const quick = args.includes("--quick");
const renderOnly = args.includes("--render");
const merge = args.includes("--merge");
const outArg = args.find((arg) => arg.startsWith("--out="));
const nodesArg = args.find((arg) => arg.startsWith("--nodes="));
const names = args.filter((arg) => !arg.startsWith("--"));
const unknown = [
  ...names.filter((name) => !benchmarks.includes(name)),
  ...args.filter((arg) =>
    arg.startsWith("--") && !["--quick", "--render", "--merge", outArg, nodesArg].includes(arg)
  ),
];
if (unknown.length > 0) {
  console.error(
    `bench: unknown ${unknown.join(", ")}: use benchmark names (${benchmarks.join(", ")}), ` +
      "--quick, --out=DIR, --render, --merge, --nodes=LIST",
  );
  process.exit(2);
}
if (merge && (quick || renderOnly || names.length === 0)) {
  console.error("bench: --merge needs benchmark names, and no --quick or --render");
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
function run(command, commandArgs, timeoutMs = defaultTimeoutMs, label = undefined) {
  const name = label ??
    (command.startsWith(root) ? path.relative(root, command) : path.basename(command));
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
      console.error(`\n!! ${name} timed out after ${timeoutMs / 1000}s: stopping it`);
      killGroup(child, "SIGTERM");
      forceKill = setTimeout(() => killGroup(child, "SIGKILL"), 5000);
    }, timeoutMs);
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

/**
 * Node binaries other than this one, by major version: from --nodes or
 * $BENCH_NODES (comma-separated binaries, or directories that hold
 * node<N>/bin/node), else the Node versions package.json pins
 * (node_modules/node<N>/bin/node). One per major version; none of this
 * Node's major version.
 */
function otherNodes() {
  const list = nodesArg?.slice("--nodes=".length) ?? env.BENCH_NODES;
  const found = new Map();
  const add = (file) => {
    if (!fs.existsSync(file)) return;
    const version = firstLine(file, ["--version"]).replace(/^v/, "");
    const major = version.split(".")[0];
    if (!/^\d+$/.test(major) || major === process.versions.node.split(".")[0]) return;
    if (!found.has(major)) found.set(major, { key: `node${major}`, command: file, version });
  };
  if (list === undefined) {
    for (const pinned of pinnedNodes(root)) {
      if (pinned.problem === undefined) add(pinned.bin);
      else console.log(`bench: Node ${pinned.major} is not run: ${pinned.problem}`);
    }
  }
  for (const entry of (list ?? "").split(",").map((each) => each.trim()).filter(Boolean)) {
    const resolved = path.resolve(root, entry);
    if (!fs.existsSync(resolved)) {
      console.error(`bench: --nodes: ${entry} does not exist`);
      continue;
    }
    if (!fs.statSync(resolved).isDirectory()) {
      add(resolved);
      continue;
    }
    for (const dir of fs.readdirSync(resolved).filter((name) => /^node\d+$/.test(name)).sort()) {
      add(path.join(resolved, dir, "bin", "node"));
    }
  }
  return [...found.values()].sort((a, b) => parseInt(a.key.slice(4)) - parseInt(b.key.slice(4)));
}

function firstLine(command, commandArgs) {
  try {
    return execFileSync(command, commandArgs, { encoding: "utf8", timeout: 10_000 }).split("\n")[0]
      .trim();
  } catch {
    return "";
  }
}

const nodes = otherNodes();

/** How each runtime runs one benchmark. */
const runtimes = [
  { key: "deno", command: bin("deno"), args: (name) => ["run", "--allow-all", `bench/${name}.ts`] },
  { key: "bun", command: bin("bun"), args: (name) => [`bench/${name}.ts`] },
  { key: "node", command: process.execPath, args: (name) => [`npm/esm/bench/${name}.js`] },
  ...nodes.map((node) => ({
    key: node.key,
    command: node.command,
    label: node.command.startsWith(root) ? path.relative(root, node.command) : node.command,
    args: (name) => [`npm/esm/bench/${name}.js`],
    only: everyNode,
  })),
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

const saved = path.join(root, "bench", "results", "results.json");

if (renderOnly) {
  const report = JSON.parse(fs.readFileSync(saved, "utf8"));
  const written = await writeReport(
    outArg === undefined ? root : path.resolve(outArg.slice(6)),
    report,
  );
  process.exit(written ? 0 : 1);
}

const started = performance.now();
const machine = machineInfo(bin);
for (const node of nodes) machine.runtimes[node.key] = node.version;
const results = [];
const failures = [];

const build = await run(process.execPath, ["scripts/build_npm.mjs"]);
const nodeBuilt = build.code === 0;
if (!nodeBuilt) failures.push(`npm build failed (exit ${build.code}): Node not run`);

for (const name of selected) {
  for (const runtime of runtimes) {
    if (runtime.only !== undefined && !runtime.only.includes(name)) continue;
    if (runtime.key.startsWith("node") && !nodeBuilt) continue;
    const { code, output } = await run(
      runtime.command,
      [...runtime.args(name), ...(quick ? ["--quick"] : [])],
      stepTimeoutsMs[name] ?? defaultTimeoutMs,
      runtime.label,
    );
    const line = output.split("\n").find((each) => each.startsWith(resultPrefix));
    if (code !== 0 || line === undefined) {
      failures.push(`${name} on ${runtime.key}: exit ${code}${line ? "" : ", no result"}`);
      continue;
    }
    // Every Node reports itself as "node": the key says which binary it was.
    results.push({ ...JSON.parse(line.slice(resultPrefix.length)), runtime: runtime.key });
  }
}

const minutes = (performance.now() - started) / 60_000;
const command = `npm run bench${args.length > 0 ? ` -- ${args.join(" ")}` : ""}`;
// The machine is shared while developing: how busy it was at the end says as much as at the start.
const loadAverageEnd = os.loadavg();
const thisRun = { date: new Date().toISOString(), command, minutes, machine, loadAverageEnd };
let report = { ...thisRun, quick, results, failures };
if (merge) report = mergeInto(JSON.parse(fs.readFileSync(saved, "utf8")));

/**
 * The saved full run with this run's benchmarks in place of its own: their
 * old results and failures go, and `merged` records where the new ones
 * came from.
 */
function mergeInto(full) {
  const mine = (bench) => selected.includes(bench);
  const failedBench = (failure) => failure.split(" ")[0];
  const earlier = (full.merged ?? []).map((each) => ({
    ...each,
    benches: each.benches.filter((bench) => !mine(bench)),
  })).filter((each) => each.benches.length > 0);
  return {
    ...full,
    machine: {
      ...full.machine,
      runtimes: { ...full.machine.runtimes, ...machine.runtimes },
    },
    results: [...full.results.filter((result) => !mine(result.bench)), ...results],
    failures: [...full.failures.filter((failure) => !mine(failedBench(failure))), ...failures],
    merged: [...earlier, { ...thisRun, benches: selected }],
  };
}

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
    console.log(`  ${result.runtime.padEnd(6)} ${ratio.label}: ${value}${target}`);
  }
}
for (const failure of failures) console.log(`  FAILED ${failure}`);

const outDir = outArg === undefined
  ? (complete || merge ? root : undefined)
  : path.resolve(outArg.slice(6));
if (outDir === undefined) {
  console.log(
    "\nA partial or quick run: BENCHMARKS.md is not rewritten (--out=DIR writes it there).",
  );
} else if (!await writeReport(outDir, report)) {
  failures.push("deno fmt failed on BENCHMARKS.md");
}
process.exitCode = failures.length > 0 ? 1 : 0;
