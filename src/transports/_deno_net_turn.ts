// settle() for connections made through Deno's native node:net
// (_deno_net.ts): one ping through a node:net socket of our own, then the
// check phase of that turn of the event loop.
//
// Deno's event loop reads node:net sockets in its poll phase, in one pass
// over the sockets that epoll reported ready (tokio's reactor polls epoll
// only when the loop has nothing else to do, see _deno_reactor_turn.ts),
// and then runs their process.nextTick callbacks (where 'end' and 'error'
// are emitted) and microtasks; setImmediate callbacks run right after. A
// byte written to our pair's far end makes our reader ready; the pass that
// reads it comes from an epoll that started after the write, and epoll
// reports sockets oldest first, so every socket whose bytes or FIN had
// arrived before settle() was called is read in that pass or an earlier
// one. Resolving in the check phase after it lets everything they started
// finish first. Unlike conn.read(), these reads are not held back by
// tokio's budget of 128 operations per turn: a ready socket is read in the
// pass whatever the count, so one ping is enough.
//
// Measured on Deno 2.9.6 (loaded 2-core machine, medians): ≈3.1 µs per
// settle() against ≈4.7-5.0 µs for the conn.read() ping, because the
// reader needs no promise and the writer's conn.write() completes at once.
import type * as net from "node:net";
import {
  closeLoopbackPair,
  type LoopbackPair,
  type LoopbackReader,
  type LoopbackTarget,
  openLoopbackPair,
} from "./_deno_loopback.ts";
import { loadNet } from "./_deno_net.ts";
import { timerTurns } from "./_deno_turns.ts";

const PING = new Uint8Array([0]);

/** Our end of the pair: a node:net socket that reads into its own one-byte buffer. */
class PingReader {
  socket: net.Socket | undefined;
  /** Where received bytes go: the pair's proof while it opens, then the turn. */
  onBytes: (count: number, buffer: Uint8Array) => void = ignore;
  /** Called once if the socket ends or fails. */
  onBroken: () => void = ignore;
  // One byte, the size of a ping. Deno reads a Unix socket only until a
  // read comes back short of the buffer: a longer buffer would leave the
  // socket marked readable, and Deno would then read the next ping in a
  // later turn without asking epoll first. A full buffer makes it read
  // again, get EAGAIN and wait for epoll. (TCP sockets are read until
  // EAGAIN in any case.)
  readonly buffer = new Uint8Array(1);
}

function ignore(): void {}

const pingReader: LoopbackReader<PingReader> = {
  async connect(target: LoopbackTarget): Promise<PingReader> {
    const api = await loadNet();
    const reader = new PingReader();
    const onread = {
      buffer: reader.buffer,
      callback: (count: number, buffer: Uint8Array): boolean => {
        reader.onBytes(count, buffer);
        return true;
      },
    };
    const socket = api.connect(
      "path" in target
        ? { path: target.path, onread }
        : { host: target.hostname, port: target.port, onread },
    );
    reader.socket = socket;
    const broken = (): void => {
      const onBroken = reader.onBroken;
      reader.onBroken = ignore;
      onBroken();
    };
    socket.on("end", broken).on("close", broken).on("error", broken);
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", () => resolve());
      reader.onBroken = () => reject(new Error("the loopback reader failed to connect"));
    });
    reader.onBroken = ignore;
    return reader;
  },
  localPort: (reader) => reader.socket?.localPort,
  receive(reader, length) {
    return new Promise((resolve) => {
      const received = new Uint8Array(length);
      let got = 0;
      reader.onBytes = (count, buffer) => {
        received.set(buffer.subarray(0, Math.min(count, length - got)), got);
        got += count;
        if (got >= length) {
          reader.onBytes = ignore;
          resolve(got === length ? received : null);
        }
      };
      reader.onBroken = () => resolve(null);
    });
  },
  close(reader) {
    reader.onBytes = reader.onBroken = ignore;
    reader.socket?.destroy();
  },
};

/** The callers waiting for one ping: they share its promise. */
class Round {
  readonly promise: Promise<void>;
  resolve!: () => void;

  constructor() {
    this.promise = new Promise((resolve) => this.resolve = resolve);
  }
}

/** Waits for one turn of Deno's event loop that reads every node:net socket already ready. */
export class NetTurn {
  /** Whether any connection still needs the turn; without one, the pair is closed. */
  readonly #needed: () => boolean;
  #pair: LoopbackPair<PingReader> | undefined;
  #opening: Promise<void> | undefined;
  /** The round whose ping is out. */
  #current: Round | undefined;
  /** The current round while callers may still join it: its ping went out in this turn of the loop. */
  #joinable: Round | undefined;
  /** The round after it, whose ping goes out once the current one is read. */
  #next: Round | undefined;
  /** The current round's ping was read: it ends in this turn's check phase. */
  #ending = false;

  constructor(needed: () => boolean) {
    this.#needed = needed;
  }

  wait(): Promise<void> {
    if (this.#joinable !== undefined) return this.#joinable.promise;
    const pair = this.#pair;
    if (pair === undefined) this.#opening ??= this.#open();
    if (pair === undefined || this.#current !== undefined) {
      return (this.#next ??= new Round()).promise;
    }
    const round = new Round();
    this.#start(pair, round);
    return round.promise;
  }

  /** Frees the socket pair; rounds under way end at once (nothing is left to wait for). */
  close(): void {
    const pair = this.#pair;
    this.#pair = undefined;
    if (pair !== undefined) closeLoopbackPair(pingReader, pair);
    this.#endAll();
  }

  // One ping out at a time. Node:net reads a socket until it is empty, so a
  // second ping written after the epoll that reported the first, but before
  // the socket is read, would be read with it: its round would end without
  // an epoll that started after it. The next ping goes out in the check
  // phase, after this turn's poll phase has emptied the socket.
  #start(pair: LoopbackPair<PingReader>, round: Round): void {
    this.#current = round;
    // Later callers may join until this turn of the event loop ends: the
    // epoll that reports the ping cannot have started before them.
    this.#joinable = round;
    queueMicrotask(this.#endJoin);
    pair.reader.socket!.ref(); // only while a ping is out does the reader keep the process alive
    pair.writer.write(PING).then(undefined, this.#onPairBroken);
  }

  #endJoin = (): void => {
    this.#joinable = undefined;
  };

  #onBytes = (): void => {
    if (this.#current === undefined || this.#ending) return;
    this.#ending = true;
    setImmediate(this.#endRound);
  };

  #endRound = (): void => {
    const ended = this.#current;
    this.#ending = false;
    this.#current = undefined;
    const pair = this.#pair;
    if (pair === undefined) return; // closed meanwhile: close() ended every round
    const next = this.#next;
    this.#next = undefined;
    if (next === undefined) pair.reader.socket!.unref();
    else this.#start(pair, next);
    ended?.resolve();
  };

  // The pair stopped working: whoever waits falls back to two timer turns,
  // and the next caller opens a new pair.
  #onPairBroken = (): void => {
    const pair = this.#pair;
    if (pair === undefined) return;
    this.#pair = undefined;
    closeLoopbackPair(pingReader, pair);
    const rounds = [this.#current, this.#next];
    this.#current = this.#next = this.#joinable = undefined;
    this.#ending = false;
    timerTurns().then(() => {
      for (const round of rounds) round?.resolve();
    });
  };

  async #open(): Promise<void> {
    const pair = await openLoopbackPair(pingReader);
    this.#opening = undefined;
    const waiting = this.#next;
    this.#next = undefined;
    if (pair === undefined || !this.#needed()) {
      if (pair !== undefined) closeLoopbackPair(pingReader, pair);
      // No pair allowed (or none needed any more): two timer turns stand in.
      await timerTurns();
      waiting?.resolve();
      return;
    }
    pair.reader.onBytes = this.#onBytes;
    pair.reader.onBroken = this.#onPairBroken;
    pair.reader.socket!.unref();
    this.#pair = pair;
    // One ping serves every caller that waited for the pair.
    if (waiting !== undefined) this.#start(pair, waiting);
  }

  #endAll(): void {
    const rounds = [this.#current, this.#next];
    this.#current = this.#next = this.#joinable = undefined;
    this.#ending = false;
    for (const round of rounds) round?.resolve();
  }
}
