// Runs every check and the test suite under Deno, Bun and Node (`npm test`).
//
// Node runs the suite against the npm build, on the node `npm test` was
// started with and on each Node pinned in package.json (node22, node24,
// node26: scripts/_node_versions.mjs), each its own group. Where Node strips
// types (22.18 and later), it also runs the demo from the TypeScript sources.
// First, the servers the tests start and npm cannot install are installed
// where that can work (scripts/install_servers.mjs).
//
// Steps run one after another (CI has two cores) and a failure does not stop
// the rest, so the summary is always complete. Each check counts as one test;
// each suite counts its leaf tests (a `describe` block is not a test). A
// pinned Node that is not installed (npm skips them on other platforms) and
// real-server tests without their servers are skipped, and listed at the
// end; under CI=true either is a failure. The last line is
// `tests: N passed, M failed` (`, K skipped` if any); the exit code is 1 if
// anything failed or a suite ran no test.
//
// `npm test -- deno node24` runs only the named groups: checks, deno, bun,
// node (every Node), or one Node by its group name (node20, node22, ...).
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { fileURLToPath, pathToFileURL } from "node:url";
import { countBun, countDenoJunit, countTap } from "./_test_counts.mjs";
import { nodeVersion, pinnedNodes, startingNode, stripsTypes } from "./_node_versions.mjs";
import { installServers } from "./install_servers.mjs";

const root = fileURLToPath(new URL("..", import.meta.url));
const stepTimeoutMs = Number(process.env.TEST_STEP_TIMEOUT_S ?? 900) * 1000;
const ci = /^(true|1)$/i.test(process.env.CI ?? "");

// Every Node to run the suite on: the starting one first, then the pinned
// ones; a pinned one that is the very same version is not run twice.
const startBin = startingNode(root);
const startVersion = ((startBin !== process.execPath && nodeVersion(startBin)) || process.version)
  .slice(1);
const startMajor = Number(startVersion.split(".")[0]);
const nodes = [
  { name: `node${startMajor}`, major: startMajor, version: startVersion, bin: startBin },
];
for (const pinned of pinnedNodes(root)) {
  if (pinned.version === startVersion) continue; // the same Node: once is enough
  // Same major, other version: the starting one is named by its full version.
  if (pinned.name === nodes[0].name) nodes[0].name = `node${startVersion}`;
  nodes.push(pinned);
}

const groupNames = ["checks", "deno", "bun", "node", ...nodes.map((node) => node.name)];
const groups = new Set(process.argv.slice(2));
for (const group of groups) {
  if (!groupNames.includes(group)) {
    console.error(`test_all: unknown group "${group}": use ${groupNames.join(", ")}`);
    process.exit(2);
  }
}
const reports = fs.mkdtempSync(path.join(os.tmpdir(), "upstream-pool-tests-"));
const env = { ...process.env, DENO_NO_UPDATE_CHECK: "1", DO_NOT_TRACK: "1" };
// Colours only for a terminal; CI logs stay plain.
if (!process.stdout.isTTY && env.FORCE_COLOR === undefined) env.NO_COLOR = "1";

/** The project's pinned tool if installed, else whatever PATH has. */
function bin(name) {
  const local = path.join(root, "node_modules", ".bin", name);
  return fs.existsSync(local) ? local : name;
}

/** Files under `dir` (relative to the root) whose names end with `suffix`, sorted. */
function listFiles(dir, suffix, skip = []) {
  const found = [];
  const walk = (relative) => {
    if (!fs.existsSync(path.join(root, relative))) return;
    for (const entry of fs.readdirSync(path.join(root, relative), { withFileTypes: true })) {
      const child = `${relative}/${entry.name}`;
      if (skip.includes(child) || entry.name === "node_modules") continue;
      if (entry.isDirectory()) walk(child);
      else if (entry.name.endsWith(suffix)) found.push(child);
    }
  };
  walk(dir);
  return found.sort();
}

const deno = JSON.parse(fs.readFileSync(path.join(root, "deno.json"), "utf8"));
const exportsMap = () =>
  typeof deno.exports === "string" ? { ".": deno.exports } : deno.exports ?? {};
const entryPoints = Object.values(exportsMap()).map((file) => file.replace(/^\.\//, ""));
const testFiles = listFiles("tests", "_test.ts");
const checkedFiles = [
  ...new Set([
    ...entryPoints, // all of them: a missing export must fail here
    ...listFiles("tests", ".ts"),
    ...listFiles("examples", ".ts"),
    ...listFiles("bench", ".ts", ["bench/results"]),
  ]),
];
// Bun and Deno would also pick up *.test.ts or *.spec.ts: the suite is *_test.ts only.
const strays = listFiles("tests", ".ts").filter((file) =>
  /[._](test|spec)\.ts$/.test(file) && !file.endsWith("_test.ts")
);

const results = [];
let current;

for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]]) {
  process.on(signal, () => {
    if (current) killGroup(current, "SIGKILL");
    process.exit(code);
  });
}

function killGroup(child, signal) {
  try {
    process.kill(-child.pid, signal);
  } catch {
    // Already gone.
  }
}

/** Runs a command, streaming its output through; resolves with its exit code and output. */
function run(command, args, shown = args) {
  const name = command.startsWith(root) ? path.relative(root, command) : path.basename(command);
  console.log(`\n━━ ${[name, ...shown].join(" ")}`);
  const started = performance.now();
  return new Promise((resolve) => {
    const child = spawn(command, args, {
      cwd: root,
      env,
      stdio: ["ignore", "pipe", "pipe"],
      detached: true, // its own process group, so a timeout ends its children too
    });
    current = child;
    let output = "";
    let timedOut = false;
    let forceKill;
    for (const [stream, sink] of [[child.stdout, process.stdout], [child.stderr, process.stderr]]) {
      stream.setEncoding("utf8");
      stream.on("data", (chunk) => {
        sink.write(chunk);
        output += chunk;
      });
    }
    const timer = setTimeout(() => {
      timedOut = true;
      console.error(`\n!! timed out after ${stepTimeoutMs / 1000}s: stopping it`);
      killGroup(child, "SIGTERM");
      forceKill = setTimeout(() => killGroup(child, "SIGKILL"), 5000);
    }, stepTimeoutMs);
    let finished = false;
    const finish = (code, error) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      clearTimeout(forceKill);
      current = undefined;
      if (error) output += `\n${error.message}`;
      const seconds = (performance.now() - started) / 1000;
      resolve({ code, output: stripAnsi(output), seconds, timedOut });
    };
    child.on("error", (error) => {
      console.error(`!! cannot start ${command}: ${error.message}`);
      finish(-1, error);
    });
    child.on("close", (code, signal) => finish(code ?? signal));
  });
}

function stripAnsi(text) {
  // deno-lint-ignore no-control-regex
  return text.replace(/\x1b\[[0-9;]*[A-Za-z]/g, "");
}

function record(group, name, counts, seconds, note = "") {
  const line = `${counts.passed} passed, ${counts.failed} failed` +
    (counts.skipped ? `, ${counts.skipped} skipped` : "");
  results.push({ group, name, skipped: 0, ...counts, seconds, note });
  const label = group === "checks" || name.startsWith(group) ? name : `${group} ${name}`;
  console.log(`━━ ${label}: ${line}${note ? ` (${note})` : ""} in ${seconds.toFixed(1)}s`);
}

/** A check is one test: it passed if the command exited 0. */
async function check(name, command, args, shown = args, group = "checks") {
  const { code, seconds, timedOut } = await run(command, args, shown);
  const ok = code === 0;
  record(
    group,
    name,
    { passed: ok ? 1 : 0, failed: ok ? 0 : 1 },
    seconds,
    timedOut ? "timed out" : ok ? "" : `exit ${code}`,
  );
  return ok;
}

/** A suite counts its tests; an error with no failing test, or no test at all, is one failure. */
async function suite(group, name, files, command, args, count) {
  // With no file named, each runner would search the whole tree (npm/ too).
  if (files.length === 0) return notRun(group, name, "no test files");
  const { code, output, seconds, timedOut } = await run(command, args);
  const counts = { passed: 0, failed: 0, skipped: 0, ...count(output) };
  const notes = [];
  if (counts.summary) notes.push(counts.summary);
  delete counts.summary;
  if (timedOut) notes.push(`timed out after ${stepTimeoutMs / 1000}s`);
  if (counts.failed === 0 && (code !== 0 || counts.passed === 0)) {
    counts.failed = 1;
    if (!timedOut) notes.push(counts.passed === 0 ? "ran no test" : `exit ${code}, no test failed`);
    notes.push("counted as one failure");
  }
  record(group, name, counts, seconds, notes.join("; "));
}

function notRun(group, name, why) {
  record(group, name, { passed: 0, failed: 1 }, 0, `not run: ${why}`);
}

const wanted = (group) =>
  groups.size === 0 || groups.has(group) || (/^node\d/.test(group) && groups.has("node"));
const denoBin = bin("deno");
const started = performance.now();
/** What was skipped and why, listed again at the end. */
const skips = [];

console.log(
  `upstream-pool: ${testFiles.length} test files, ${checkedFiles.length} files to type-check`,
);
if (strays.length > 0) {
  console.log(`warning: not run (the suite is tests/**/*_test.ts): ${strays.join(", ")}`);
}

const suitesWanted = ["deno", "bun", ...nodes.map((node) => node.name)].some(wanted);
if (suitesWanted) {
  // Before anything else: an install's output should not land mid-suite.
  console.log("\n━━ test servers (scripts/install_servers.mjs)");
  const installStarted = performance.now();
  const servers = installServers({ env });
  const seconds = (performance.now() - installStarted) / 1000;
  if (servers.missing.length === 0) {
    console.log(`test servers: all present${servers.installed.length ? " (installed now)" : ""}`);
  } else {
    const names = servers.missing.map(({ program }) => program).join(", ");
    const why = `${names} missing (${servers.why}): ${servers.command}`;
    // Under CI the suites fail on it too; this says why in the summary.
    if (ci) record("checks", "test servers", { passed: 0, failed: 1 }, seconds, why);
    else skips.push(`real-server tests on every runtime: ${why}`);
  }
}

if (wanted("checks")) {
  await check("deno check", denoBin, ["check", "--doc", ...checkedFiles]);
  await check("deno lint", denoBin, ["lint"]);
  await check("deno fmt --check", denoBin, ["fmt", "--check"]);
  await check("deno doc --lint", denoBin, ["doc", "--lint", ...entryPoints]);
  await check("deno publish --dry-run", denoBin, ["publish", "--dry-run", "--allow-dirty"]);
}

if (wanted("deno")) {
  const junit = path.join(reports, "deno.xml");
  await suite(
    "deno",
    "deno test",
    testFiles,
    denoBin,
    ["test", "--allow-all", `--junit-path=${junit}`, ...testFiles],
    (output) => countDenoJunit(junit, output),
  );
}

if (wanted("bun")) {
  // Paths start with ./ because bun treats other arguments as substring
  // filters: `bun test tests/` also runs npm/esm/tests/*_test.js.
  await suite(
    "bun",
    "bun test",
    testFiles,
    bin("bun"),
    ["test", ...testFiles.map((file) => `./${file}`)],
    (output) => countBun(output),
  );
}

const nodesWanted = nodes.filter((node) => wanted(node.name));
if (nodesWanted.length > 0) {
  const built = nodesWanted.some((node) => !node.problem) &&
    await check("npm build", process.execPath, ["scripts/build_npm.mjs"]);
  const compiled = listFiles("npm/esm/tests", "_test.js");
  if (built && compiled.length !== testFiles.length) {
    console.log(`warning: ${testFiles.length} test files, but ${compiled.length} compiled`);
  }
  // The tests that run the examples, run again from the TypeScript sources
  // where Node strips types.
  const exampleTests = testFiles.filter((file) =>
    /(^|\/)(demo|examples?)[^/]*_test\.ts$/.test(file)
  );
  for (const node of nodesWanted) {
    if (node.problem && ci) {
      notRun(node.name, "node --test", `Node ${node.version} ${node.problem}`);
    } else if (node.problem) {
      skips.push(`${node.name}, the whole Node ${node.version} group: ${node.problem}`);
      record(node.name, "node --test", { passed: 0, failed: 0, skipped: 1 }, 0, node.problem);
    } else if (!built) {
      notRun(node.name, "node --test", "the npm build failed");
    } else {
      await nodeGroup(node, compiled, exampleTests);
    }
  }
}

/** The suite under one Node: the build's exports, the compiled tests, the examples from source. */
async function nodeGroup(node, compiled, exampleTests) {
  console.log(
    `\n━━━━ ${node.name}: Node ${node.version} (${path.relative(root, node.bin) || node.bin})`,
  );
  await check(
    "npm exports load",
    node.bin,
    [
      "--input-type=module",
      "--eval",
      exportsSmokeTest(),
    ],
    ["--input-type=module", "--eval", "'<import every export of npm/package.json>'"],
    node.name,
  );
  const tap = path.join(reports, `${node.name}.tap`);
  await suite(node.name, "node --test", compiled, node.bin, [
    "--test",
    "--test-reporter=spec",
    "--test-reporter-destination=stdout",
    "--test-reporter=tap",
    `--test-reporter-destination=${tap}`,
    ...compiled,
  ], (output) => countTap(tap, output));
  const strips = stripsTypes(node.bin);
  if (!strips && node.major >= 24) {
    notRun(node.name, "examples from .ts sources", "this Node does not strip types");
  } else if (strips) {
    await check(
      "exports load from .ts",
      node.bin,
      ["--input-type=module", "--eval", sourceExportsSmokeTest()],
      ["--input-type=module", "--eval", "'<import every export of deno.json>'"],
      node.name,
    );
  }
  if (strips && exampleTests.length > 0) {
    const sourceTap = path.join(reports, `${node.name}-source.tap`);
    await suite(node.name, "examples from .ts sources", exampleTests, node.bin, [
      "--test",
      "--test-reporter=spec",
      "--test-reporter-destination=stdout",
      "--test-reporter=tap",
      `--test-reporter-destination=${sourceTap}`,
      ...exampleTests,
    ], (output) => countTap(sourceTap, output));
  }
}

/** Imports every export of npm/package.json in Node: each must load and export something. */
function exportsSmokeTest() {
  const npmDir = pathToFileURL(path.join(root, "npm") + path.sep).href;
  return `
    const dir = new URL(${JSON.stringify(npmDir)});
    const pkg = JSON.parse(await (await import("node:fs/promises")).readFile(new URL("package.json", dir)));
    for (const [key, target] of Object.entries(pkg.exports)) {
      const names = Object.keys(await import(new URL(target.default, dir).href));
      if (names.length === 0) throw new Error(\`export "\${key}" exports nothing\`);
      console.log(\`\${pkg.name}\${key.slice(1)}: \${names.join(", ")}\`);
    }`;
}

/** Imports every export of deno.json from the TypeScript sources, as Node strips types. */
function sourceExportsSmokeTest() {
  const rootUrl = pathToFileURL(root).href;
  return `
    const dir = new URL(${JSON.stringify(rootUrl.endsWith("/") ? rootUrl : `${rootUrl}/`)});
    for (const [key, target] of Object.entries(${JSON.stringify(exportsMap())})) {
      const names = Object.keys(await import(new URL(target, dir).href));
      if (names.length === 0) throw new Error(\`export "\${key}" exports nothing\`);
      console.log(\`\${key}: \${names.join(", ")}\`);
    }`;
}

fs.rmSync(reports, { recursive: true, force: true });

const totals = { passed: 0, failed: 0, skipped: 0 };
const byGroup = new Map();
console.log("\n━━ summary");
for (const result of results) {
  const group = byGroup.get(result.group) ?? { passed: 0, failed: 0, skipped: 0, seconds: 0 };
  for (const key of ["passed", "failed", "skipped"]) {
    totals[key] += result[key];
    group[key] += result[key];
  }
  group.seconds += result.seconds;
  byGroup.set(result.group, group);
  const status = result.failed > 0
    ? "FAIL"
    : result.passed === 0 && result.skipped > 0
    ? "SKIP"
    : "ok  ";
  console.log(
    `  ${status} ${result.group.padEnd(8)} ${result.name.padEnd(26)} ` +
      `${String(result.passed).padStart(4)} passed ${String(result.failed).padStart(3)} failed ` +
      `${String(result.skipped).padStart(3)} skipped ${result.seconds.toFixed(1).padStart(6)}s` +
      (result.note ? `  ${result.note}` : ""),
  );
}
for (const [group, counts] of byGroup) {
  console.log(
    `  ${group.padEnd(8)} ${counts.passed} passed, ${counts.failed} failed` +
      `${counts.skipped ? `, ${counts.skipped} skipped` : ""} in ${counts.seconds.toFixed(1)}s`,
  );
}
console.log(`  total time ${((performance.now() - started) / 1000).toFixed(1)}s`);
if (skips.length > 0) {
  // Loud on purpose: a skip here is coverage this machine did not give.
  console.log("\n!! SKIPPED (under CI=true each of these fails):");
  for (const skip of skips) console.log(`!!   ${skip}`);
}
console.log(
  `tests: ${totals.passed} passed, ${totals.failed} failed` +
    (totals.skipped ? `, ${totals.skipped} skipped` : ""),
);
process.exitCode = totals.failed > 0 || results.length === 0 ? 1 : 0;
