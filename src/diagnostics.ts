/**
 * The pool's events on `node:diagnostics_channel`, for tracing and metrics
 * tools that subscribe there (as undici's `undici:client:*` channels do).
 * Each event type has its own channel, named `upstream-pool:` + the type:
 * `upstream-pool:opened`, `upstream-pool:set-up`, `upstream-pool:handed-out`,
 * `upstream-pool:returned`, `upstream-pool:closed`, `upstream-pool:retry`,
 * `upstream-pool:leak`, `upstream-pool:connect-error`, `upstream-pool:expire`.
 * The message is the event object `onEvent` receives.
 *
 * The module is found through `process.getBuiltinModule` (Node 20.16+,
 * Deno 2, Bun), when the first pool is made: nothing is imported, and where
 * there is no such module nothing is published.
 *
 * @example Count hand-outs
 * ```ts ignore
 * import diagnostics from "node:diagnostics_channel";
 * let handedOut = 0;
 * diagnostics.subscribe("upstream-pool:handed-out", () => handedOut++);
 * ```
 *
 * @module
 */
import type { PoolEvent } from "./events.ts";

/** Every event type, hence every channel name after the prefix. */
export const EVENT_TYPES: readonly PoolEvent["type"][] = [
  "opened",
  "set-up",
  "handed-out",
  "returned",
  "closed",
  "retry",
  "leak",
  "connect-error",
  "expire",
];

interface Channel {
  readonly hasSubscribers: boolean;
  publish(message: unknown): void;
}

interface DiagnosticsChannel {
  channel(name: string): Channel;
}

/** Each event type's channel; a plain object of fixed shape, read on every hand-out and return. */
type Channels = Record<PoolEvent["type"], Channel>;

let channels: Channels | null | undefined;

function load(): Channels | null {
  const process = (globalThis as {
    process?: { getBuiltinModule?(name: string): unknown };
  }).process;
  const module = process?.getBuiltinModule?.("node:diagnostics_channel") as
    | DiagnosticsChannel
    | undefined;
  if (module === undefined || typeof module.channel !== "function") return null;
  const table = {} as Channels;
  for (const type of EVENT_TYPES) table[type] = module.channel(`upstream-pool:${type}`);
  return table;
}

/** The pool's side of the channels. */
export const diagnostics: {
  /** Whether the channel of events of `type` has a subscriber: events are built only then (or for `onEvent`). */
  subscribed(type: PoolEvent["type"]): boolean;
  /** Publishes `event` on its channel, if anyone subscribed. */
  publish(event: PoolEvent): void;
} = {
  subscribed(type: PoolEvent["type"]): boolean {
    const table = channels === undefined ? (channels = load()) : channels;
    return table !== null && table[type].hasSubscribers === true;
  },
  publish(event: PoolEvent): void {
    const table = channels === undefined ? (channels = load()) : channels;
    const channel = table?.[event.type];
    if (channel?.hasSubscribers) channel.publish(event);
  },
};
