/**
 * Just enough HTTP/1.1 for the reverse proxy in `http_proxy.ts`: a reader
 * of one response (status line, headers, a body framed by `Content-Length`,
 * by chunked coding or by the close of the connection) that takes its bytes
 * from a pooled connection in whatever chunks they arrive, and says at the
 * end whether the connection may be reused.
 *
 * A connection may go back to the pool only when the reply was read to its
 * exact end: its length was known, nothing came after it, and the upstream
 * did not ask to close. Anything else (a parse error, a body that ends at
 * EOF, bytes past the end, an unrequested protocol switch) and the proxy
 * releases the connection instead, so the next request can never read the
 * tail of this one.
 *
 * @module
 */

/** What the reader reads from; an `UpstreamConnection` is one. */
export interface ByteSource {
  read(): Promise<Uint8Array | null>;
}

/** The reply broke the protocol: the connection is in an unknown state and must be closed. */
export class HttpParseError extends Error {
  override name = "HttpParseError";
}

/**
 * The upstream closed its side before the reply was complete. `received`
 * says whether any byte of the reply had come: a reply that never started,
 * on a reused connection, is the keep-alive race that a retry may repair.
 */
export class ReplyCutShort extends Error {
  override name = "ReplyCutShort";
  readonly received: number;

  constructor(received: number) {
    super(
      received === 0
        ? "the upstream closed the connection before replying"
        : `the upstream closed the connection after ${received} bytes of its reply`,
    );
    this.received = received;
  }
}

/**
 * How the body is delimited (RFC 9112 §6.3): none (HEAD, 1xx, 204, 304),
 * `Content-Length`, chunked, or the end of the connection.
 */
export type BodyFraming = "none" | "length" | "chunked" | "close";

/** A parsed status line and header section. */
export interface ResponseHead {
  status: number;
  reason: string;
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  minorVersion: number;
  /** Header fields in order, names as sent. */
  headers: [name: string, value: string][];
  framing: BodyFraming;
  /** The body length when `framing` is `"length"`. */
  length: number;
  /**
   * Whether the upstream lets the connection be reused after this reply:
   * HTTP/1.1 without `Connection: close`, or HTTP/1.0 with `keep-alive`, and
   * a body whose end is known. (The reader still checks nothing follows.)
   */
  keepAlive: boolean;
  /** `Keep-Alive: timeout=N` in milliseconds, when the upstream said it. */
  keepAliveTimeoutMs: number | undefined;
}

const CR = 13;
const LF = 10;
const MAX_HEAD = 64 * 1024;
const MAX_LINE = 4096;
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/**
 * Reads one response from a connection. Body bytes are handed on as
 * subarrays of the received chunks, never copied; only a status line,
 * header or chunk-size line split across chunks is joined.
 *
 * @example
 * ```ts ignore
 * const reader = new ResponseReader(connection);
 * const head = await reader.readHead("GET");
 * for await (const part of reader.body(head)) send(part);
 * if (reader.reusable(head)) pool.retain(connection);
 * else pool.release(connection);
 * ```
 */
export class ResponseReader {
  #source: ByteSource;
  #buffer: Uint8Array = new Uint8Array(0);
  #offset = 0;
  #eof = false;
  #complete = false;
  /** Bytes received from the connection so far. */
  received = 0;

  constructor(source: ByteSource) {
    this.#source = source;
  }

  /** True once the body was read to its end. */
  get complete(): boolean {
    return this.#complete;
  }

  /** Bytes read past the end of the reply (none if the connection is clean). */
  get leftover(): number {
    return this.#buffer.length - this.#offset;
  }

  /**
   * Whether the connection may go back to the pool: the upstream allows it,
   * the body was read to its end, and nothing came after it.
   */
  reusable(head: ResponseHead): boolean {
    return head.keepAlive && this.#complete && this.leftover === 0 && !this.#eof;
  }

  /**
   * Reads the status line and headers of the final response, skipping
   * interim 1xx ones. `method` is the request's: a reply to HEAD has no body.
   *
   * @throws {HttpParseError} If the head is malformed or too large, or the
   * upstream switches protocols (the proxy never asks it to).
   * @throws {ReplyCutShort} If the connection ends first.
   */
  async readHead(method: string): Promise<ResponseHead> {
    for (;;) {
      const head = parseHead(await this.#readSection("response head"), method);
      if (head.status === 101) throw new HttpParseError("the upstream switched protocols unasked");
      if (head.status >= 200) {
        this.#complete = head.framing === "none";
        return head;
      }
    }
  }

  /**
   * The body's bytes, de-chunked. Ends at the body's end; the reader then
   * knows whether the connection is clean.
   *
   * @throws {HttpParseError} On bad chunked coding.
   * @throws {ReplyCutShort} If the connection ends before a delimited body does.
   */
  async *body(head: ResponseHead): AsyncGenerator<Uint8Array> {
    if (head.framing === "length") yield* this.#exactly(head.length);
    else if (head.framing === "chunked") yield* this.#chunked();
    else if (head.framing === "close") {
      while (await this.#fill()) yield this.#take(Infinity);
    }
    this.#complete = true;
  }

  async *#chunked(): AsyncGenerator<Uint8Array> {
    for (;;) {
      const line = await this.#readLine("chunk size");
      const size = /^([0-9A-Fa-f]{1,12})[ \t]*(;.*)?$/.exec(line);
      if (size === null) throw new HttpParseError(`bad chunk size line: ${quote(line)}`);
      const length = parseInt(size[1]!, 16);
      if (length === 0) break;
      yield* this.#exactly(length);
      if ((await this.#readLine("chunk end")) !== "") {
        throw new HttpParseError("chunk data longer than its size");
      }
    }
    // Trailer fields are read and dropped; the blank line ends the message.
    await this.#readSection("trailer section");
  }

  async *#exactly(length: number): AsyncGenerator<Uint8Array> {
    let left = length;
    while (left > 0) {
      if (!await this.#fill()) throw new ReplyCutShort(this.received);
      const part = this.#take(left);
      left -= part.length;
      yield part;
    }
  }

  /**
   * Reads lines up to an empty one and returns them as one Latin-1 text,
   * each with its line end (decoded once, not line by line).
   */
  async #readSection(what: string): Promise<string> {
    let lineStart = 0; // from this.#offset, which a fill moves
    for (;;) {
      const buffer = this.#buffer;
      const base = this.#offset;
      for (
        let lf = buffer.indexOf(LF, base + lineStart);
        lf !== -1;
        lf = buffer.indexOf(LF, lf + 1)
      ) {
        const start = base + lineStart;
        if (lf === start || (lf === start + 1 && buffer[start] === CR)) {
          this.#offset = lf + 1;
          return latin1Decode(buffer.subarray(base, start));
        }
        lineStart = lf + 1 - base;
      }
      if (buffer.length - base > MAX_HEAD) throw new HttpParseError(`${what} too long`);
      if (!await this.#fill(true)) throw new ReplyCutShort(this.received);
    }
  }

  /** One line without its CRLF, as Latin-1 text; a bare LF also ends it (RFC 9112 §2.2). */
  async #readLine(what: string, limit = MAX_LINE): Promise<string> {
    let scanned = 0;
    for (;;) {
      const end = this.#buffer.indexOf(LF, this.#offset + scanned);
      if (end !== -1) {
        const stop = end > this.#offset && this.#buffer[end - 1] === CR ? end - 1 : end;
        if (stop - this.#offset > limit) throw new HttpParseError(`${what} too long`);
        const line = latin1Decode(this.#buffer.subarray(this.#offset, stop));
        this.#offset = end + 1;
        return line;
      }
      scanned = this.#buffer.length - this.#offset;
      if (scanned > limit) throw new HttpParseError(`${what} too long`);
      if (!await this.#fill(true)) throw new ReplyCutShort(this.received);
    }
  }

  /** Takes up to `most` buffered bytes. */
  #take(most: number): Uint8Array {
    const end = Math.min(this.#buffer.length, this.#offset + most);
    const part = this.#buffer.subarray(this.#offset, end);
    this.#offset = end;
    return part;
  }

  /**
   * Makes sure some bytes are buffered (with `more`, some beyond those
   * buffered now). Returns false at EOF.
   */
  async #fill(more = false): Promise<boolean> {
    if (!more && this.#offset < this.#buffer.length) return true;
    if (this.#eof) return false;
    const chunk = await this.#source.read();
    if (chunk === null) {
      this.#eof = true;
      return false;
    }
    this.received += chunk.length;
    const rest = this.#buffer.length - this.#offset;
    if (rest === 0) {
      this.#buffer = chunk;
    } else {
      // A line split across chunks: join what is left with the new chunk.
      const joined = new Uint8Array(rest + chunk.length);
      joined.set(this.#buffer.subarray(this.#offset));
      joined.set(chunk, rest);
      this.#buffer = joined;
    }
    this.#offset = 0;
    return true;
  }
}

/** Parses a status line and header lines (each ending in CRLF, or LF). */
export function parseHead(text: string, method: string): ResponseHead {
  const lines = text.split(/\r?\n/);
  lines.pop();
  const statusLine = /^HTTP\/1\.([01]) ([1-9][0-9]{2})(?: ([^\r\n]*))?$/.exec(lines[0] ?? "");
  if (statusLine === null) throw new HttpParseError(`bad status line: ${quote(lines[0] ?? "")}`);
  const minorVersion = Number(statusLine[1]);
  const status = Number(statusLine[2]);
  const headers: [string, string][] = [];
  const connection = new Set<string>();
  const lengths = new Set<string>();
  let transferEncoding: string | undefined;
  let keepAliveTimeoutMs: number | undefined;
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    const name = line.slice(0, colon);
    // No name, whitespace before the colon, or obsolete line folding.
    if (colon <= 0 || !TOKEN.test(name)) throw new HttpParseError(`bad header: ${quote(line)}`);
    const value = line.slice(colon + 1).trim();
    if (/[\0\r\n]/.test(value)) throw new HttpParseError(`bad header value: ${quote(line)}`);
    headers.push([name, value]);
    switch (name.toLowerCase()) {
      case "connection":
        for (const option of value.toLowerCase().split(",")) connection.add(option.trim());
        break;
      case "content-length":
        for (const length of value.split(",")) lengths.add(length.trim());
        break;
      case "transfer-encoding":
        transferEncoding = transferEncoding === undefined ? value : `${transferEncoding}, ${value}`;
        break;
      case "keep-alive": {
        const timeout = /(?:^|,)\s*timeout\s*=\s*(\d{1,9})\s*(?:,|$)/i.exec(value);
        if (timeout !== null) keepAliveTimeoutMs = Number(timeout[1]) * 1000;
      }
    }
  }
  let framing: BodyFraming;
  let length = 0;
  // Both framings at once smells of request smuggling: the reply is read by
  // Transfer-Encoding, and the connection is not reused (RFC 9112 §6.1).
  let ambiguous = false;
  if (method === "HEAD" || status < 200 || status === 204 || status === 304) {
    framing = "none";
  } else if (transferEncoding !== undefined) {
    const codings = transferEncoding.toLowerCase().split(",").map((coding) => coding.trim());
    framing = codings.at(-1) === "chunked" ? "chunked" : "close";
    ambiguous = lengths.size > 0;
  } else if (lengths.size > 0) {
    const [value] = lengths;
    if (lengths.size > 1 || !/^\d{1,15}$/.test(value!)) {
      throw new HttpParseError(`bad Content-Length: ${quote([...lengths].join(", "))}`);
    }
    framing = "length";
    length = Number(value);
  } else {
    framing = "close";
  }
  const keepAlive = !ambiguous && framing !== "close" && !connection.has("close") &&
    (minorVersion === 1 || connection.has("keep-alive"));
  return {
    status,
    reason: statusLine[3] ?? "",
    minorVersion,
    headers,
    framing,
    length,
    keepAlive,
    keepAliveTimeoutMs,
  };
}

// WHATWG's "latin1" is windows-1252: it differs from ISO-8859-1 only in
// 0x80-0x9F, which it maps above U+00FF where it differs at all.
const windows1252 = new TextDecoder("latin1");

/** Bytes as Latin-1 text, one character per byte (HTTP field values are octets). */
export function latin1Decode(bytes: Uint8Array): string {
  const fast = windows1252.decode(bytes);
  // deno-lint-ignore no-control-regex
  if (!/[^\x00-\xff]/.test(fast)) return fast;
  let text = "";
  for (let i = 0; i < bytes.length; i += 4096) {
    text += String.fromCharCode(...bytes.subarray(i, i + 4096));
  }
  return text;
}

/** Latin-1 text as bytes, one byte per character (the inverse of `latin1Decode`). */
export function latin1Encode(text: string): Uint8Array {
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

/** Input in an error message: at most 80 characters, escaped. */
function quote(text: string): string {
  return JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}…` : text);
}
