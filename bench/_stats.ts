// Medians, percentiles, and the interleaved measuring loop every benchmark
// uses: variants run in rounds whose order rotates, so machine noise (the
// development machine is shared) spreads over all of them alike.

/** The median of `values` (the mean of the two middle ones for an even count). */
export function median(values: ArrayLike<number>): number {
  const sorted = Float64Array.from(values).sort();
  if (sorted.length === 0) return NaN;
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** The `p`-th percentile (0 to 100) of `values`, by nearest rank. */
export function percentile(values: ArrayLike<number>, p: number): number {
  const sorted = Float64Array.from(values).sort();
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

/** One thing to measure: `once` is timed `count` times per round. */
export interface Variant {
  readonly label: string;
  /** Timed operations per round. */
  readonly count: number;
  once(): Promise<void>;
}

/** What {@linkcode interleave} measured for one variant. */
export interface Timing {
  readonly label: string;
  /** Every operation of every round, in µs. */
  readonly samples: Float64Array;
  /** Median of `samples`, in µs. */
  readonly median: number;
  /** 99th percentile of `samples`, in µs. */
  readonly p99: number;
  /** Median of each round, in µs. */
  readonly roundMedians: number[];
}

/**
 * Runs every variant `rounds` times in a rotating order, timing each
 * operation. A variant whose `once` runs a whole batch (count 1) gets one
 * sample per round: the batch's time.
 */
export async function interleave(variants: Variant[], rounds: number): Promise<Timing[]> {
  const samples = variants.map((variant) => new Float64Array(variant.count * rounds));
  const roundMedians = variants.map((): number[] => []);
  for (let round = 0; round < rounds; round++) {
    for (let step = 0; step < variants.length; step++) {
      const index = (round + step) % variants.length;
      const variant = variants[index]!;
      const times = samples[index]!.subarray(round * variant.count, (round + 1) * variant.count);
      for (let i = 0; i < variant.count; i++) {
        const started = performance.now();
        await variant.once();
        times[i] = (performance.now() - started) * 1000;
      }
      roundMedians[index]!.push(median(times));
    }
  }
  return variants.map((variant, index) => ({
    label: variant.label,
    samples: samples[index]!,
    median: median(samples[index]!),
    p99: percentile(samples[index]!, 99),
    roundMedians: roundMedians[index]!,
  }));
}

/** `"min – max"` of the round medians, for a table's spread column. */
export function spread(timing: Timing, digits = 2): string {
  const low = Math.min(...timing.roundMedians);
  const high = Math.max(...timing.roundMedians);
  return `${low.toFixed(digits)} – ${high.toFixed(digits)}`;
}

/** The largest of `values` (`Math.max(...values)` overflows the stack on long arrays). */
export function maximum(values: ArrayLike<number>): number {
  let largest = -Infinity;
  for (let i = 0; i < values.length; i++) largest = Math.max(largest, values[i]!);
  return largest;
}

/** The smallest of `values`. */
export function minimum(values: ArrayLike<number>): number {
  let smallest = Infinity;
  for (let i = 0; i < values.length; i++) smallest = Math.min(smallest, values[i]!);
  return smallest;
}
