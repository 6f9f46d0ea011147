// Puts in place the programs the tests run that npm cannot install: the
// real-server tests' nginx, redis-server and memcached, and openssl (the TLS
// tests and the demo mint throwaway certificates with it). `npm test` runs
// this first; `node scripts/install_servers.mjs` runs it alone.
//
// A program found on PATH (or in /usr/sbin, /usr/bin, /sbin) is left alone,
// whoever installed it. Missing ones are installed from Debian's packages
// when that can work: root, and apt-get present (`apt-get update` runs only
// then). Otherwise it says why not and the command that installs them;
// tests/_servers/process.ts then skips the real-server tests, except under
// CI=true, where a missing server fails them.
//
// UPSTREAM_POOL_HIDE_PROGRAMS=nginx,memcached makes the named programs look
// missing, here and to the tests, to try the paths above on a machine that
// has them. Exit code of the command: 0 if nothing is missing at the end.
// Plain JavaScript has no place for the types this rule asks for:
// deno-lint-ignore-file explicit-module-boundary-types
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

/**
 * Each program with the Debian package that has it. The real-server tests
 * keep the same list (SERVER_PROGRAMS in tests/_servers/process.ts), and
 * tests/install_servers_test.ts checks that the two agree.
 */
export const TEST_PROGRAMS = [
  { program: "nginx", debianPackage: "nginx" },
  { program: "redis-server", debianPackage: "redis-server" },
  { program: "memcached", debianPackage: "memcached" },
  { program: "openssl", debianPackage: "openssl" },
  // The keepalive tests: ss reads sockets' timers; ip, nft and sysctl run a
  // silent peer in a network namespace.
  { program: "ss", debianPackage: "iproute2" },
  { program: "ip", debianPackage: "iproute2" },
  { program: "nft", debianPackage: "nftables" },
  { program: "sysctl", debianPackage: "procps" },
  // The resource tests fill a listener's accept queue with Python's socket module.
  { program: "python3", debianPackage: "python3" },
  // tests/http_proxy_test.ts drives the example proxy with it.
  { program: "wrk", debianPackage: "wrk" },
];

/** Where servers live on Debian even when PATH leaves them out (a non-root PATH has no sbin). */
const EXTRA_DIRS = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/** The programs UPSTREAM_POOL_HIDE_PROGRAMS names. */
function hidden(env) {
  return new Set((env.UPSTREAM_POOL_HIDE_PROGRAMS ?? "").split(",").map((name) => name.trim()));
}

/** The absolute path of an executable `program`, or undefined. */
export function findProgram(program, env = process.env, extraDirs = EXTRA_DIRS) {
  if (hidden(env).has(program)) return undefined;
  for (const dir of [...(env.PATH ?? "").split(path.delimiter), ...extraDirs]) {
    if (!dir) continue;
    const candidate = path.join(dir, program);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      if (fs.statSync(candidate).isFile()) return candidate;
    } catch {
      // Not here.
    }
  }
  return undefined;
}

/** The command that installs `packages`, as a person would type it. */
export function installCommand(packages, isRoot = process.getuid?.() === 0) {
  return `${isRoot ? "" : "sudo "}apt-get install --no-install-recommends ${packages.join(" ")}`;
}

/** Why apt-get cannot install packages here, or undefined if it can. */
export function whyNoInstall(env = process.env) {
  if (process.platform !== "linux") return `this is ${process.platform}, not Debian`;
  if (findProgram("apt-get", env, []) === undefined) return "there is no apt-get on PATH";
  if (process.getuid?.() !== 0) return "apt-get needs root, and this runs as a user";
  return undefined;
}

/**
 * Finds every program and installs the missing ones if it can. Returns
 * `{ missing, installed, why, command }`: `missing` are still missing
 * (`{ program, debianPackage }`), `why` says why they could not be
 * installed, `command` installs them.
 */
export function installServers({ env = process.env, log = console.log, install = true } = {}) {
  const missingNow = () => TEST_PROGRAMS.filter(({ program }) => !findProgram(program, env));
  let missing = missingNow();
  if (missing.length === 0) return { missing, installed: [], why: undefined, command: "" };
  const packages = [...new Set(missing.map(({ debianPackage }) => debianPackage))];
  log(`test servers: missing ${missing.map(({ program }) => program).join(", ")}`);
  let why = install ? whyNoInstall(env) : "not asked to install (--check)";
  if (why === undefined) {
    log(`test servers: installing the Debian packages ${packages.join(", ")}`);
    const aptEnv = { ...env, DEBIAN_FRONTEND: "noninteractive" };
    const apt = (args) =>
      spawnSync("apt-get", args, { env: aptEnv, stdio: ["ignore", "inherit", "inherit"] });
    const update = apt(["update", "-qq"]);
    const result = update.status === 0
      ? apt(["install", "-y", "-qq", "--no-install-recommends", ...packages])
      : update;
    if (result.status !== 0) {
      why = `apt-get ${update.status === 0 ? "install" : "update"} failed ` +
        `(${result.error?.message ?? `exit ${result.status ?? result.signal}`})`;
    }
  }
  const before = new Set(missing);
  missing = missingNow();
  const installed = [...before].filter((entry) => !missing.some((left) => left === entry));
  if (missing.length > 0 && why === undefined) {
    why = "apt-get installed them, yet they are not found";
  }
  const command = installCommand(missing.map(({ debianPackage }) => debianPackage));
  if (missing.length > 0) {
    log(`test servers: cannot install ${missing.map(({ program }) => program).join(", ")}: ${why}`);
    log(`test servers: to install them: ${command}`);
  }
  return { missing, installed, why, command };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  if (args.some((arg) => arg !== "--check")) {
    console.error("usage: node scripts/install_servers.mjs [--check]");
    process.exit(2);
  }
  const { missing, installed } = installServers({ install: !args.includes("--check") });
  const present = TEST_PROGRAMS.filter((entry) => !missing.includes(entry));
  console.log(
    `test servers: ${present.map(({ program }) => program).join(", ") || "none"} present` +
      (installed.length ? ` (installed now: ${installed.map((e) => e.program).join(", ")})` : ""),
  );
  process.exitCode = missing.length > 0 ? 1 : 0;
}
