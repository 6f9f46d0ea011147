/**
 * An in-memory transport: upstreams are functions in the same process, no
 * socket is opened. For testing the pool, and code built on it, without a
 * network.
 *
 * It behaves like a runtime in the way that matters to a pool: bytes or a
 * FIN that the upstream sends land in a "receive buffer" first and reach a
 * pending read only at the next delivery turn (a zero-delay timer, or
 * {@linkcode MemoryTransport.settle}).
 *
 * @example An echo upstream
 * ```ts
 * import { ConnectionPool } from "@upstream/pool";
 * import { MemoryTransport } from "@upstream/pool/memory";
 *
 * const transport = new MemoryTransport();
 * transport.listen({ hostname: "echo.test", port: 7 }, (peer) => peer.echo());
 * const pool = new ConnectionPool({ transport });
 * const { connection } = await pool.acquire({ hostname: "echo.test", port: 7 });
 * await connection.write(new TextEncoder().encode("hi"));
 * console.log(new TextDecoder().decode((await connection.read())!)); // "hi"
 * pool.retain(connection);
 * await pool.close();
 * ```
 *
 * @module
 */
import { type Address, resolveAddress, type ResolvedAddress } from "../address.ts";
import type { Transport, TransportConnection, TransportConnectOptions } from "./transport.ts";
import { unwritableChunk } from "./_chunks.ts";

/**
 * Serves one accepted connection; called once the connect has completed.
 * What it returns is ignored.
 *
 * @example An upstream that greets, then echoes
 * ```ts
 * import type { MemoryHandler } from "@upstream/pool/memory";
 * const greeter: MemoryHandler = (peer) => {
 *   peer.write("hello\n");
 *   return peer.echo();
 * };
 * ```
 */
export type MemoryHandler = (peer: MemoryPeer) => unknown;

/**
 * Options for {@linkcode MemoryTransport.listen}.
 *
 * @example Hold every connect until the test lets it through
 * ```ts
 * import { MemoryTransport } from "@upstream/pool/memory";
 * let open = (): void => {};
 * const gate = new Promise<void>((resolve) => open = resolve);
 * const transport = new MemoryTransport();
 * transport.listen({ hostname: "slow.test", port: 1 }, () => {}, { accept: () => gate });
 * open();
 * ```
 */
export interface MemoryListenOptions {
  /**
   * Decides each connect before it completes: the connect waits for the
   * promise it returns, and fails with its error if it rejects. Use it to
   * hold connects open (timeouts, aborts) or to refuse some.
   *
   * @default {accept at once}
   */
  accept?: () => Promise<void> | void;
  /**
   * Decides how long a connect that was aborted before it completed keeps
   * its socket: the connect stays open (in
   * {@linkcode MemoryTransport.openConnections}) and rejects only once the
   * promise this returns settles. Use it to play a runtime that cannot
   * cancel a connect at once.
   *
   * @default {let go at once}
   */
  cancel?: () => Promise<void> | void;
}

interface Listener {
  handler: MemoryHandler;
  accept: (() => Promise<void> | void) | undefined;
  cancel: (() => Promise<void> | void) | undefined;
}

type Inbound = Uint8Array | typeof FIN | Error;
const FIN: unique symbol = Symbol("FIN");
const encoder = new TextEncoder();

function codedError(message: string, code: string): Error {
  return Object.assign(new Error(message), { code });
}

/**
 * The upstream's end of one in-memory connection.
 *
 * @example Send stray bytes into an idle connection
 * ```ts
 * import { MemoryTransport } from "@upstream/pool/memory";
 * const transport = new MemoryTransport();
 * transport.listen({ hostname: "a.test", port: 1 }, (peer) => {
 *   setTimeout(() => peer.write("unexpected"), 10);
 * });
 * ```
 */
export interface MemoryPeer {
  /** The address the client connected to. */
  readonly address: ResolvedAddress;
  /** True once the client closed the connection. */
  readonly closed: boolean;
  /** Whether the client end currently keeps the process alive (`ref`) or not (`unref`). */
  readonly clientRefed: boolean;
  /** The TCP keepalive the client asked for: idle ms, or `false` for none. */
  readonly keepAlive: number | false;
  /**
   * Resolves with the next bytes the client wrote, or `null` once the
   * client half-closed or closed.
   */
  read(): Promise<Uint8Array | null>;
  /** Sends bytes to the client (they reach it at the next delivery turn). */
  write(data: Uint8Array | string): void;
  /** Sends FIN: the client reads `null` after what was written before. */
  end(): void;
  /** Resets the connection: the client's next read rejects with `ECONNRESET`. */
  reset(): void;
  /** Writes back everything the client sends until it closes, then ends. */
  echo(): Promise<void>;
}

class Peer implements MemoryPeer {
  #client: MemoryConnection;

  constructor(client: MemoryConnection) {
    this.#client = client;
  }

  get address(): ResolvedAddress {
    return this.#client.address;
  }

  get closed(): boolean {
    return this.#client.closed;
  }

  get clientRefed(): boolean {
    return this.#client.refed;
  }

  get keepAlive(): number | false {
    return this.#client.keepAlive;
  }

  read(): Promise<Uint8Array | null> {
    return this.#client.takeOutbound();
  }

  write(data: Uint8Array | string): void {
    this.#client.receive(typeof data === "string" ? encoder.encode(data) : data.slice());
  }

  end(): void {
    this.#client.receive(FIN);
  }

  reset(): void {
    this.#client.receive(codedError("connection reset by peer", "ECONNRESET"));
  }

  async echo(): Promise<void> {
    for (let chunk = await this.read(); chunk !== null; chunk = await this.read()) {
      this.write(chunk);
    }
    this.end();
  }
}

// The "runtime" side of the transport: which connections are open and which
// have received something to hand to a pending read at the next turn.
class DeliveryTurns {
  readonly open: Set<MemoryConnection> = new Set();
  #due: Set<MemoryConnection> = new Set();
  #timer: ReturnType<typeof setTimeout> | undefined;

  schedule(connection: MemoryConnection): void {
    this.#due.add(connection);
    this.#timer ??= setTimeout(() => this.run(), 0);
  }

  forget(connection: MemoryConnection): void {
    this.open.delete(connection);
    this.#due.delete(connection);
  }

  run(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    if (this.#due.size === 0) return;
    const due = [...this.#due];
    this.#due.clear();
    for (const connection of due) connection.deliver();
  }
}

/** The client end of an in-memory connection, as the pool sees it. */
class MemoryConnection implements TransportConnection {
  readonly address: ResolvedAddress;
  closed = false;
  refed = true;
  /** Recorded only, for tests: there is no TCP here. */
  keepAlive: number | false = false;
  #turns: DeliveryTurns;
  #inbound: Inbound[] = [];
  #reader: { resolve(chunk: Uint8Array | null): void; reject(error: unknown): void } | null = null;
  #ended = false;
  #outbound: Array<Uint8Array | null> = [];
  #outboundReader: ((chunk: Uint8Array | null) => void) | null = null;
  #writeClosed = false;

  constructor(turns: DeliveryTurns, address: ResolvedAddress) {
    this.#turns = turns;
    this.address = address;
  }

  read(): Promise<Uint8Array | null> {
    if (this.#reader !== null) return Promise.reject(new Error("read already pending"));
    if (this.closed || this.#ended) return Promise.resolve(null);
    return new Promise((resolve, reject) => {
      this.#reader = { resolve, reject };
      if (this.#inbound.length > 0) this.#turns.schedule(this);
    });
  }

  write(chunk: Uint8Array): Promise<void> {
    const invalid = unwritableChunk(chunk);
    if (invalid !== undefined) return Promise.reject(invalid);
    if (this.closed || this.#writeClosed) {
      return Promise.reject(codedError("write after close", "EPIPE"));
    }
    this.#send(chunk.slice());
    return Promise.resolve();
  }

  closeWrite(): Promise<void> {
    if (!this.#writeClosed && !this.closed) {
      this.#writeClosed = true;
      this.#send(null);
    }
    return Promise.resolve();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.#turns.forget(this);
    if (!this.#writeClosed) this.#send(null);
    const reader = this.#reader;
    this.#reader = null;
    reader?.resolve(null);
  }

  ref(): void {
    this.refed = true;
  }

  unref(): void {
    this.refed = false;
  }

  /** Bytes, FIN or an error arrive from the upstream into the receive buffer. */
  receive(item: Inbound): void {
    if (this.closed) return;
    this.#inbound.push(item);
    if (this.#reader !== null) this.#turns.schedule(this);
  }

  /** One delivery turn: a pending read gets the next received item. */
  deliver(): void {
    const reader = this.#reader;
    if (reader === null || this.#inbound.length === 0) return;
    this.#reader = null;
    const item = this.#inbound.shift()!;
    if (item instanceof Uint8Array) return reader.resolve(item);
    this.#ended = true;
    if (item === FIN) return reader.resolve(null);
    this.close();
    reader.reject(item);
  }

  takeOutbound(): Promise<Uint8Array | null> {
    const next = this.#outbound.shift();
    if (next !== undefined) return Promise.resolve(next);
    return new Promise((resolve) => this.#outboundReader = resolve);
  }

  #send(chunk: Uint8Array | null): void {
    const reader = this.#outboundReader;
    this.#outboundReader = null;
    if (reader !== null) reader(chunk);
    else this.#outbound.push(chunk);
  }
}

/**
 * A {@linkcode Transport} whose upstreams are handlers in this process.
 *
 * Connecting to an address nobody listens on fails with `ECONNREFUSED`;
 * host names ending in `.invalid` fail with `ENOTFOUND`.
 *
 * @example
 * ```ts
 * import { MemoryTransport } from "@upstream/pool/memory";
 * const transport = new MemoryTransport();
 * transport.listen({ hostname: "db.test", port: 5432 }, (peer) => peer.echo());
 * console.log(transport.openConnections); // 0
 * ```
 */
export class MemoryTransport implements Transport {
  /** Always `"memory"`. */
  readonly name: string = "memory";
  #listeners: Map<string, Listener> = new Map();
  #turns: DeliveryTurns = new DeliveryTurns();

  /** How many client connections are open right now. */
  get openConnections(): number {
    return this.#turns.open.size;
  }

  /**
   * Accepts connections to `address` with `handler`, replacing any earlier one.
   *
   * @param address Where the upstream listens.
   * @param handler Serves each accepted connection.
   * @param options How connects are accepted.
   */
  listen(address: Address, handler: MemoryHandler, options: MemoryListenOptions = {}): void {
    this.#listeners.set(resolveAddress(address).key, {
      handler,
      accept: options.accept,
      cancel: options.cancel,
    });
  }

  /**
   * Stops accepting connections to `address`; open ones stay open.
   *
   * @param address Where the upstream listened.
   */
  unlisten(address: Address): void {
    this.#listeners.delete(resolveAddress(address).key);
  }

  /**
   * Connects to the handler listening on `address`.
   *
   * @param address The upstream.
   * @param options An abort signal.
   * @returns The client end of the connection.
   */
  connect(
    address: ResolvedAddress,
    options: TransportConnectOptions = {},
  ): Promise<TransportConnection> {
    const { signal } = options;
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (address.kind === "tcp" && address.hostname.endsWith(".invalid")) {
      return Promise.reject(codedError(`getaddrinfo ENOTFOUND ${address.key}`, "ENOTFOUND"));
    }
    const listener = this.#listeners.get(address.key);
    if (listener === undefined) {
      return Promise.reject(codedError(`connect ECONNREFUSED ${address.key}`, "ECONNREFUSED"));
    }
    const connection = new MemoryConnection(this.#turns, address);
    connection.keepAlive = options.keepAlive ?? false;
    this.#turns.open.add(connection);
    return new Promise((resolve, reject) => {
      let aborted = false;
      const onAbort = (): void => {
        aborted = true;
        const gone = (): void => {
          connection.close();
          reject(signal!.reason);
        };
        if (listener.cancel === undefined) gone();
        else Promise.resolve().then(listener.cancel).then(gone, gone);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      Promise.resolve().then(listener.accept).then(
        () => {
          signal?.removeEventListener("abort", onAbort);
          if (aborted) return;
          listener.handler(new Peer(connection));
          resolve(connection);
        },
        (error) => {
          signal?.removeEventListener("abort", onAbort);
          if (aborted) return;
          connection.close();
          reject(error);
        },
      );
    });
  }

  /** Delivers everything received so far to pending reads, at once. */
  settle(): Promise<void> {
    this.#turns.run();
    return Promise.resolve();
  }
}
