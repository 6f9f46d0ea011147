// A transport that wraps the runtime's own and watches each connection, so a
// test can tell, for every request written, how long that connection had
// been idle and whether its close had already been delivered when the
// request went out: the pool must never hand out a connection whose EOF or
// error it has already seen.
import {
  detectTransport,
  type ResolvedAddress,
  type Transport,
  type TransportConnection,
  type TransportConnectOptions,
} from "../../mod.ts";

/** What the probe saw when a request was written. */
export interface WriteRecord {
  /** Which connection (numbered from 1 in connect order). */
  readonly connection: number;
  /** Milliseconds since the connection last received bytes (or connected). */
  readonly idleMs: number;
  /** True if the connection's EOF or error had already been delivered to the pool. */
  readonly closeSeen: boolean;
}

export class HandoutProbe implements Transport {
  readonly name: string;
  #inner: Transport;
  #connections = 0;
  #writes: WeakMap<Uint8Array, WriteRecord> = new WeakMap();

  private constructor(inner: Transport) {
    this.#inner = inner;
    this.name = `probe(${inner.name})`;
  }

  /** A probe around the transport the pool would pick on this runtime. */
  static async create(): Promise<HandoutProbe> {
    return new HandoutProbe(await detectTransport());
  }

  async connect(
    address: ResolvedAddress,
    options: TransportConnectOptions,
  ): Promise<TransportConnection> {
    const inner = await this.#inner.connect(address, options);
    return new ProbedConnection(inner, ++this.#connections, this.#writes);
  }

  settle(): Promise<void> {
    return this.#inner.settle();
  }

  /** What was seen when `chunk` (the very object given to `write`) was written. */
  writeOf(chunk: Uint8Array): WriteRecord | undefined {
    return this.#writes.get(chunk);
  }
}

class ProbedConnection implements TransportConnection {
  #inner: TransportConnection;
  #id: number;
  #writes: WeakMap<Uint8Array, WriteRecord>;
  #lastReceived = performance.now();
  #closeSeen = false;

  constructor(inner: TransportConnection, id: number, writes: WeakMap<Uint8Array, WriteRecord>) {
    this.#inner = inner;
    this.#id = id;
    this.#writes = writes;
  }

  // The pool chains its own handlers on this promise, so whatever the pool
  // has seen, the probe saw first.
  read(): Promise<Uint8Array | null> {
    return this.#inner.read().then(
      (chunk) => {
        if (chunk === null) this.#closeSeen = true;
        else this.#lastReceived = performance.now();
        return chunk;
      },
      (error) => {
        this.#closeSeen = true;
        throw error;
      },
    );
  }

  write(chunk: Uint8Array): Promise<void> {
    this.#writes.set(chunk, {
      connection: this.#id,
      idleMs: performance.now() - this.#lastReceived,
      closeSeen: this.#closeSeen,
    });
    return this.#inner.write(chunk);
  }

  closeWrite(): Promise<void> {
    return this.#inner.closeWrite();
  }

  close(): void {
    this.#inner.close();
  }

  ref(): void {
    this.#inner.ref();
  }

  unref(): void {
    this.#inner.unref();
  }
}
