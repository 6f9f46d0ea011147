// The settle() of the Node and Bun transports: two chained setImmediate
// turns. Each runtime's file says why one is not enough on its event loop;
// the mechanism itself is the same, so it lives here once.

// The turn that callers can still join: one whose first immediate has not
// run yet. A later caller starts a new turn, since its bytes may have
// arrived after that immediate's poll.
let joinableTurn: Promise<void> | undefined;

/**
 * Resolves after two chained immediates, which is after at least one full
 * I/O poll that began after the call, from whatever phase it was called.
 * The immediates stay ref'd: an unref'd immediate can let the loop block in
 * its poll phase.
 */
export function twoImmediateTurns(): Promise<void> {
  return joinableTurn ??= new Promise<void>((resolve) => {
    setImmediate(() => {
      joinableTurn = undefined;
      setImmediate(resolve);
    });
  });
}
