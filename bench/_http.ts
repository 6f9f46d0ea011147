// The HTTP/1.1 the peer benchmarks speak over raw bytes: one keep-alive GET
// and an incremental reader of its response (status line, headers, a body
// of exactly Content-Length bytes). Small on purpose: the clients that work
// on bytes (upstream-pool, generic-pool over node:net, a raw connection)
// share it, so they do the same work per request.

const encoder = new TextEncoder();
const CR = 13;
const LF = 10;

/** `GET <path> HTTP/1.1` to 127.0.0.1:`port`, keep-alive (HTTP/1.1's default). */
export function getRequest(port: number, path = "/"): Uint8Array {
  return encoder.encode(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
}

/** A response that is not the complete 200 with a Content-Length body the benchmarks expect. */
export class BadResponse extends Error {
  override name = "BadResponse";
}

/** The connection ended (EOF) before the response was complete. */
export class ResponseCutShort extends Error {
  override name = "ResponseCutShort";
  /** Bytes of the response received before the end. */
  readonly received: number;

  constructor(received: number) {
    super(`The upstream closed the connection after ${received} bytes of the response`);
    this.received = received;
  }
}

/**
 * Reads one response from the chunks given to `push`. The head is kept
 * only until its end is found; the body is counted, not kept.
 */
export class ResponseReader {
  /** Bytes received so far for this response. */
  received = 0;
  /** The server said `Connection: close`: the connection must not be reused. */
  close = false;
  /** The start of a head split over chunks. */
  #partial: Uint8Array | undefined;
  /** Body bytes still due; -1 while the head is incomplete. */
  #bodyLeft = -1;

  /**
   * Takes the next chunk. Returns -1 while the response is incomplete, or
   * how many bytes of `chunk` completed it (the rest belongs to no one).
   *
   * @throws {BadResponse} For anything but a 200 with a Content-Length.
   */
  push(chunk: Uint8Array): number {
    this.received += chunk.length;
    let at = 0;
    if (this.#bodyLeft < 0) {
      let head = chunk;
      let skip = 0;
      if (this.#partial !== undefined) {
        // Rare: join what came before (at most 16 KiB) with this chunk.
        head = new Uint8Array(this.#partial.length + chunk.length);
        head.set(this.#partial);
        head.set(chunk, this.#partial.length);
        skip = this.#partial.length;
      }
      const end = headEnd(head, Math.max(0, skip - 3));
      if (end < 0) {
        if (head.length > 16_384) throw new BadResponse("Response head longer than 16 KiB");
        this.#partial = head === chunk ? chunk.slice() : head;
        return -1;
      }
      this.#partial = undefined;
      this.#bodyLeft = this.#parseHead(head.subarray(0, end));
      at = end - skip;
    }
    const take = Math.min(this.#bodyLeft, chunk.length - at);
    this.#bodyLeft -= take;
    return this.#bodyLeft === 0 ? at + take : -1;
  }

  #parseHead(head: Uint8Array): number {
    const text = String.fromCharCode.apply(null, head as unknown as number[]);
    if (!text.startsWith("HTTP/1.1 200 ")) {
      throw new BadResponse(`Expected HTTP/1.1 200, got ${JSON.stringify(text.slice(0, 40))}`);
    }
    let length = -1;
    for (const line of text.split("\r\n")) {
      const colon = line.indexOf(":");
      if (colon < 0) continue;
      const name = line.slice(0, colon).toLowerCase();
      const value = line.slice(colon + 1).trim();
      if (name === "content-length") length = Number(value);
      else if (name === "connection") this.close = value.toLowerCase() === "close";
      else if (name === "transfer-encoding") {
        throw new BadResponse(`Transfer-Encoding ${value} is not expected here`);
      }
    }
    if (!Number.isSafeInteger(length) || length < 0) {
      throw new BadResponse("The response has no valid Content-Length");
    }
    return length;
  }
}

/** The index just past the first CRLF CRLF at or after `from`, or -1. */
function headEnd(bytes: Uint8Array, from: number): number {
  for (
    let i = bytes.indexOf(CR, from);
    i >= 0 && i + 3 < bytes.length;
    i = bytes.indexOf(CR, i + 1)
  ) {
    if (bytes[i + 1] === LF && bytes[i + 2] === CR && bytes[i + 3] === LF) return i + 4;
  }
  return -1;
}
