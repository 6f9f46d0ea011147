// `npm test` on a fresh machine: scripts/install_servers.mjs installs the
// test servers where it can and says how where it cannot, and the
// real-server tests skip without them, except under CI. Programs are made to
// look missing with UPSTREAM_POOL_HIDE_PROGRAMS, so nothing is uninstalled.
import { afterEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { runtime } from "./_runtime.ts";
import { realServersSkipReason, SERVER_PROGRAMS } from "./_servers/process.ts";

/** The repository root: the tests also run from the build, in npm/esm/tests/. */
function repositoryRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!fs.existsSync(path.join(dir, "scripts", "install_servers.mjs"))) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error("scripts/install_servers.mjs not found above the tests");
    dir = parent;
  }
  return dir;
}

const installer = path.join(repositoryRoot(), "scripts", "install_servers.mjs");
const node = runtime === "node" ? process.execPath : "node";

function runInstaller(hide: string, args: string[] = [], ci = "") {
  const env: Record<string, string | undefined> = { ...process.env };
  env.UPSTREAM_POOL_HIDE_PROGRAMS = hide;
  env.CI = ci;
  const result = spawnSync(node, [installer, ...args], { encoding: "utf8", env, timeout: 20_000 });
  return { code: result.status, output: `${result.stdout}${result.stderr}` };
}

describe("test servers on a machine without them", () => {
  const saved = { hide: process.env.UPSTREAM_POOL_HIDE_PROGRAMS, ci: process.env.CI };
  afterEach(() => {
    for (const [name, value] of [["UPSTREAM_POOL_HIDE_PROGRAMS", saved.hide], ["CI", saved.ci]]) {
      if (value === undefined) delete process.env[name!];
      else process.env[name!] = value;
    }
  });

  test("the installer covers every server the real-server tests start", () => {
    const all = SERVER_PROGRAMS.map((entry) => entry.program).join(",");
    const { code, output } = runInstaller(`${all},apt-get`);
    assert.equal(code, 1, output);
    for (const { program, debianPackage } of SERVER_PROGRAMS) {
      assert.match(output, new RegExp(`missing .*\\b${program}\\b`));
      assert.match(
        output,
        new RegExp(`apt-get install --no-install-recommends .*\\b${debianPackage}\\b`),
      );
    }
  });

  test("where apt-get is missing it says so and gives the command; nothing is installed", () => {
    const { code, output } = runInstaller("nginx,memcached,apt-get");
    assert.equal(code, 1, output);
    assert.match(output, /cannot install nginx, memcached: there is no apt-get on PATH/);
    assert.match(
      output,
      /to install them: (sudo )?apt-get install --no-install-recommends nginx memcached\n/,
    );
    assert.doesNotMatch(output, /installing the Debian packages/);
  });

  // As a user: root can drop to nobody with setpriv (util-linux) to try it.
  const setpriv = ["/usr/bin/setpriv", "/bin/setpriv"].find((file) => fs.existsSync(file));
  test("as a user it says apt-get needs root and gives the command with sudo", {
    skip: process.getuid?.() !== 0 || setpriv === undefined ? "needs root and setpriv" : false,
  }, () => {
    const env = { ...process.env, UPSTREAM_POOL_HIDE_PROGRAMS: "nginx", CI: "" };
    const result = spawnSync(
      setpriv!,
      ["--reuid=65534", "--regid=65534", "--clear-groups", node, installer],
      { encoding: "utf8", env, timeout: 20_000 },
    );
    const output = `${result.stdout}${result.stderr}`;
    assert.equal(result.status, 1, output);
    assert.match(output, /cannot install nginx: apt-get needs root, and this runs as a user/);
    assert.match(output, /to install them: sudo apt-get install --no-install-recommends nginx\n/);
  });

  test("--check only reports, and a machine with everything needs nothing", () => {
    const missing = runInstaller("redis-server", ["--check"]);
    assert.equal(missing.code, 1, missing.output);
    assert.match(missing.output, /cannot install redis-server: not asked to install/);
    const present = runInstaller("", ["--check"]);
    // The suite's own machine has the servers (npm test installed them), or
    // this is a run without them, where the real-server tests skip.
    if (realServersSkipReason() === undefined) {
      assert.equal(present.code, 0, present.output);
      assert.match(present.output, /nginx, redis-server, memcached, openssl(, [\w-]+)* present/);
    }
  });

  test("the real-server tests skip with the install command, but never under CI", () => {
    process.env.UPSTREAM_POOL_HIDE_PROGRAMS = "memcached";
    process.env.CI = "";
    const reason = realServersSkipReason();
    assert.ok(reason !== undefined);
    assert.match(reason, /^SKIPPED: memcached not installed: /);
    assert.match(reason, /apt-get install --no-install-recommends memcached/);
    process.env.CI = "true";
    assert.equal(realServersSkipReason(), undefined);
  });
});
