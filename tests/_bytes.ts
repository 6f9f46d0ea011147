// Test payloads: bytes that differ with position and seed, so a lost,
// repeated or reordered chunk shows.

/** `size` bytes of a pattern that depends on `seed` and position. */
export function pattern(size: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * seed + (i >> 16)) & 0xff;
  return bytes;
}

/** Whether two byte arrays hold the same bytes. */
export function sameBytes(actual: Uint8Array, expected: Uint8Array): boolean {
  return actual.length === expected.length && actual.every((byte, i) => byte === expected[i]);
}
