// Picks the transport of the runtime the code runs on. Called at a pool's
// first connect, not at module load, and loads only the adapter it picks.
import type { Transport } from "./transport.ts";

/** The transport for the current runtime: Bun, then Deno, else Node. */
export async function detectTransport(): Promise<Transport> {
  const runtime = globalThis as { Bun?: unknown; Deno?: unknown };
  if (runtime.Bun !== undefined) return (await import("./bun.ts")).bunTransport;
  if (runtime.Deno !== undefined) return (await import("./deno.ts")).denoTransport;
  return (await import("./node.ts")).nodeTransport;
}
