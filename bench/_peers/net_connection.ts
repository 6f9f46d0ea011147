// One HTTP/1.1 connection over a `node:net` socket, the do-it-yourself
// way: events feed the response reader; the connection notes when the
// upstream closed it or sent bytes nobody asked for, but nothing checks
// again before it is reused.
import * as net from "node:net";
import { ResponseCutShort, ResponseReader } from "../_http.ts";

export class NetHttpConnection {
  /** False once the socket ended, failed, or received bytes while idle. */
  alive = true;
  /** The last response said `Connection: close`. */
  closing = false;
  readonly #socket: net.Socket;
  #reader: ResponseReader | undefined;
  #resolve: () => void = () => {};
  #reject: (error: Error) => void = () => {};

  private constructor(socket: net.Socket) {
    this.#socket = socket;
    socket.on("data", (chunk: Uint8Array) => this.#data(chunk));
    socket.on("end", () => this.#lost(undefined));
    socket.on("close", () => this.#lost(undefined));
    socket.on("error", (error: Error) => this.#lost(error));
  }

  /** Connects to 127.0.0.1:`port` with Nagle off. */
  static connect(port: number): Promise<NetHttpConnection> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: "127.0.0.1", port, noDelay: true });
      socket.once("error", reject);
      socket.once("connect", () => {
        socket.off("error", reject);
        resolve(new NetHttpConnection(socket));
      });
    });
  }

  /** Writes `request` and resolves once its complete response was read. */
  get(request: Uint8Array): Promise<void> {
    const reader = new ResponseReader();
    this.#reader = reader;
    const done = new Promise<void>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.#socket.write(request);
    return done;
  }

  destroy(): void {
    this.alive = false;
    this.#socket.destroy();
  }

  #data(chunk: Uint8Array): void {
    const reader = this.#reader;
    if (reader === undefined) {
      this.alive = false; // bytes nobody asked for
      return;
    }
    let used: number;
    try {
      used = reader.push(chunk);
    } catch (error) {
      this.alive = false;
      this.#reader = undefined;
      return this.#reject(error as Error);
    }
    if (used < 0) return;
    this.#reader = undefined;
    if (used < chunk.length) this.alive = false; // more than the response: not reusable
    this.closing = reader.close;
    this.#resolve();
  }

  #lost(error: Error | undefined): void {
    this.alive = false;
    const reader = this.#reader;
    if (reader === undefined) return;
    this.#reader = undefined;
    this.#reject(error ?? new ResponseCutShort(reader.received));
  }
}
