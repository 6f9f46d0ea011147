// A socket pair of our own on this machine, for the settle turns: a private
// listener (an abstract Unix socket on Linux with unrestricted --allow-net,
// else TCP on 127.0.0.1), one reader that connects to it, and the accepted
// end, through which the turn writes its pings.
import {
  closeQuietly,
  deno,
  type DenoConn,
  type DenoListener,
  type DenoTcpConn,
} from "./_deno_api.ts";

/** Where a reader connects to: an abstract Unix name, or a port on 127.0.0.1. */
export type LoopbackTarget =
  | { readonly path: string }
  | { readonly hostname: "127.0.0.1"; readonly port: number };

/** How to open and check the reader end of one kind of pair. */
export interface LoopbackReader<R> {
  connect(target: LoopbackTarget): Promise<R>;
  /** Its local port, for a TCP pair: the accepted end must be connected to it. */
  localPort(reader: R): number | undefined;
  /** Resolves with the next `length` bytes the reader receives, or null at EOF or on error. */
  receive(reader: R, length: number): Promise<Uint8Array | null>;
  close(reader: R): void;
}

export interface LoopbackPair<R> {
  /** The accepted end: the turn writes its pings here. */
  readonly writer: DenoConn;
  readonly reader: R;
}

// Only use a pair that is allowed: a denied permission must never prompt.
function granted(host?: string): boolean {
  const descriptor = host === undefined ? { name: "net" as const } : { name: "net" as const, host };
  return deno().permissions?.querySync?.(descriptor).state === "granted";
}

/**
 * Opens a pair, or resolves undefined if no private listener is allowed or
 * the pair cannot be proved ours (never rejects: the turn falls back to timers).
 */
export async function openLoopbackPair<R>(
  kind: LoopbackReader<R>,
): Promise<LoopbackPair<R> | undefined> {
  try {
    return await openAbstract(kind) ?? await openTcp(kind);
  } catch {
    return undefined;
  }
}

export function closeLoopbackPair<R>(kind: LoopbackReader<R>, pair: LoopbackPair<R>): void {
  closeQuietly(pair.writer);
  kind.close(pair.reader);
}

/** Connects a reader to `listener` and accepts it; closes the listener; both ends, or undefined. */
async function connectPair<R>(
  kind: LoopbackReader<R>,
  listener: DenoListener,
  target: LoopbackTarget,
): Promise<LoopbackPair<R> | undefined> {
  const [reader, writer] = await Promise.allSettled([kind.connect(target), listener.accept()]);
  listener.close();
  if (reader.status === "fulfilled" && writer.status === "fulfilled") {
    return { writer: writer.value, reader: reader.value };
  }
  if (reader.status === "fulfilled") kind.close(reader.value);
  if (writer.status === "fulfilled") closeQuietly(writer.value);
  return undefined;
}

// Linux only, and only with unrestricted --allow-net (Deno checks net
// permission for an abstract name, not read/write: it is not a file).
// Nothing on disk, nothing to clean up; a Unix socket ping costs about half
// of a TCP one (no TCP stack, no ACKs).
async function openAbstract<R>(kind: LoopbackReader<R>): Promise<LoopbackPair<R> | undefined> {
  if (deno().build?.os !== "linux" || !granted()) return undefined;
  const path = `\0upstream-pool-${crypto.randomUUID()}`;
  let listener: DenoListener;
  try {
    listener = deno().listen({ transport: "unix", path });
  } catch {
    return undefined;
  }
  const pair = await connectPair(kind, listener, { path });
  if (pair === undefined) return undefined;
  // Abstract names are listed in /proc/net/unix: someone else may have
  // connected first, and then ours was never accepted. Only our own reader
  // gets the nonce; a stranger that stays silent is given up on after a second.
  if (await provesOwn(kind, pair)) return pair;
  closeLoopbackPair(kind, pair);
  return undefined;
}

// TCP on 127.0.0.1, for other systems and for --allow-net=127.0.0.1.
async function openTcp<R>(kind: LoopbackReader<R>): Promise<LoopbackPair<R> | undefined> {
  if (!granted("127.0.0.1")) return undefined;
  let listener: DenoListener;
  try {
    listener = deno().listen({ hostname: "127.0.0.1", port: 0, transport: "tcp" });
  } catch {
    return undefined;
  }
  const port = listener.addr.port ?? 0;
  const pair = await connectPair(kind, listener, { hostname: "127.0.0.1", port });
  if (pair === undefined) return undefined;
  // Someone else may have connected to the listener first.
  if (pair.writer.remoteAddr.port !== kind.localPort(pair.reader)) {
    closeLoopbackPair(kind, pair);
    return undefined;
  }
  (pair.writer as DenoTcpConn).setNoDelay(true);
  return pair;
}

async function provesOwn<R>(kind: LoopbackReader<R>, pair: LoopbackPair<R>): Promise<boolean> {
  const nonce = crypto.getRandomValues(new Uint8Array(16));
  let timer: ReturnType<typeof setTimeout> | undefined;
  const givenUp = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), 1000);
  });
  const checked = (async (): Promise<boolean> => {
    const received = kind.receive(pair.reader, nonce.length);
    await pair.writer.write(nonce);
    const bytes = await received;
    return bytes !== null && bytes.every((byte, i) => byte === nonce[i]);
  })().catch(() => false);
  try {
    return await Promise.race([checked, givenUp]);
  } finally {
    clearTimeout(timer);
  }
}
