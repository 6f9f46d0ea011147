// The socket pair settle() pings through: a private listener (an abstract
// Unix socket on Linux with unrestricted --allow-net, else TCP on
// 127.0.0.1), a reader that connects to it, and the accepted end, which
// writes the pings.
import {
  closeQuietly,
  deno,
  type DenoConn,
  type DenoListener,
  type DenoTcpConn,
} from "./_deno_api.ts";

export interface LoopbackPair {
  /** The accepted end: pings are written here. */
  readonly writer: DenoConn;
  /** Our end, which connected: pings are read here. */
  readonly reader: DenoConn;
}

// Only use a pair that is allowed: a denied permission must never prompt.
function granted(host?: string): boolean {
  const descriptor = host === undefined ? { name: "net" as const } : { name: "net" as const, host };
  return deno().permissions?.querySync?.(descriptor).state === "granted";
}

/**
 * Opens a pair, or resolves undefined if no private listener is allowed or
 * the pair cannot be proved ours. Never rejects: settle() falls back to timers.
 */
export async function openLoopbackPair(): Promise<LoopbackPair | undefined> {
  try {
    return await openAbstract() ?? await openTcp();
  } catch {
    return undefined;
  }
}

export function closeLoopbackPair(pair: LoopbackPair): void {
  closeQuietly(pair.writer);
  closeQuietly(pair.reader);
}

/** Connects a reader to `listener` and accepts it; closes the listener; both ends, or undefined. */
async function connectPair(
  listener: DenoListener,
  connect: () => Promise<DenoConn>,
): Promise<LoopbackPair | undefined> {
  const [reader, writer] = await Promise.allSettled([connect(), listener.accept()]);
  listener.close();
  if (reader.status === "fulfilled" && writer.status === "fulfilled") {
    return { writer: writer.value, reader: reader.value };
  }
  if (reader.status === "fulfilled") closeQuietly(reader.value);
  if (writer.status === "fulfilled") closeQuietly(writer.value);
  return undefined;
}

// Linux only, and only with unrestricted --allow-net (Deno checks net
// permission for an abstract name, not read/write: it is not a file).
// Nothing on disk, nothing to clean up; a Unix socket ping costs about half
// of a TCP one (no TCP stack, no ACKs): ≈6.6 against ≈11.3 µs.
async function openAbstract(): Promise<LoopbackPair | undefined> {
  if (deno().build?.os !== "linux" || !granted()) return undefined;
  const path = `\0upstream-pool-${crypto.randomUUID()}`;
  let listener: DenoListener;
  try {
    listener = deno().listen({ transport: "unix", path });
  } catch {
    return undefined;
  }
  const pair = await connectPair(listener, () => deno().connect({ transport: "unix", path }));
  if (pair === undefined) return undefined;
  // Abstract names are listed in /proc/net/unix: someone else may have
  // connected first, and then ours was never accepted. Only our own reader
  // gets the nonce; a stranger that stays silent is given up on after a second.
  if (await provesOwn(pair)) return pair;
  closeLoopbackPair(pair);
  return undefined;
}

// TCP on 127.0.0.1, for other systems and for --allow-net=127.0.0.1.
async function openTcp(): Promise<LoopbackPair | undefined> {
  if (!granted("127.0.0.1")) return undefined;
  let listener: DenoListener;
  try {
    listener = deno().listen({ hostname: "127.0.0.1", port: 0, transport: "tcp" });
  } catch {
    return undefined;
  }
  const port = listener.addr.port ?? 0;
  const pair = await connectPair(
    listener,
    () => deno().connect({ hostname: "127.0.0.1", port, transport: "tcp" }),
  );
  if (pair === undefined) return undefined;
  // Someone else may have connected to the listener first.
  if (pair.writer.remoteAddr.port !== pair.reader.localAddr.port) {
    closeLoopbackPair(pair);
    return undefined;
  }
  (pair.writer as DenoTcpConn).setNoDelay(true);
  return pair;
}

async function provesOwn(pair: LoopbackPair): Promise<boolean> {
  const nonce = crypto.getRandomValues(new Uint8Array(16));
  let timer: ReturnType<typeof setTimeout> | undefined;
  const givenUp = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), 1000);
  });
  const checked = (async (): Promise<boolean> => {
    await pair.writer.write(nonce);
    const received = new Uint8Array(nonce.length);
    for (let got = 0; got < nonce.length;) {
      const n = await pair.reader.read(received.subarray(got));
      if (n === null) return false;
      got += n;
    }
    return received.every((byte, i) => byte === nonce[i]);
  })().catch(() => false);
  try {
    return await Promise.race([checked, givenUp]);
  } finally {
    clearTimeout(timer);
  }
}
