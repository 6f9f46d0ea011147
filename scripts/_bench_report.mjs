// Turns the results scripts/bench.mjs collected into BENCHMARKS.md and the
// chart bench/results/ratios.svg (a hand-written SVG: no chart library).
// Plain JavaScript run by Node: its exports carry no type annotations.
// deno-lint-ignore-file explicit-module-boundary-types
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const BASE_RUNTIMES = [
  { key: "deno", name: "Deno", colour: "#2563eb" },
  { key: "bun", name: "Bun", colour: "#d97706" },
  { key: "node", name: "Node", colour: "#7c3aed" },
];
/** Colours of other Node versions (every benchmark runs on every Node found). */
const NODE_COLOURS = ["#db2777", "#0891b2", "#4d7c0f", "#78716c", "#b91c1c"];
const TITLES = {
  overhead: "1. Overhead: the pool against a raw connection",
  reuse: "2. Reuse: the pool against a connection per request",
  bookkeeping: "3. Bookkeeping: acquire and retain without I/O",
  scale: "4. Scale: 1,000 addresses × 10 idle connections",
  detection: "5. Detection: upstream closes, and dead handoffs",
  contention: "6. Contention: 256 callers, 8 connections",
  peers: "7. Peers: HTTP/1.1 against nginx, side by side with undici, node:http, generic-pool",
  keepalive_edge: "8. Keep-alive edge: failed requests when nginx closes idle connections",
};

/**
 * The runtimes of a report: Deno, Bun, the Node that ran the script, and
 * any other Node versions it found ("node22", …), named by major version
 * when there are several.
 */
function runtimesOf(report) {
  const versions = report.machine.runtimes;
  const others = Object.keys(versions).filter((key) => /^node\d+$/.test(key))
    .sort((a, b) => parseInt(a.slice(4)) - parseInt(b.slice(4)));
  const major = (version) => String(version).replace(/^v/, "").split(".")[0];
  return [
    ...BASE_RUNTIMES.map((runtime) =>
      runtime.key === "node" && others.length > 0
        ? { ...runtime, name: `Node ${major(versions.node)}` }
        : runtime
    ),
    ...others.map((key, index) => ({
      key,
      name: `Node ${key.slice(4)}`,
      colour: NODE_COLOURS[index % NODE_COLOURS.length],
      other: true,
    })),
  ];
}

/** The runtimes that have a result in `results` (one benchmark's, by runtime). */
const ranOn = (runtimes, results) => runtimes.filter((runtime) => results.has(runtime.key));

/** Every ratio of a benchmark, in order of first appearance across runtimes. */
function ratiosOf(results) {
  const seen = new Map();
  for (const result of results.values()) {
    for (const ratio of result.ratios) if (!seen.has(ratio.key)) seen.set(ratio.key, ratio);
  }
  return [...seen.values()];
}

/** Every figure label of a benchmark, in order of first appearance across runtimes. */
function figureLabelsOf(results) {
  const seen = new Set();
  for (const result of results.values()) {
    for (const figure of result.figures) seen.add(figure.label);
  }
  return [...seen];
}

/** The machine and the runtimes, as BENCHMARKS.md states them. */
export function machineInfo(bin) {
  const firstLine = (command, args) => {
    try {
      return execFileSync(command, args, { encoding: "utf8" }).split("\n")[0].trim();
    } catch {
      return "not found";
    }
  };
  let system = `${os.type()} ${os.release()}`;
  try {
    const release = fs.readFileSync("/etc/os-release", "utf8");
    const pretty = /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(release)?.[1];
    if (pretty) system = `${pretty}, kernel ${os.release()}`;
  } catch {
    // Not Linux: os.type() and os.release() say enough.
  }
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model.trim() ?? "unknown",
    cores: cpus.length,
    memoryGiB: os.totalmem() / 2 ** 30,
    system: `${system} (${os.arch()})`,
    loadAverage: os.loadavg(),
    runtimes: {
      deno: firstLine(bin("deno"), ["--version"]).replace(/^deno /, "").replace(/ \(.*$/, ""),
      bun: firstLine(bin("bun"), ["--version"]),
      node: process.version.slice(1),
    },
  };
}

const grouped = (number, digits = 0) =>
  number.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });

/** A figure with its unit, at a precision that suits its size. */
function formatFigure(value, unit) {
  if (!Number.isFinite(value)) return "—";
  if (unit === "µs") {
    const digits = value >= 100 ? 0 : value >= 10 ? 1 : 2;
    return `${grouped(value, digits)} µs`;
  }
  if (unit === "%") return `${value.toFixed(3)}%`;
  if (unit === "×") return `${value.toFixed(2)}×`;
  if (unit === "") return grouped(value);
  if (unit === "B") return `${grouped(value)} B`;
  return `${grouped(value)} ${unit}`;
}

function formatRatio(ratio) {
  const unit = ratio.unit ?? "×";
  if (unit === "×") return `${ratio.value.toFixed(2)}×`;
  return grouped(ratio.value, Number.isInteger(ratio.value) ? 0 : 1);
}

/** Such as "Deno 2.9.6" or "Node 24.22.3". */
function fullName(report, runtime) {
  const version = report.machine.runtimes[runtime.key];
  return `${runtime.key.startsWith("node") ? "Node" : runtime.name} ${version}`;
}

function targetText(ratio) {
  if (ratio.target === undefined) return "—";
  if (ratio.target === 0 && ratio.better === "lower") return "0";
  const unit = ratio.unit ?? "×";
  return `${ratio.better === "lower" ? "≤" : "≥"} ${ratio.target}${unit === "×" ? "×" : ""}`;
}

function meets(ratio) {
  if (ratio.target === undefined) return undefined;
  return ratio.better === "lower" ? ratio.value <= ratio.target : ratio.value >= ratio.target;
}

function byBench(report) {
  const benches = new Map();
  for (const result of report.results) {
    if (!benches.has(result.bench)) benches.set(result.bench, new Map());
    benches.get(result.bench).set(result.runtime, result);
  }
  return benches;
}

const row = (cells) => `| ${cells.join(" | ")} |`;

/** The load averages (1, 5, 15 min) at a run's start and, where recorded, at its end. */
function loads(run) {
  const list = (values) => values.map((each) => each.toFixed(2)).join(", ");
  return `${list(run.machine.loadAverage)} at the start` +
    (run.loadAverageEnd === undefined ? "" : `, ${list(run.loadAverageEnd)} at the end`) +
    " (1, 5, 15 min)";
}

/** When and how a run was made, for the report's opening lines. */
function runLine(run) {
  return `${run.date.slice(0, 10)} at ${run.date.slice(11, 16)} UTC with \`${run.command}\`, ` +
    `which took ${run.minutes.toFixed(1)} minutes`;
}

/** BENCHMARKS.md for one run of scripts/bench.mjs (with any runs merged into it). */
export function renderMarkdown(report, order) {
  const { machine } = report;
  const runtimes = runtimesOf(report);
  const benches = byBench(report);
  const names = order.filter((name) => benches.has(name));
  const shown = runtimes.filter((runtime) =>
    [...benches.values()].some((results) => results.has(runtime.key))
  );
  const merged = report.merged ?? [];
  const mergedBy = new Map(merged.flatMap((run) => run.benches.map((bench) => [bench, run])));
  const versionList = runtimes.map((runtime) => fullName(report, runtime)).join(", ");
  const lines = [
    "# Benchmarks",
    "",
    "<!-- Generated by `npm run bench` (scripts/bench.mjs, scripts/_bench_report.mjs). " +
    "Rerun it rather than editing the figures; bench/analysis.md is the hand-written part. -->",
    "",
    `Measured on ${runLine(report)}` +
    (report.quick ? " (a quick run: fewer rounds and samples than a full one)." : "."),
    ...merged.flatMap((run) => [
      "",
      `Sections ${run.benches.map((bench) => `\`${bench}\``).join(", ")} were measured ` +
      `separately on ${runLine(run)}, and merged in; load average ${loads(run)}.`,
    ]),
    "",
    "| machine | |",
    "| --- | --- |",
    `| CPU | ${machine.cpu}, ${machine.cores} cores |`,
    `| memory | ${machine.memoryGiB.toFixed(1)} GiB |`,
    `| system | ${machine.system} |`,
    `| load average | ${loads(report)} |`,
    `| runtimes | ${versionList} |`,
    "",
    "Every figure is a median over repeated runs, and every ratio compares variants measured side " +
    "by side in the same process and run, interleaved in rounds so that machine noise falls on " +
    "all of them alike. Deno and Bun run the TypeScript sources, Node the npm build. How each " +
    "benchmark works is in the header comment of its file in `bench/`.",
    "",
    "![The main ratios per runtime, on a log scale](bench/results/ratios.svg)",
    "",
    "## Headline figures and targets",
    "",
    row(["benchmark", "figure", "target", ...shown.map((runtime) => runtime.name)]),
    row(["---", "---", "---", ...shown.map(() => "---")]),
  ];
  for (const name of names) {
    const results = benches.get(name);
    for (const ratio of ratiosOf(results)) {
      const cells = shown.map((runtime) => {
        const result = results.get(runtime.key);
        // Other Node versions run only some benchmarks: a blank, not a failure.
        if (result === undefined) return runtime.other ? "—" : "not run";
        const found = result.ratios.find((each) => each.key === ratio.key);
        if (found === undefined) return "n/a";
        const verdict = meets(found);
        return formatRatio(found) + (verdict === undefined ? "" : verdict ? " met" : " **missed**");
      });
      lines.push(row([name, ratio.label, targetText(ratio), ...cells]));
    }
  }
  for (const name of names) {
    const results = benches.get(name);
    const first = [...results.values()][0];
    const here = ranOn(runtimes, results);
    lines.push("", `## ${TITLES[name] ?? name}`, "", `\`bench/${name}.ts\`: ${first.setup}.`, "");
    const run = mergedBy.get(name);
    if (run !== undefined) lines.push(`Measured on ${runLine(run)}.`, "");
    const ratios = ratiosOf(results);
    if (ratios.some((ratio) => ratio.column !== undefined)) {
      // One row per runtime: the ratios side by side, as the issues state them.
      lines.push(
        row(["runtime", ...ratios.map((ratio) => ratio.column ?? ratio.label)]),
        row(["---", ...ratios.map(() => "---")]),
      );
      for (const runtime of here) {
        const result = results.get(runtime.key);
        lines.push(row([
          fullName(report, runtime),
          ...ratios.map((ratio) => {
            const found = result.ratios.find((each) => each.key === ratio.key);
            return found === undefined ? "n/a" : formatRatio(found);
          }),
        ]));
      }
      lines.push("");
    }
    lines.push(
      row(["figure", ...here.map((runtime) => runtime.name)]),
      row(["---", ...here.map(() => "---")]),
    );
    for (const label of figureLabelsOf(results)) {
      const cells = here.map((runtime) => {
        const found = results.get(runtime.key).figures.find((each) => each.label === label);
        return found === undefined ? "—" : formatFigure(found.value, found.unit);
      });
      lines.push(row([label, ...cells]));
    }
    const notes = here.flatMap((runtime) =>
      (results.get(runtime.key).notes ?? []).map((note) => `- ${runtime.name}: ${note}`)
    );
    if (notes.length > 0) lines.push("", ...notes);
    // A benchmark's own hand-written notes, if it has them (bench/<name>.md).
    const notesPath = path.join(root, "bench", `${name}.md`);
    if (fs.existsSync(notesPath)) lines.push("", fs.readFileSync(notesPath, "utf8").trim());
  }
  if (report.failures.length > 0) {
    lines.push("", "## Failed steps", "", ...report.failures.map((failure) => `- ${failure}`));
  }
  const analysisPath = path.join(root, "bench", "analysis.md");
  if (fs.existsSync(analysisPath)) {
    lines.push("", fs.readFileSync(analysisPath, "utf8").trim());
  }
  return lines.join("\n") + "\n";
}

const escapeXml = (text) =>
  String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/**
 * A horizontal bar chart of every ratio, one row per ratio and one bar per
 * runtime, on a log scale. Bars start at 1× (parity), so a bar's direction
 * shows which side won; the shaded band is the good side of the target (or
 * of 1× where there is none).
 */
export function renderSvg(report) {
  const runtimes = runtimesOf(report);
  const rows = [];
  const counts = [];
  for (const [name, results] of byBench(report)) {
    // Each row has a bar for each runtime that ran its benchmark.
    const here = ranOn(runtimes, results);
    for (const ratio of ratiosOf(results)) {
      const values = here.map((runtime) =>
        results.get(runtime.key).ratios.find((each) => each.key === ratio.key)?.value
      );
      if ((ratio.unit ?? "×") !== "×") counts.push({ name, ratio, here, values });
      else rows.push({ name, ratio, here, values });
    }
  }
  const all = rows.flatMap((each) => [...each.values, each.ratio.target ?? 1])
    .filter((value) => value !== undefined && value > 0);
  const ticks = [];
  for (let decade = 0.01; decade <= 1000; decade *= 10) {
    for (const step of [1, 2, 5]) ticks.push(Number((decade * step).toPrecision(1)));
  }
  // Room to the left of the smallest bar for its label.
  const low = Math.max(...ticks.filter((tick) => tick <= Math.min(0.5, ...all) / 1.8));
  const high = Math.min(...ticks.filter((tick) => tick >= Math.max(2, ...all)));
  const shown = ticks.filter((tick) => tick >= low && tick <= high);

  const width = 960;
  const labelWidth = 390;
  const plotLeft = labelWidth + 10;
  const plotRight = width - 70;
  const top = 104;
  const bar = 11;
  const rowHeight = (slots) => Math.max(3, slots) * (bar + 3) + 20;
  const rowTops = [];
  let plotBottom = top;
  for (const each of rows) {
    rowTops.push(plotBottom);
    plotBottom += rowHeight(each.here.length);
  }
  const axisBottom = plotBottom + 6;
  const countLine = 17;
  const height = axisBottom + 40 + counts.length * 2 * countLine;
  const x = (value) => {
    const clamped = Math.min(high, Math.max(low, value));
    return plotLeft +
      (Math.log(clamped / low) / Math.log(high / low)) * (plotRight - plotLeft);
  };
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
    `viewBox="0 0 ${width} ${height}" font-family="system-ui, sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="16" y="26" font-size="17" font-weight="bold">upstream-pool: main ratios per ` +
    `runtime</text>`,
    `<text x="16" y="46" fill="#444">${escapeXml(report.date.slice(0, 10))}, ` +
    `${escapeXml(report.machine.cpu)} × ${report.machine.cores}. Log scale; bars start at 1×. ` +
    `Green: where the pool meets its target, or beats the alternative it is measured against. ` +
    `</text>`,
    `<text x="16" y="62" fill="#444">Red dashes: target. Medians; each ratio measured side by ` +
    `side in one run (BENCHMARKS.md).</text>`,
  ];
  runtimes.forEach((runtime, index) => {
    const left = 16 + index * 140;
    parts.push(
      `<rect x="${left}" y="72" width="14" height="11" fill="${runtime.colour}"/>`,
      `<text x="${left + 20}" y="82">${escapeXml(fullName(report, runtime))}</text>`,
    );
  });
  for (const tick of shown) {
    const at = x(tick).toFixed(1);
    parts.push(
      `<line x1="${at}" y1="${top - 6}" x2="${at}" y2="${axisBottom}" ` +
        `stroke="${tick === 1 ? "#555" : "#ddd"}" stroke-width="${tick === 1 ? 1.5 : 1}"/>`,
      `<text x="${at}" y="${axisBottom + 16}" text-anchor="middle" fill="#444">${tick}×</text>`,
    );
  }
  rows.forEach(({ name, ratio, here, values }, index) => {
    const y = rowTops[index];
    const height = rowHeight(here.length);
    const pivot = ratio.target ?? (ratio.contest ? 1 : undefined);
    if (pivot !== undefined) {
      const [from, to] = ratio.better === "lower" ? [low, pivot] : [pivot, high];
      parts.push(
        `<rect x="${x(from).toFixed(1)}" y="${y - 4}" width="${(x(to) - x(from)).toFixed(1)}" ` +
          `height="${height - 8}" fill="#dcfce7"/>`,
      );
    }
    parts.push(
      `<text x="${labelWidth}" y="${y + 12}" text-anchor="end" font-weight="bold">` +
        `${escapeXml(name)}</text>`,
      `<text x="${labelWidth}" y="${y + 27}" text-anchor="end">${escapeXml(ratio.label)}</text>`,
      `<text x="${labelWidth}" y="${y + 41}" text-anchor="end" fill="#555">` +
        `${ratio.better} is better${
          ratio.target === undefined ? "" : `; target ${escapeXml(targetText(ratio))}`
        }</text>`,
    );
    if (ratio.target !== undefined) {
      const at = x(ratio.target).toFixed(1);
      parts.push(
        `<line x1="${at}" y1="${y - 4}" x2="${at}" y2="${y + height - 12}" stroke="#dc2626" ` +
          `stroke-width="2" stroke-dasharray="4 3"/>`,
      );
    }
    here.forEach((runtime, slot) => {
      const value = values[slot];
      const barY = y + slot * (bar + 3);
      if (value === undefined) {
        parts.push(
          `<text x="${x(1) + 4}" y="${barY + 9}" font-size="10" fill="#888">` +
            `${escapeXml(runtime.name)}: not measured</text>`,
        );
        return;
      }
      const [left, right] = [x(Math.min(1, value)), x(Math.max(1, value))];
      parts.push(
        `<rect x="${left.toFixed(1)}" y="${barY}" width="${
          Math.max(1, right - left).toFixed(1)
        }" ` +
          `height="${bar}" fill="${runtime.colour}"/>`,
        `<text x="${(value >= 1 ? right + 4 : left - 4).toFixed(1)}" y="${barY + 9}" ` +
          `text-anchor="${value >= 1 ? "start" : "end"}" font-size="10">` +
          `${value.toFixed(2)}×</text>`,
      );
    });
  });
  counts.forEach(({ name, ratio, here, values }, index) => {
    const y = axisBottom + 40 + index * 2 * countLine;
    const listed = here.map((runtime, slot) =>
      `${runtime.name} ${
        values[slot] === undefined ? "n/a" : formatRatio({ ...ratio, value: values[slot] })
      }`
    ).join(", ");
    parts.push(
      `<text x="16" y="${y}"><tspan font-weight="bold">${escapeXml(name)}</tspan>: ` +
        `${escapeXml(ratio.label)} (target ${escapeXml(targetText(ratio))})</text>`,
      `<text x="32" y="${y + countLine - 2}" fill="#333">${escapeXml(listed)}</text>`,
    );
  });
  parts.push("</svg>");
  return parts.join("\n") + "\n";
}
