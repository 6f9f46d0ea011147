// What every transport's write() checks before touching its socket, so that
// the same bad chunk fails the same way on every runtime, and through the
// returned promise: Node's socket.write() throws for a chunk whose buffer
// was transferred, while Bun and Deno take it as empty.

/** Why `chunk` cannot be written, or `undefined` if it can. */
export function unwritableChunk(chunk: unknown): TypeError | undefined {
  if (!(chunk instanceof Uint8Array)) {
    const what = chunk === null ? "null" : typeof chunk;
    return new TypeError(`Cannot write: expected a Uint8Array, got ${what}`);
  }
  // A view over a detached buffer reads as empty; only then is it worth a look.
  if (chunk.length === 0 && isDetached(chunk.buffer)) {
    return new TypeError("Cannot write: the chunk's buffer is detached (it was transferred)");
  }
  return undefined;
}

// `ArrayBuffer.prototype.detached` is missing in Node 20; a view over a
// detached buffer cannot be made.
function isDetached(buffer: ArrayBufferLike): boolean {
  try {
    new Uint8Array(buffer);
    return false;
  } catch {
    return true;
  }
}

/**
 * What a write() returns when the runtime took every byte at once: one
 * shared, resolved promise. The pool tells it apart by identity and skips
 * the bookkeeping of a write in flight (two promises and two turns fewer per
 * request); any other promise is waited for as usual.
 */
export const WRITTEN: Promise<void> = Promise.resolve();
