// The echo upstream most benchmarks talk to, in this process, and the round
// trip they time: write a payload, read until exactly its bytes came back.
import * as net from "node:net";
import * as tls from "node:tls";
import type { ConnectionPool, UpstreamConnection } from "../mod.ts";

export const PAYLOAD_BYTES = 64;

/** What a raw connection and a pooled one have in common. */
export interface ByteStream {
  read(): Promise<Uint8Array | null>;
  write(chunk: Uint8Array): Promise<void>;
}

export interface EchoUpstream {
  readonly port: number;
  /** Server-side sockets still open, in order of arrival. */
  readonly sockets: Set<net.Socket>;
  close(): Promise<void>;
}

/**
 * Listens on 127.0.0.1 and writes back whatever arrives; with
 * `certificate`, over TLS. `onConnection` may take over a socket's data
 * handling instead (it returns true then).
 */
export async function listenEcho(
  onConnection?: (socket: net.Socket) => boolean,
  certificate?: { cert: string; key: string },
): Promise<EchoUpstream> {
  const sockets = new Set<net.Socket>();
  const serve = (socket: net.Socket): void => {
    socket.setNoDelay(true);
    sockets.add(socket);
    socket.on("error", () => {}); // a client that resets is not the server's problem
    socket.on("close", () => sockets.delete(socket));
    if (onConnection?.(socket) !== true) {
      socket.on("data", (chunk: Uint8Array) => socket.write(chunk));
    }
  };
  const server = certificate === undefined
    ? net.createServer({ noDelay: true }, serve)
    : tls.createServer({ noDelay: true, ...certificate }, serve)
      .on("tlsClientError", () => {}); // a client that gave up mid-handshake
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", 4096, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    sockets,
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * Payloads that differ from one request to the next in every byte, so a
 * stale or misrouted reply shows. `next()` hands them out in turn.
 */
export class Payloads {
  readonly #all: Uint8Array[];
  #sent = 0;

  constructor(bytes: number = PAYLOAD_BYTES) {
    this.#all = Array.from({ length: 256 }, (_, n) => {
      const payload = new Uint8Array(bytes);
      for (let i = 0; i < bytes; i++) payload[i] = (n + i * 3) & 0xff;
      return payload;
    });
  }

  next(): Uint8Array {
    return this.#all[this.#sent++ & 0xff]!;
  }
}

/** Writes `payload` and reads until exactly its bytes came back; throws on anything else. */
export async function roundTrip(connection: ByteStream, payload: Uint8Array): Promise<void> {
  await connection.write(payload);
  let received = 0;
  while (received < payload.length) {
    const chunk = await connection.read();
    if (chunk === null) {
      throw new Error(`The upstream closed after ${received} of ${payload.length} reply bytes`);
    }
    received = checkReply(payload, received, chunk);
  }
}

/** Checks `chunk` against the reply bytes expected from `offset` on; returns the new offset. */
export function checkReply(payload: Uint8Array, offset: number, chunk: Uint8Array): number {
  if (offset + chunk.length > payload.length) {
    throw new Error(`The reply has ${offset + chunk.length} bytes, not ${payload.length}`);
  }
  for (let i = 0; i < chunk.length; i++) {
    if (chunk[i] !== payload[offset + i]) {
      throw new Error(`Reply byte ${offset + i} is ${chunk[i]}, expected ${payload[offset + i]}`);
    }
  }
  return offset + chunk.length;
}

/**
 * One request on a borrowed connection: the round trip, then `retain`. A
 * failed round trip releases the connection first (a borrowed one would
 * outlive the pool's close and keep the process alive).
 */
export async function exchange(
  pool: ConnectionPool,
  connection: UpstreamConnection,
  payload: Uint8Array,
): Promise<void> {
  try {
    await roundTrip(connection, payload);
  } catch (error) {
    pool.release(connection);
    throw error;
  }
  if (!pool.retain(connection)) throw new Error("The pool closed a clean connection");
}
