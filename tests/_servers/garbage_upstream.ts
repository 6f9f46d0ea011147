// An upstream that answers every request correctly but, at random moments
// while a connection is idle (between replies), also writes into it a stale
// reply that belongs to someone else's request. Written with node:net, so
// it runs in-process under Deno, Bun and Node.
//
// Protocol: `REQ <id>\n` is answered with `RES <id> <payload of id>\n`. Junk
// is `RES <another request's id> junk<serial>\n`; the upstream notes when
// each piece of junk had been handed to the kernel, so a test can tell junk
// that was already on its way before an acquire from junk that raced it.
import * as net from "node:net";

/** The reply the upstream sends to request `id`. */
export function replyTo(id: number): string {
  return `RES ${id} ${(id * 7919).toString(36)}\n`;
}

export interface GarbageOptions {
  /** The chance that junk is scheduled after a reply (or a new connection). */
  junkChance: number;
  /** Junk goes out this many ms after the connection fell idle, drawn uniformly. */
  junkDelayMs: { min: number; max: number };
}

export class GarbageUpstream {
  readonly address: { hostname: string; port: number };
  /** Pieces of junk written. */
  junkWritten = 0;
  #server: net.Server;
  #open: Set<net.Socket> = new Set();
  #flushedAt: Map<number, number> = new Map();
  #lastId = 0;
  #options: GarbageOptions;

  private constructor(server: net.Server, options: GarbageOptions) {
    this.#server = server;
    this.#options = options;
    this.address = {
      hostname: "127.0.0.1",
      port: (server.address() as net.AddressInfo).port,
    };
  }

  static async start(options: GarbageOptions): Promise<GarbageUpstream> {
    const server = net.createServer({ noDelay: true });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    const upstream = new GarbageUpstream(server, options);
    server.on("connection", (socket) => upstream.#serve(socket));
    return upstream;
  }

  /**
   * When junk `serial` had been handed to the kernel (performance.now()),
   * once its write completed; undefined before.
   */
  junkFlushedAt(serial: number): number | undefined {
    return this.#flushedAt.get(serial);
  }

  async close(): Promise<void> {
    for (const socket of this.#open) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #serve(socket: net.Socket): void {
    this.#open.add(socket);
    socket.on("error", () => {});
    let junkTimer: ReturnType<typeof setTimeout> | undefined;
    let pending = "";
    const idle = (): void => {
      if (Math.random() >= this.#options.junkChance) return;
      const { min, max } = this.#options.junkDelayMs;
      junkTimer = setTimeout(() => this.#writeJunk(socket), min + Math.random() * (max - min));
    };
    socket.on("close", () => {
      clearTimeout(junkTimer);
      this.#open.delete(socket);
    });
    socket.setEncoding("latin1");
    socket.on("data", (text: string) => {
      clearTimeout(junkTimer); // a request came: the connection is busy now
      pending += text;
      let end: number;
      while ((end = pending.indexOf("\n")) >= 0) {
        const id = Number(pending.slice(4, end));
        pending = pending.slice(end + 1);
        this.#lastId = id;
        socket.write(replyTo(id));
      }
      if (pending === "") idle();
    });
    idle();
  }

  #writeJunk(socket: net.Socket): void {
    if (socket.destroyed) return;
    const serial = ++this.junkWritten;
    socket.write(`RES ${this.#lastId} junk${serial}\n`, () => {
      this.#flushedAt.set(serial, performance.now());
    });
  }
}
