// One raw connection per caller, with the runtime's own socket API (Deno's
// `conn.read`/`write`, Bun's socket callbacks, Node's `node:net` events),
// speaking the same HTTP as the pool's client: the baseline for "32 callers
// through the pool ÷ the same callers each on its own connection".
import { resolveAddress, type Transport } from "../../mod.ts";
import { getRequest, ResponseCutShort, ResponseReader } from "../_http.ts";
import { NetHttpConnection } from "./net_connection.ts";

/** One caller's own connection. */
export interface RawHttpConnection {
  /** One GET on this connection; resolves once its response was read. */
  get(): Promise<void>;
  close(): void;
}

/** Connects to 127.0.0.1:`port` with the native API of the runtime this runs on. */
export function connectRaw(port: number): Promise<RawHttpConnection> {
  const host = globalThis as { Deno?: DenoGlobal; Bun?: BunGlobal };
  const request = getRequest(port);
  if (host.Deno !== undefined) return connectDeno(host.Deno, port, request);
  if (host.Bun !== undefined) return connectBun(host.Bun, port, request);
  return NetHttpConnection.connect(port).then((connection) => ({
    get: () => connection.get(request),
    close: () => connection.destroy(),
  }));
}

/** Connects to 127.0.0.1:`port` through `node:net`, whatever the runtime. */
export async function connectRawNodeNet(port: number): Promise<RawHttpConnection> {
  const request = getRequest(port);
  const connection = await NetHttpConnection.connect(port);
  return { get: () => connection.get(request), close: () => connection.destroy() };
}

/**
 * Connects to 127.0.0.1:`port` through one of this library's transports,
 * without the pool: the same write and read loop as the pool's client, so
 * that it shows what the transport layer costs against the native API.
 */
export async function connectRawTransport(
  transport: Transport,
  port: number,
): Promise<RawHttpConnection> {
  const request = getRequest(port);
  const socket = await transport.connect(resolveAddress({ hostname: "127.0.0.1", port }), {});
  return {
    async get() {
      await socket.write(request);
      const reader = new ResponseReader();
      for (;;) {
        const chunk = await socket.read();
        if (chunk === null) throw new ResponseCutShort(reader.received);
        if (reader.push(chunk) >= 0) return;
      }
    },
    close: () => socket.close(),
  };
}

// Only the parts of Deno's and Bun's APIs used here, so tsc needs neither's types.
interface DenoConn {
  read(buffer: Uint8Array): Promise<number | null>;
  write(data: Uint8Array): Promise<number>;
  setNoDelay(noDelay: boolean): void;
  close(): void;
}

interface DenoGlobal {
  connect(options: { hostname: string; port: number }): Promise<DenoConn>;
}

async function connectDeno(
  deno: DenoGlobal,
  port: number,
  request: Uint8Array,
): Promise<RawHttpConnection> {
  const conn = await deno.connect({ hostname: "127.0.0.1", port });
  conn.setNoDelay(true);
  const buffer = new Uint8Array(16 * 1024);
  return {
    async get() {
      for (let written = 0; written < request.length;) {
        written += await conn.write(written === 0 ? request : request.subarray(written));
      }
      const reader = new ResponseReader();
      for (;;) {
        const count = await conn.read(buffer);
        if (count === null) throw new ResponseCutShort(reader.received);
        if (reader.push(buffer.subarray(0, count)) >= 0) return;
      }
    },
    close: () => conn.close(),
  };
}

interface BunSocket {
  readonly data: BunState;
  write(chunk: Uint8Array): number;
  end(): void;
}

interface BunGlobal {
  connect(options: {
    hostname: string;
    port: number;
    data: BunState;
    socket: {
      data(socket: BunSocket, chunk: Uint8Array): void;
      drain(socket: BunSocket): void;
      end(socket: BunSocket): void;
      close(socket: BunSocket): void;
      error(socket: BunSocket, error: Error): void;
    };
  }): Promise<BunSocket>;
}

/** A Bun connection's state: the response being read and the unwritten rest of a request. */
class BunState {
  reader: ResponseReader | undefined;
  rest: Uint8Array | null = null;
  resolve: () => void = () => {};
  reject: (error: Error) => void = () => {};

  data(chunk: Uint8Array): void {
    const reader = this.reader;
    if (reader === undefined) return;
    let used: number;
    try {
      used = reader.push(chunk);
    } catch (error) {
      this.reader = undefined;
      return this.reject(error as Error);
    }
    if (used < 0) return;
    this.reader = undefined;
    this.resolve();
  }

  lost(): void {
    const reader = this.reader;
    if (reader === undefined) return;
    this.reader = undefined;
    this.reject(new ResponseCutShort(reader.received));
  }
}

// One handlers object for every connection (as Bun recommends): state lives in `socket.data`.
const bunHandlers = {
  data: (socket: BunSocket, chunk: Uint8Array): void => socket.data.data(chunk),
  drain: (socket: BunSocket): void => {
    const rest = socket.data.rest;
    if (rest === null) return;
    const taken = socket.write(rest);
    socket.data.rest = taken < rest.length ? rest.subarray(Math.max(taken, 0)) : null;
  },
  end: (socket: BunSocket): void => socket.data.lost(),
  close: (socket: BunSocket): void => socket.data.lost(),
  error: (socket: BunSocket): void => socket.data.lost(),
};

async function connectBun(
  bun: BunGlobal,
  port: number,
  request: Uint8Array,
): Promise<RawHttpConnection> {
  const state = new BunState();
  const socket = await bun.connect({
    hostname: "127.0.0.1",
    port,
    data: state,
    socket: bunHandlers,
  });
  return {
    get() {
      state.reader = new ResponseReader();
      const done = new Promise<void>((resolve, reject) => {
        state.resolve = resolve;
        state.reject = reject;
      });
      const taken = socket.write(request);
      if (taken < request.length) state.rest = request.subarray(Math.max(taken, 0));
      return done;
    },
    close: () => socket.end(),
  };
}
