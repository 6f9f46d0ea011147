// Builds the npm package in npm/ from the Deno sources (`npm run build:npm`).
//
// tsc compiles mod.ts and src/ into npm/esm/ with declarations, then tests/
// into the same tree (npm/esm/tests/), so the compiled tests import the
// compiled sources through the same relative paths. The generated
// package.json publishes only the library; the tests stay local and are run
// by `node --test` (see scripts/test_all.mjs).
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { pinnedNodes } from "./_node_versions.mjs";

const root = fileURLToPath(new URL("..", import.meta.url));
const outDir = path.join(root, "npm");
const esmDir = path.join(outDir, "esm");
const tscPath = path.join(root, "node_modules", "typescript", "bin", "tsc");

function fail(message) {
  console.error(`build_npm: ${message}`);
  process.exit(1);
}

function readJson(file) {
  try {
    return JSON.parse(fs.readFileSync(path.join(root, file), "utf8"));
  } catch (error) {
    return fail(`cannot read ${file}: ${error.message}`);
  }
}

// Everything that can be checked before compiling is, so a broken setup
// fails at once with a message that names the missing piece.
const deno = readJson("deno.json");
for (const field of ["name", "version", "license", "exports"]) {
  if (!deno[field]) fail(`deno.json has no "${field}", which the npm package needs`);
}
const exportsMap = typeof deno.exports === "string" ? { ".": deno.exports } : deno.exports;
for (const [key, target] of Object.entries(exportsMap)) {
  if (!/^\.\/.+\.ts$/.test(target)) {
    fail(`deno.json export "${key}" is not a ./*.ts file: ${target}`);
  }
  if (!fs.existsSync(path.join(root, target))) {
    fail(`deno.json export "${key}" points to ${target}, which does not exist`);
  }
}
for (const file of ["README.md", "LICENSE"]) {
  if (!fs.existsSync(path.join(root, file))) {
    fail(`${file} is missing at the repository root; the npm package must ship it`);
  }
}
if (!fs.existsSync(tscPath)) fail(`TypeScript is not installed (${tscPath}); run \`npm ci\``);

fs.rmSync(outDir, { recursive: true, force: true });
fs.mkdirSync(outDir, { recursive: true });

// deno.json's compiler options apply to tsc too, so the two checkers agree;
// "lib" and "types" name Deno's own type libraries and are left out.
const { lib: _lib, types: _types, ...denoOptions } = deno.compilerOptions ?? {};

function compile(label, config) {
  // The generated config sits in npm/ so tsc finds node_modules/@types by
  // walking up; paths in the base config stay relative to the repository.
  const configPath = path.join(outDir, `.tsconfig.${label}.json`);
  const full = { extends: path.join(root, "tsconfig.build.json"), ...config };
  full.compilerOptions = { ...denoOptions, ...config.compilerOptions };
  fs.writeFileSync(configPath, JSON.stringify(full, null, 2));
  const started = performance.now();
  const result = spawnSync(process.execPath, [tscPath, "-p", configPath], { stdio: "inherit" });
  fs.rmSync(configPath);
  if (result.status !== 0) {
    fail(`tsc failed on the ${label} (exit ${result.status ?? result.signal})`);
  }
  console.log(`build_npm: compiled the ${label} in ${seconds(started)}`);
}

function seconds(started) {
  return `${((performance.now() - started) / 1000).toFixed(1)}s`;
}

compile("library", {});
// What the library pass emitted is what gets published (tests come after).
const libraryFiles = fs.readdirSync(esmDir, { withFileTypes: true })
  .map((entry) => `esm/${entry.name}${entry.isDirectory() ? "/" : ""}`);
// Tests need no declarations (declaration emit would also reject helper
// types that are not exported); tsc re-emits the sources they import
// byte-for-byte, next to the declarations of the first pass.
if (fs.existsSync(path.join(root, "tests"))) {
  compile("tests", {
    // The examples come along so the suite can run the demo under Node too,
    // and the benchmarks for `npm run bench` (npm/esm/bench/).
    include: ["tests", "examples", "bench"].map((dir) => path.join(root, dir, "**", "*.ts")),
    compilerOptions: { declaration: false },
  });
  copyData(path.join(root, "tests"), path.join(esmDir, "tests"));
  // The benchmarks' Node upstream script (bench/_upstreams.mjs); not their results.
  copyData(path.join(root, "bench"), path.join(esmDir, "bench"), ["results"]);
}

/** Copies non-TypeScript files (certificates, data, scripts) beside the compiled ones. */
function copyData(from, to, skip = []) {
  if (!fs.existsSync(from)) return;
  for (const entry of fs.readdirSync(from, { withFileTypes: true })) {
    const source = path.join(from, entry.name);
    const target = path.join(to, entry.name);
    if (skip.includes(entry.name)) continue;
    if (entry.isDirectory()) {
      copyData(source, target);
    } else if (!entry.name.endsWith(".ts")) {
      fs.mkdirSync(to, { recursive: true });
      fs.copyFileSync(source, target);
    }
  }
}

const packageExports = {};
for (const [key, target] of Object.entries(exportsMap)) {
  const base = `./esm/${target.slice(2, -3)}`;
  packageExports[key] = { types: `${base}.d.ts`, default: `${base}.js` };
  for (const file of [`${base}.js`, `${base}.d.ts`]) {
    if (!fs.existsSync(path.join(outDir, file))) fail(`export "${key}" compiled to no ${file}`);
  }
}

/**
 * The Node majors `npm test` runs the suite on: 20, the machine's own (end
 * of life since April 2026, still run), and each one pinned in package.json.
 */
function testedNodes() {
  const majors = new Set([20, ...pinnedNodes(root).map((node) => node.major)]);
  return [...majors].sort((a, b) => a - b).map((major) => `^${major}`).join(" || ");
}

const main = packageExports["."];
const packageJson = {
  name: deno.name,
  version: deno.version,
  ...(deno.description ? { description: deno.description } : {}),
  license: deno.license,
  type: "module",
  ...(main ? { main: main.default, types: main.types } : {}),
  exports: packageExports,
  files: libraryFiles.sort(),
  sideEffects: false,
  engines: { node: testedNodes() },
};
fs.writeFileSync(path.join(outDir, "package.json"), JSON.stringify(packageJson, null, 2) + "\n");
for (const file of ["README.md", "LICENSE"]) {
  fs.copyFileSync(path.join(root, file), path.join(outDir, file));
}

// Ask npm what it would publish: the library, and no tests.
const pack = spawnSync("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], {
  cwd: outDir,
  encoding: "utf8",
  shell: process.platform === "win32",
});
if (pack.status !== 0) fail(`npm pack --dry-run failed:\n${pack.stderr}`);
const [tarball] = JSON.parse(pack.stdout);
const packed = tarball.files.map((file) => file.path);
const leaked = packed.filter((file) => /^esm\/(tests|examples|bench)\//.test(file));
if (leaked.length > 0) fail(`the package would publish local-only files: ${leaked.join(", ")}`);
for (const required of ["package.json", "README.md", "LICENSE"]) {
  if (!packed.includes(required)) fail(`the package would not include ${required}`);
}
console.log(
  `build_npm: npm/ holds ${deno.name}@${deno.version}: ${packed.length} files, ` +
    `${(tarball.size / 1024).toFixed(1)} KiB packed; tests in npm/esm/tests/ stay unpublished`,
);
