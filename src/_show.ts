// How error messages show a caller's value: strings quoted, objects by
// kind, and nothing longer than a line, however long the input. A message
// that echoed a 1,000,000-character host name would be 2 MB long.

/** Characters of a string quoted in a message; the rest is elided. */
const MAX_QUOTED = 64;

/** A value as an error message shows it: `"text"`, `42`, `null`, `an array`, `a Map`. */
export function show(value: unknown): string {
  if (typeof value === "string") return quote(value);
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "function") return "a function";
  if (typeof value === "object") return `an object (${kind(value)})`;
  if (typeof value === "symbol") return "a symbol";
  return String(value);
}

/** A string in double quotes, cut to a bounded length with its full length noted. */
export function quote(text: string): string {
  if (text.length <= MAX_QUOTED) return JSON.stringify(text);
  return `${JSON.stringify(text.slice(0, MAX_QUOTED))}… (${text.length} characters)`;
}

function kind(value: object): string {
  let prototype: object | null;
  try {
    prototype = Object.getPrototypeOf(value);
  } catch {
    return "unknown";
  }
  if (prototype === null) return "null prototype";
  const name = (prototype as { constructor?: { name?: unknown } }).constructor?.name;
  return typeof name === "string" && name !== "" ? quote(name).slice(1, -1) : "anonymous";
}
