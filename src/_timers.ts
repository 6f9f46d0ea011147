// Timers the pool owns. Each runtime unrefs a timer its own way: Node's and
// Bun's timers are objects with unref(), Deno's are numbers for
// Deno.unrefTimer().

export type TimerHandle = ReturnType<typeof setTimeout>;

/** A timer that does not keep the process alive. */
export function unrefTimeout(callback: () => void, ms: number): TimerHandle {
  const handle = setTimeout(callback, ms);
  if (typeof handle === "object" && handle !== null && "unref" in handle) {
    (handle as { unref(): void }).unref();
  } else {
    (globalThis as { Deno?: { unrefTimer?(id: unknown): void } }).Deno?.unrefTimer?.(handle);
  }
  return handle;
}

/**
 * Keeps the process alive while something waits, by ref'ing one long-lived
 * interval instead of creating a timer each time: toggling a ref is far
 * cheaper than a setInterval/clearInterval pair per acquire.
 */
export class KeepAlive {
  #handle: ReturnType<typeof setInterval> | undefined;
  #held = false;

  hold(): void {
    if (this.#held) return;
    this.#held = true;
    if (this.#handle === undefined) this.#handle = setInterval(() => {}, 1 << 30);
    else setRef(this.#handle, true);
  }

  release(): void {
    if (!this.#held || this.#handle === undefined) return;
    this.#held = false;
    setRef(this.#handle, false);
  }

  close(): void {
    if (this.#handle !== undefined) clearInterval(this.#handle);
    this.#handle = undefined;
    this.#held = false;
  }
}

function setRef(handle: unknown, ref: boolean): void {
  if (typeof handle === "object" && handle !== null && "ref" in handle) {
    const timer = handle as { ref(): void; unref(): void };
    if (ref) timer.ref();
    else timer.unref();
  } else {
    const deno = (globalThis as {
      Deno?: { refTimer?(id: unknown): void; unrefTimer?(id: unknown): void };
    }).Deno;
    if (ref) deno?.refTimer?.(handle);
    else deno?.unrefTimer?.(handle);
  }
}
