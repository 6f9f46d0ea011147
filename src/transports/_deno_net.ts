// TCP and Unix-socket connections through Deno's own node:net, which since
// Deno 2.8 is native: its sockets are libuv-style handles that Deno's event
// loop polls itself and reads straight into a buffer we hand it, with no
// promise and no pending operation per read. On Deno 2.9.6 that made a
// 64-byte round trip cheaper than conn.read()/conn.write() and 32
// concurrent callers faster, and it lets settle() be one ping through such a
// socket (_deno_net_turn.ts) instead of a ping through conn.read().
import type * as net from "node:net";
import type { ResolvedAddress } from "../address.ts";
import type { TransportConnection, TransportConnectOptions } from "./transport.ts";
import { ReceiveQueue } from "./_receive_queue.ts";

const RESOLVED: Promise<void> = Promise.resolve();

let netModule: typeof net | undefined;

/** Loads Deno's node:net once; nothing is imported before the first connect. */
export async function loadNet(): Promise<typeof net> {
  return netModule ??= await import("node:net");
}

// Every connection reads into this one buffer: node:net calls a socket's
// onread callback right after each read into it, before the next read, and
// the callback copies the bytes out. So an idle connection holds no buffer
// at all, and a 64 KiB one serves bulk transfers.
const READ_BUFFER_BYTES = 64 * 1024;
let readBuffer: Uint8Array | undefined;

function ignore(): void {}

function closedError(what: string): Error {
  return new Error(`Cannot ${what}: the connection is closed`);
}

/**
 * One `net.Socket` behind the pull-based connection interface: chunks from
 * its onread callback go through the shared receive queue (which pauses the
 * socket when a reader falls behind); writes wait for `'drain'` when the
 * socket's buffer is full.
 */
class NetConnection implements TransportConnection {
  #socket!: net.Socket;
  #received!: ReceiveQueue;
  /** `close()` was called or the socket closed. */
  #closed = false;
  #counted = true;
  readonly #onClosed: () => void;
  #resolveDrain: (() => void) | undefined;
  #rejectDrain: ((error: unknown) => void) | undefined;

  /** `onClosed` runs once, at the first close(). */
  constructor(onClosed: () => void) {
    this.#onClosed = onClosed;
  }

  /** Takes over `socket`, which was created with `onRead` as its onread callback. */
  attach(socket: net.Socket): void {
    this.#socket = socket;
    this.#received = new ReceiveQueue(socket);
    socket.on("end", this.#onEnd);
    socket.on("error", this.#onError);
    socket.on("close", this.#onClose);
    socket.on("drain", this.#onDrain);
  }

  // Copies out of the shared buffer: it is read into again at once. True:
  // keep reading (the receive queue pauses the socket itself).
  readonly onRead = (length: number, buffer: Uint8Array): boolean => {
    this.#received.push(buffer.slice(0, length));
    return true;
  };

  read(): Promise<Uint8Array | null> {
    return this.#received.read();
  }

  write(chunk: Uint8Array): Promise<void> {
    const socket = this.#socket;
    const error = this.#received.error;
    if (error !== undefined) return Promise.reject(error);
    if (this.#closed || socket.destroyed) return Promise.reject(closedError("write"));
    if (socket.writableEnded) {
      return Promise.reject(new Error("Cannot write: the connection's write side was closed"));
    }
    try {
      // true: the socket took the bytes and its buffer is below the high-water mark.
      if (socket.write(chunk)) return RESOLVED;
    } catch (error) {
      return Promise.reject(error); // a chunk node:net refuses: through the promise, too
    }
    return new Promise((resolve, reject) => {
      this.#resolveDrain = resolve;
      this.#rejectDrain = reject;
    });
  }

  closeWrite(): Promise<void> {
    const socket = this.#socket;
    const error = this.#received.error;
    if (error !== undefined) return Promise.reject(error);
    if (this.#closed || socket.destroyed) {
      return Promise.reject(closedError("close the write side"));
    }
    if (socket.writableFinished) return RESOLVED;
    return new Promise((resolve, reject) => {
      socket.end((error?: Error | null) => error ? reject(error) : resolve());
    });
  }

  close(): void {
    if (this.#counted) {
      this.#counted = false;
      this.#onClosed();
    }
    if (this.#closed) return;
    this.#closed = true;
    this.#socket.destroy();
    this.#received.close(true);
    this.#failWrite(closedError("write"));
  }

  // A destroyed socket would only queue the call for a 'connect' that never comes.
  ref(): void {
    if (!this.#closed) this.#socket.ref();
  }

  unref(): void {
    if (!this.#closed) this.#socket.unref();
  }

  // Handlers are arrow-function fields: bound once per connection, not per event.

  #onEnd = (): void => {
    this.#received.end();
  };

  #onError = (error: Error): void => {
    this.#received.fail(error);
    this.#failWrite(this.#received.error!);
  };

  #onClose = (): void => {
    this.#closed = true;
    this.#received.close(false);
    this.#failWrite(this.#received.error ?? closedError("write"));
  };

  #onDrain = (): void => {
    const resolve = this.#resolveDrain;
    if (resolve !== undefined) {
      this.#resolveDrain = this.#rejectDrain = undefined;
      resolve();
    }
  };

  /** Fails a write waiting for 'drain'. */
  #failWrite(error: Error): void {
    const reject = this.#rejectDrain;
    this.#resolveDrain = this.#rejectDrain = undefined;
    reject?.(error);
  }
}

/**
 * Connects to a TCP (without TLS) or Unix-socket `address` through node:net.
 * `onClosed` runs when the connection is closed; `adjustError` may add a
 * code to a connect failure. Resolves once connected; rejects with
 * node:net's error (which has a `code`) or the signal's reason, and leaves
 * no socket behind then.
 */
export async function connectThroughNodeNet(
  address: ResolvedAddress,
  options: TransportConnectOptions,
  onClosed: () => void,
): Promise<TransportConnection> {
  const api = netModule ?? await loadNet();
  const { signal } = options;
  signal?.throwIfAborted();
  const connection = new NetConnection(onClosed);
  const onread = {
    buffer: readBuffer ??= new Uint8Array(READ_BUFFER_BYTES),
    callback: connection.onRead,
  };
  const socket = api.connect(
    address.kind === "unix" ? { path: address.path, allowHalfOpen: true, onread } : {
      host: address.hostname,
      port: address.port,
      noDelay: true,
      allowHalfOpen: true,
      onread,
    },
  );
  // On or off only, as for Deno.connect: the kernel's times apply
  // (net.ipv4.tcp_keepalive_*); a delay of 0 leaves them alone.
  if (address.kind === "tcp" && options.keepAlive !== undefined && options.keepAlive !== false) {
    socket.setKeepAlive(true, 0);
  }
  await whenConnected(socket, signal);
  connection.attach(socket);
  return connection;
}

/** Resolves once `socket` connects; rejects on an error or an abort, and destroys it then. */
function whenConnected(socket: net.Socket, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (): void => {
      socket.off("connect", onConnect);
      socket.off("error", onError);
      signal?.removeEventListener("abort", onAbort);
    };
    const onConnect = (): void => {
      done();
      resolve();
    };
    const fail = (reason: unknown): void => {
      done();
      socket.on("error", ignore); // nothing may escape as an uncaught 'error'
      socket.destroy();
      reject(reason);
    };
    const onError = (error: Error): void => fail(error);
    const onAbort = (): void => fail(signal!.reason);
    socket.once("connect", onConnect);
    socket.once("error", onError);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
