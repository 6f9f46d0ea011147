// An internal alternative to a transport connection's read() that the pool
// uses when a transport offers it: the outcome goes straight to callbacks
// the caller bound once, with no promise in between. A pooled read then
// costs the same turns as a raw one (the runtime's event → the pool → the
// borrower's promise) instead of one promise and one turn more per chunk.

/** A connection that can deliver its next read to callbacks. */
export interface ReadsTo {
  /** As read(), but the outcome goes to `onChunk` (a chunk, or null at EOF) or `onError`. */
  readTo(
    onChunk: (chunk: Uint8Array | null) => void,
    onError: (error: unknown) => void,
  ): void;
}

/** Whether `connection` offers readTo(). */
export function readsTo(connection: object): connection is ReadsTo {
  return typeof (connection as Partial<ReadsTo>).readTo === "function";
}
