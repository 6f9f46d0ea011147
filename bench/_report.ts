// What every benchmark shares around its measurements: which runtime it
// runs on, its command-line options, the table it prints, and the one JSON
// line that scripts/bench.mjs collects into BENCHMARKS.md and the chart.
import process from "node:process";

export type RuntimeKey = "deno" | "bun" | "node";

export interface RuntimeInfo {
  readonly key: RuntimeKey;
  /** Such as "Deno 2.9.6". */
  readonly name: string;
  readonly version: string;
}

export function runtime(): RuntimeInfo {
  const host = globalThis as { Deno?: { version: { deno: string } }; Bun?: { version: string } };
  if (host.Deno !== undefined) {
    return { key: "deno", name: `Deno ${host.Deno.version.deno}`, version: host.Deno.version.deno };
  }
  if (host.Bun !== undefined) {
    return { key: "bun", name: `Bun ${host.Bun.version}`, version: host.Bun.version };
  }
  return { key: "node", name: `Node ${process.version}`, version: process.version.slice(1) };
}

/** Numeric options with their defaults; `--quick` switches to the smaller set. */
export type Options<T extends Record<string, number>> = T & { quick: boolean };

/**
 * Reads `--name=value` options (each a non-negative number named in
 * `defaults`) and `--quick`, which starts from `quick` instead. Throws a
 * `TypeError` naming the argument for anything else.
 */
export function parseOptions<T extends Record<string, number>>(
  args: string[],
  defaults: T,
  quick: T,
): Options<T> {
  const isQuick = args.includes("--quick");
  const options: Record<string, number> = { ...(isQuick ? quick : defaults) };
  for (const arg of args) {
    if (arg === "--quick") continue;
    const match = /^--([a-z-]+)=(.*)$/.exec(arg);
    const name = match?.[1]?.replace(/-([a-z])/g, (_, letter: string) => letter.toUpperCase());
    if (match === null || name === undefined || !(name in defaults)) {
      const known = Object.keys(defaults).map((key) => `--${kebab(key)}=N`).join(", ");
      throw new TypeError(`Unknown argument "${arg}": use --quick, ${known}`);
    }
    const value = Number(match[2]);
    if (!Number.isFinite(value) || value <= 0) {
      throw new RangeError(`Invalid ${arg}: expected a positive number`);
    }
    options[name] = value;
  }
  return { ...(options as T), quick: isQuick };
}

function kebab(name: string): string {
  return name.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`);
}

/** Prints rows as aligned columns: the first left-aligned, the others right-aligned. */
export function printTable(rows: string[][]): void {
  const widths = rows[0]!.map((_, column) =>
    Math.max(...rows.map((row) => (row[column] ?? "").length))
  );
  for (const row of rows) {
    console.log(
      row.map((cell, column) =>
        column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!)
      ).join("   ").trimEnd(),
    );
  }
}

/**
 * One headline figure of a benchmark, as the summary, the targets table and
 * (for ratios) the chart show it: a ratio unless `unit` says otherwise.
 */
export interface Ratio {
  /** Stable identifier, such as "overhead.pool-vs-raw". */
  readonly key: string;
  /** What is divided by what, such as "pool ÷ raw round trip". */
  readonly label: string;
  /** A shorter label for a column of a table with one row per runtime. */
  readonly column?: string;
  readonly value: number;
  /** The target, if it sets one. */
  readonly target?: number;
  /** Which way is good for the pool. */
  readonly better: "lower" | "higher";
  /** "×" for a ratio (the default), or what a plain count counts. */
  readonly unit?: string;
  /**
   * True if the ratio pits the pool against another way of doing the same
   * work, so that past 1× on the better side the pool wins; the chart
   * shades that side.
   */
  readonly contest?: boolean;
}

/** One measured figure, for the per-benchmark tables of BENCHMARKS.md. */
export interface Figure {
  readonly label: string;
  readonly value: number;
  /** Such as "µs", "req/s", "B", "×", "" for a count. */
  readonly unit: string;
}

export interface BenchResult {
  readonly bench: string;
  /** A sentence on what was run (sizes, counts), for BENCHMARKS.md. */
  readonly setup: string;
  readonly ratios: Ratio[];
  readonly figures: Figure[];
  /** Anything a reader must know to read the figures (a missed target's cause, a choice made). */
  readonly notes?: string[];
}

/** The prefix of the JSON line scripts/bench.mjs collects. */
export const RESULT_PREFIX = "@@bench-result ";

/** Prints the result's ratios against their targets, then its JSON line. */
export function emitResult(result: BenchResult): void {
  console.log("");
  for (const ratio of result.ratios) {
    const unit = ratio.unit ?? "×";
    const shown = (value: number): string =>
      unit === "×" ? `${value.toFixed(3)}×` : `${value} ${unit}`;
    const verdict = ratio.target === undefined
      ? ""
      : ` (target ${ratio.better === "lower" ? "≤" : "≥"} ${shown(ratio.target)}: ${
        meets(ratio) ? "met" : "missed"
      })`;
    console.log(`${ratio.label}: ${shown(ratio.value)}${verdict}`);
  }
  const { key, version } = runtime();
  console.log(RESULT_PREFIX + JSON.stringify({ ...result, runtime: key, version }));
}

/** True if the ratio has no target or meets it. */
export function meets(ratio: Ratio): boolean {
  if (ratio.target === undefined) return true;
  return ratio.better === "lower" ? ratio.value <= ratio.target : ratio.value >= ratio.target;
}

/** Runs a benchmark's main function: a bad argument exits 2, a failure 1. */
export async function runMain(
  name: string,
  main: (args: string[]) => Promise<void>,
): Promise<void> {
  try {
    await main(process.argv.slice(2));
  } catch (error) {
    const isUsage = error instanceof TypeError || error instanceof RangeError;
    if (isUsage && /^(Unknown argument|Invalid)/.test(error.message)) {
      console.error(`bench/${name}: ${error.message}`);
      process.exitCode = 2;
    } else {
      console.error(error);
      process.exitCode = 1;
    }
  }
}
