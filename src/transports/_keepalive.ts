// TCP keepalive, as the Node and Bun transports hand it to their runtimes.
import type { ResolvedAddress } from "../address.ts";
import type { TransportConnectOptions } from "./transport.ts";

// Linux's largest TCP_KEEPIDLE (32,767 s). Above it the kernel refuses the
// idle time but keeps keepalive on, with whatever idle time was there
// before (Node: libuv's 60 s; Bun: the kernel's 7,200 s), and Bun throws
// above 2^31-1 ms; so a longer time is clamped to the longest one there is.
const LONGEST_IDLE_MS = 32_767_000;

/**
 * The keepalive idle time in ms to set on a connection to `address`, or
 * `undefined` for none: keepalive off, or a Unix-domain socket (no TCP).
 */
export function keepAliveDelay(
  address: ResolvedAddress,
  { keepAlive }: TransportConnectOptions,
): number | undefined {
  if (address.kind !== "tcp" || keepAlive === undefined || keepAlive === false) return undefined;
  return Math.min(keepAlive, LONGEST_IDLE_MS);
}
