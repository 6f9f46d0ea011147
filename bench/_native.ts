// One raw TCP connection driven with the runtime's fastest native API, as
// the baseline the pool is measured against: Deno's `conn.read`/`write`,
// Bun's socket callbacks, Node's socket events. No pool, no transport
// layer, no stream wrapper; replies are checked byte for byte like the
// pool's, so both sides do the same work.
import * as net from "node:net";
import { checkReply } from "./_echo.ts";

export interface NativeClient {
  /** Writes `payload` and waits until exactly its bytes came back. */
  roundTrip(payload: Uint8Array): Promise<void>;
  /**
   * Resolves with `performance.now()` at the moment the peer's FIN was
   * seen. Call it only while no round trip is in progress.
   */
  waitForEnd(): Promise<number>;
  close(): void;
}

/** Connects to 127.0.0.1:`port` with the native API of the runtime this runs on. */
export function connectNative(port: number): Promise<NativeClient> {
  const host = globalThis as { Deno?: DenoGlobal; Bun?: BunGlobal };
  if (host.Bun !== undefined) return connectBun(host.Bun, port);
  if (host.Deno !== undefined) return connectDeno(host.Deno, port);
  return connectNode(port);
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

async function connectDeno(deno: DenoGlobal, port: number): Promise<NativeClient> {
  const conn = await deno.connect({ hostname: "127.0.0.1", port });
  conn.setNoDelay(true);
  // Allocated at the first round trip: a socket only held open reads nothing.
  let buffer: Uint8Array | undefined;
  return {
    async roundTrip(payload) {
      buffer ??= new Uint8Array(64 * 1024);
      for (let written = 0; written < payload.length;) {
        written += await conn.write(written === 0 ? payload : payload.subarray(written));
      }
      for (let received = 0; received < payload.length;) {
        const count = await conn.read(buffer);
        if (count === null) throw new Error("The upstream closed during a round trip");
        received = checkReply(payload, received, buffer.subarray(0, count));
      }
    },
    async waitForEnd() {
      const count = await conn.read(new Uint8Array(16));
      if (count !== null) throw new Error("Unexpected bytes on an idle connection");
      return performance.now();
    },
    close: () => conn.close(),
  };
}

/**
 * The state of a callback-driven connection (Bun, Node): the round trip in
 * progress, and who waits for the FIN.
 */
class CallbackState {
  #payload: Uint8Array | null = null;
  #received = 0;
  #resolve: () => void = () => {};
  #reject: (error: unknown) => void = () => {};
  #endedAt = 0;
  #onEnd: ((at: number) => void) | null = null;

  expect(payload: Uint8Array): Promise<void> {
    this.#payload = payload;
    this.#received = 0;
    return new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
  }

  data(chunk: Uint8Array): void {
    const payload = this.#payload;
    if (payload === null) return this.#fail(new Error("Unexpected bytes on an idle connection"));
    try {
      this.#received = checkReply(payload, this.#received, chunk);
    } catch (error) {
      return this.#fail(error);
    }
    if (this.#received === payload.length) {
      this.#payload = null;
      this.#resolve();
    }
  }

  end(): void {
    if (this.#endedAt !== 0) return;
    this.#endedAt = performance.now();
    this.#onEnd?.(this.#endedAt);
    if (this.#payload !== null) this.#fail(new Error("The upstream closed during a round trip"));
  }

  waitForEnd(): Promise<number> {
    if (this.#endedAt !== 0) return Promise.resolve(this.#endedAt);
    return new Promise((resolve) => this.#onEnd = resolve);
  }

  #fail(error: unknown): void {
    this.#payload = null;
    this.#reject(error);
  }
}

interface BunSocket {
  readonly data: BunClientState;
  write(chunk: Uint8Array): number;
  end(): void;
}

interface BunGlobal {
  connect(options: {
    hostname: string;
    port: number;
    data: BunClientState;
    socket: {
      data(socket: BunSocket, chunk: Uint8Array): void;
      drain(socket: BunSocket): void;
      end(socket: BunSocket): void;
      close(socket: BunSocket): void;
      error(socket: BunSocket, error: Error): void;
    };
  }): Promise<BunSocket>;
}

/** Bun takes what it can of a write and keeps nothing: the rest waits for `drain`. */
class BunClientState extends CallbackState {
  rest: Uint8Array | null = null;
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
  end: (socket: BunSocket): void => socket.data.end(),
  close: (socket: BunSocket): void => socket.data.end(),
  error: (socket: BunSocket): void => socket.data.end(),
};

async function connectBun(bun: BunGlobal, port: number): Promise<NativeClient> {
  const state = new BunClientState();
  const socket = await bun.connect({
    hostname: "127.0.0.1",
    port,
    data: state,
    socket: bunHandlers,
  });
  return {
    roundTrip(payload) {
      const done = state.expect(payload);
      const taken = socket.write(payload);
      if (taken < payload.length) state.rest = payload.subarray(Math.max(taken, 0));
      return done;
    },
    waitForEnd: () => state.waitForEnd(),
    close: () => socket.end(),
  };
}

/**
 * Connects to 127.0.0.1:`port` through `node:net` on any runtime: under
 * Deno its own node:net (native since Deno 2.8), the other socket API the
 * Deno transport is measured against.
 */
export function connectNodeNet(port: number): Promise<NativeClient> {
  return connectNode(port);
}

function connectNode(port: number): Promise<NativeClient> {
  const state = new CallbackState();
  const socket = net.connect({ host: "127.0.0.1", port, noDelay: true });
  socket.on("data", (chunk: Uint8Array) => state.data(chunk));
  socket.on("end", () => state.end());
  socket.on("close", () => state.end());
  socket.on("error", () => state.end());
  return new Promise((resolve, reject) => {
    socket.once("error", reject);
    socket.once("connect", () => {
      socket.off("error", reject);
      resolve({
        roundTrip(payload) {
          const done = state.expect(payload);
          socket.write(payload);
          return done;
        },
        waitForEnd: () => state.waitForEnd(),
        close: () => socket.destroy(),
      });
    });
  });
}
