// Reads how many tests passed and failed from each runner's report, counting
// leaf tests only, so the same suite gives the same numbers on every runtime.
// Plain JavaScript has no place for the types this rule asks for:
// deno-lint-ignore-file explicit-module-boundary-types
import fs from "node:fs";

/** The last number printed before `label` on a line of its own (bun: " 12 pass"). */
function lastCount(output, pattern) {
  const matches = [...output.matchAll(pattern)];
  return matches.length > 0 ? Number(matches.at(-1)[1]) : 0;
}

/** Bun's closing lines: " N pass", " N skip", " N todo", " N fail", " N error(s)". */
export function countBun(output) {
  const count = (label) => lastCount(output, new RegExp(`^\\s*(\\d+) ${label}\\s*$`, "gm"));
  const ran = output.match(/^Ran (\d+) tests? across (\d+) files?/m);
  return {
    passed: count("pass"),
    failed: count("fail") + count("errors?"),
    skipped: count("skip") + count("todo"),
    summary: ran ? `${ran[2]} files` : "",
  };
}

/** TAP totals from node --test ("# pass N"), or the spec reporter's ("ℹ pass N"). */
export function countTap(tapFile, output) {
  const text = fs.existsSync(tapFile) ? fs.readFileSync(tapFile, "utf8") : output;
  const count = (label) => lastCount(text, new RegExp(`^(?:#|ℹ) ${label} (\\d+)\\s*$`, "gm"));
  return {
    passed: count("pass"),
    failed: count("fail") + count("cancelled"),
    skipped: count("skipped") + count("todo"),
  };
}

const entities = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" };
const unescape = (text) => text.replace(/&(amp|lt|gt|quot|apos);/g, (_, name) => entities[name]);

/**
 * Leaf tests from deno's JUnit report. Deno reports a node:test `describe`
 * as one test and what it holds as steps named "outer > inner", so a test
 * or step is a leaf when no other one is named after it. A test that failed
 * without a failing step below it (a hook that threw) counts as one failure.
 * Without the report, falls back to deno's "ok | N passed | M failed" line.
 */
export function countDenoJunit(junitFile, output) {
  const line = output.match(/^(?:ok|FAILED) \| (\d+) passed.*\| (\d+) failed.*$/m);
  const summary = line ? `deno's own count: ${line[0].replace(/\s*\(\d+m?s\)$/, "")}` : "";
  if (!fs.existsSync(junitFile)) {
    return line ? { passed: Number(line[1]), failed: Number(line[2]), summary } : { summary };
  }
  const xml = fs.readFileSync(junitFile, "utf8");
  const cases = [...xml.matchAll(/<testcase name="([^"]*)"[^>]*>([\s\S]*?)<\/testcase>/g)].map(
    ([, name, body]) => ({
      name: unescape(name),
      failed: body.includes("<failure"),
      skipped: body.includes("<skipped"),
    }),
  );
  const below = (parent) => cases.filter((other) => other.name.startsWith(`${parent.name} > `));
  const counts = { passed: 0, failed: 0, skipped: 0, summary };
  for (const test of cases) {
    const children = below(test);
    if (children.length === 0) {
      if (test.failed) counts.failed++;
      else if (test.skipped) counts.skipped++;
      else counts.passed++;
    } else if (test.failed && !children.some((child) => child.failed)) {
      counts.failed++;
    }
  }
  return counts;
}
