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
