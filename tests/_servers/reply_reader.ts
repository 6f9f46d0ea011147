// Reads one complete reply from a borrowed connection, exactly: the tests'
// protocol clients retain a connection only after its whole reply arrived
// and nothing more.
import type { UpstreamConnection } from "../../mod.ts";

const decoder = new TextDecoder();

/** The upstream closed (EOF) before the whole reply arrived: the pool's read returned null. */
export class ReplyCutShort extends Error {
  /** Reply bytes received before the EOF. */
  readonly received: number;

  constructor(received: number) {
    super(`the upstream closed the connection after ${received} reply bytes`);
    this.name = "ReplyCutShort";
    this.received = received;
  }
}

/** Bytes arrived that are not the reply to this request (someone else's, or junk). */
export class ReplyMismatch extends Error {
  /** What arrived, as text. */
  readonly seen: string;

  constructor(expected: string, seen: string) {
    super(`expected ${JSON.stringify(expected)}, got ${JSON.stringify(seen)}`);
    this.name = "ReplyMismatch";
    this.seen = seen;
  }
}

/**
 * One request on a borrowed connection: sends it, then parses the reply
 * from a buffer over `connection.read()`, with the few ways to parse a reply
 * the tests need.
 */
export class ReplyReader {
  /** Reply bytes received so far. */
  received = 0;
  /** The request bytes, once sent (the handout probe knows them by identity). */
  sent: Uint8Array | undefined;
  #connection: UpstreamConnection<unknown>;
  #buffer: Uint8Array = new Uint8Array(0);

  constructor(connection: UpstreamConnection<unknown>) {
    this.#connection = connection;
  }

  /** Writes the request. */
  send(request: string): Promise<void> {
    this.sent = new TextEncoder().encode(request);
    return this.#connection.write(this.sent);
  }

  /** Consumes exactly `expected`; fails as soon as a byte differs. */
  async expect(expected: string): Promise<void> {
    const bytes = new TextEncoder().encode(expected);
    for (;;) {
      const have = Math.min(this.#buffer.length, bytes.length);
      for (let i = 0; i < have; i++) {
        if (this.#buffer[i] !== bytes[i]) throw new ReplyMismatch(expected, this.#text());
      }
      if (have === bytes.length) break;
      await this.#fill();
    }
    this.#buffer = this.#buffer.subarray(bytes.length);
  }

  /** Consumes and returns the text before `delimiter` (the delimiter is consumed too). */
  async until(delimiter: string): Promise<string> {
    for (;;) {
      const text = this.#text();
      const at = text.indexOf(delimiter);
      if (at >= 0) {
        this.#buffer = this.#buffer.subarray(at + delimiter.length); // ASCII protocols only
        return text.slice(0, at);
      }
      await this.#fill();
    }
  }

  /** Consumes and returns the next `length` bytes as text. */
  async take(length: number): Promise<string> {
    while (this.#buffer.length < length) await this.#fill();
    const text = decoder.decode(this.#buffer.subarray(0, length));
    this.#buffer = this.#buffer.subarray(length);
    return text;
  }

  /** Fails if bytes beyond the reply were received. */
  finish(): void {
    if (this.#buffer.length > 0) throw new ReplyMismatch("", this.#text());
  }

  #text(): string {
    return decoder.decode(this.#buffer);
  }

  async #fill(): Promise<void> {
    const chunk = await this.#connection.read();
    if (chunk === null) throw new ReplyCutShort(this.received);
    this.received += chunk.length;
    const joined = new Uint8Array(this.#buffer.length + chunk.length);
    joined.set(this.#buffer);
    joined.set(chunk, this.#buffer.length);
    this.#buffer = joined;
  }
}
