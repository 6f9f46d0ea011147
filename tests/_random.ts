// What randomized tests share to be replayable: a seeded xorshift32
// generator (the same seed gives the same run) and the settings, such as a
// seed to replay, read from the environment.
import process from "node:process";

/** An environment variable's text; undefined if unset, empty or not readable. */
export function envText(name: string): string | undefined {
  try {
    const value = process.env[name];
    return value === "" ? undefined : value;
  } catch {
    return undefined; // no permission to read the environment
  }
}

/** An environment variable as a number; undefined if unset, empty or not readable. */
export function envNumber(name: string): number | undefined {
  const value = envText(name);
  return value === undefined ? undefined : Number(value);
}

/** Numbers drawn from a seed. */
export class Random {
  #state: number;

  constructor(seed: number) {
    // Spread small seeds over the 32 bits; xorshift must never hold 0.
    this.#state = (Math.imul(seed ^ 0x2545f491, 0x9e3779b9) >>> 0) || 1;
    for (let i = 0; i < 8; i++) this.next();
  }

  /** A number in [0, 1). */
  next(): number {
    let x = this.#state;
    x = (x ^ (x << 13)) >>> 0;
    x = x ^ (x >>> 17);
    x = (x ^ (x << 5)) >>> 0;
    this.#state = x;
    return x / 0x1_0000_0000;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  /** One of `items`. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
}
