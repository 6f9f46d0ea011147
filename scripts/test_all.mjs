// Runs every check and the test suite under Deno, Bun and Node (`npm test`).
//
// Steps run one after another (CI has two cores) and a failure does not stop
// the rest, so the summary is always complete. Each check counts as one test;
// each suite counts its leaf tests (a `describe` block is not a test). The
// last line is `tests: N passed, M failed`; the exit code is 1 if anything
// failed or a suite ran no test.
//
// `npm test -- deno node` runs only the named groups (checks, deno, bun, node).
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { fileURLToPath, pathToFileURL } from "node:url";
import { countBun, countDenoJunit, countTap } from "./_test_counts.mjs";

const root = fileURLToPath(new URL("..", import.meta.url));
const stepTimeoutMs = Number(process.env.TEST_STEP_TIMEOUT_S ?? 900) * 1000;
const groups = new Set(process.argv.slice(2));
for (const group of groups) {
  if (!["checks", "deno", "bun", "node"].includes(group)) {
    console.error(`test_all: unknown group "${group}": use checks, deno, bun or node`);
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
const entryPoints = Object.values(
  typeof deno.exports === "string" ? { ".": deno.exports } : deno.exports ?? {},
).map((file) => file.replace(/^\.\//, ""));
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
  results.push({ group, name, ...counts, seconds, note });
  console.log(`━━ ${name}: ${line}${note ? ` (${note})` : ""} in ${seconds.toFixed(1)}s`);
}

/** A check is one test: it passed if the command exited 0. */
async function check(name, command, args, shown = args) {
  const { code, seconds, timedOut } = await run(command, args, shown);
  const ok = code === 0;
  record(
    "checks",
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

const wanted = (group) => groups.size === 0 || groups.has(group);
const denoBin = bin("deno");
const started = performance.now();

console.log(
  `upstream-pool: ${testFiles.length} test files, ${checkedFiles.length} files to type-check`,
);
if (strays.length > 0) {
  console.log(`warning: not run (the suite is tests/**/*_test.ts): ${strays.join(", ")}`);
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

if (wanted("node")) {
  if (!await check("npm build", process.execPath, ["scripts/build_npm.mjs"])) {
    notRun("node", "node --test", "the npm build failed");
  } else {
    await check("npm exports load in Node", process.execPath, [
      "--input-type=module",
      "--eval",
      exportsSmokeTest(),
    ], ["--input-type=module", "--eval", "'<import every export of npm/package.json>'"]);
    const compiled = listFiles("npm/esm/tests", "_test.js");
    if (compiled.length !== testFiles.length) {
      console.log(`warning: ${testFiles.length} test files, but ${compiled.length} compiled`);
    }
    const tap = path.join(reports, "node.tap");
    await suite("node", "node --test", compiled, process.execPath, [
      "--test",
      "--test-reporter=spec",
      "--test-reporter-destination=stdout",
      "--test-reporter=tap",
      `--test-reporter-destination=${tap}`,
      ...compiled,
    ], (output) => countTap(tap, output));
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

fs.rmSync(reports, { recursive: true, force: true });

const totals = { passed: 0, failed: 0 };
const byGroup = new Map();
console.log("\n━━ summary");
for (const result of results) {
  totals.passed += result.passed;
  totals.failed += result.failed;
  const group = byGroup.get(result.group) ?? { passed: 0, failed: 0, seconds: 0 };
  group.passed += result.passed;
  group.failed += result.failed;
  group.seconds += result.seconds;
  byGroup.set(result.group, group);
  const status = result.failed > 0 ? "FAIL" : "ok  ";
  console.log(
    `  ${status} ${result.name.padEnd(26)} ${String(result.passed).padStart(4)} passed ` +
      `${String(result.failed).padStart(3)} failed ${result.seconds.toFixed(1).padStart(6)}s` +
      (result.note ? `  ${result.note}` : ""),
  );
}
for (const [group, counts] of byGroup) {
  console.log(
    `  ${group.padEnd(7)} ${counts.passed} passed, ${counts.failed} failed in ` +
      `${counts.seconds.toFixed(1)}s`,
  );
}
console.log(`  total time ${((performance.now() - started) / 1000).toFixed(1)}s`);
console.log(`tests: ${totals.passed} passed, ${totals.failed} failed`);
process.exitCode = totals.failed > 0 || results.length === 0 ? 1 : 0;
