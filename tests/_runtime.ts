// Which runtime runs the suite; tests of one runtime's transport skip elsewhere.
export type RuntimeName = "deno" | "bun" | "node";

export const runtime: RuntimeName = "Deno" in globalThis
  ? "deno"
  : "Bun" in globalThis
  ? "bun"
  : "node";
