/**
 * Picks the transport of the runtime the code runs on.
 *
 * @module
 */
import type { Transport } from "./transport.ts";

/**
 * The default transport: Bun's under Bun, Deno's under Deno, otherwise
 * Node's. A pool without an explicit `transport` calls this at its first
 * connect, not at module load, and only the adapter it picks is loaded.
 *
 * @returns The transport for the current runtime.
 *
 * @example See which transport a pool would use
 * ```ts
 * import { detectTransport } from "@upstream/pool";
 * const transport = await detectTransport();
 * console.log(transport.name); // "deno", "bun" or "node"
 * ```
 */
export async function detectTransport(): Promise<Transport> {
  const runtime = globalThis as { Bun?: unknown; Deno?: unknown };
  if (runtime.Bun !== undefined) return (await import("./bun.ts")).bunTransport;
  if (runtime.Deno !== undefined) return (await import("./deno.ts")).denoTransport;
  return (await import("./node.ts")).nodeTransport;
}
