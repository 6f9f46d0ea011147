// deno-lint-ignore-file no-explicit-any -- hooks see connections of any state type
// The per-address options that shape a connection's life rather than the
// pool's limits: the setup and validate hooks, TCP keepalive, max uses.
import type { UpstreamConnection } from "./connection.ts";
import { checkNumber, show } from "./options.ts";

/** Those options after checks and defaults. */
export interface ConnectionHooks {
  setup: ((connection: UpstreamConnection<any>) => void | Promise<void>) | undefined;
  validate: ((connection: UpstreamConnection<any>) => boolean | Promise<boolean>) | undefined;
  validateAfter: number;
  keepAlive: number | false;
  maxUses: number;
}

/** Reads the hook options of `options`, falling back to `base`; `prefix` names where they came from. */
export function resolveHooks(
  options: Partial<ConnectionHooks>,
  base: ConnectionHooks,
  prefix: string,
): ConnectionHooks {
  const { setup, validate, validateAfter, keepAlive, maxUses } = options;
  for (const [name, hook] of [["setup", setup], ["validate", validate]] as const) {
    if (hook !== undefined && typeof hook !== "function") {
      throw new TypeError(
        `Invalid pool option ${prefix}${name}: expected a function, got ${show(hook)}`,
      );
    }
  }
  let keepAliveMs = base.keepAlive;
  if (keepAlive !== undefined) {
    keepAliveMs = keepAlive === false ? false : checkNumber(`${prefix}keepAlive`, keepAlive, "ms");
    if (keepAliveMs !== false && keepAliveMs !== Infinity && keepAliveMs < 1000) {
      throw new RangeError(
        `Invalid pool option ${prefix}keepAlive: expected at least 1000 ms (the kernel counts whole seconds), or false, got ${keepAliveMs}`,
      );
    }
    if (keepAliveMs === Infinity) keepAliveMs = false;
  }
  return {
    setup: setup ?? base.setup,
    validate: validate ?? base.validate,
    validateAfter: validateAfter === undefined
      ? base.validateAfter
      : checkNumber(`${prefix}validateAfter`, validateAfter, "ms>=0"),
    keepAlive: keepAliveMs,
    maxUses: maxUses === undefined
      ? base.maxUses
      : checkNumber(`${prefix}maxUses`, maxUses, "count>=1"),
  };
}
