// What a host name or IP literal may be. Checked strictly and the same way
// on every runtime, because each runtime's resolver accepts different
// oddities ("127.1", "0x7f000001", "::1%lo") or fails on them differently,
// and a name that cannot be right should fail at once, with a clear message,
// rather than as a DNS failure (or a 2 MB error message) later.
import { quote } from "./_show.ts";

/** Characters of a host name at most (RFC 1035), not counting a final dot. */
export const MAX_HOSTNAME_LENGTH = 253;
/** Characters of one label of a host name at most (RFC 1035). */
export const MAX_LABEL_LENGTH = 63;
/** Characters of an interface name in a zone id at most (Linux IFNAMSIZ - 1). */
const MAX_ZONE_LENGTH = 15;

/**
 * Checks a host name, IPv4 or IPv6 address (IPv6 optionally in brackets)
 * and returns it normalised: lower case, IPv6 without brackets. A zone id
 * (`fe80::1%eth0`) is allowed only where `zone` is true.
 *
 * @param name The option, for messages: `"hostname"`, `"tls.serverName"`.
 * @throws {TypeError} If it is not a string, or not a well-formed name or address.
 * @throws {RangeError} If the name or one of its labels is too long.
 */
export function normaliseHost(value: unknown, name: string, zone: boolean): string {
  if (typeof value !== "string") {
    throw new TypeError(`Invalid address: ${name} must be a string, got ${typeof value}`);
  }
  const bracketed = value.startsWith("[") && value.endsWith("]");
  const host = bracketed ? value.slice(1, -1) : value;
  if (host === "") throw new TypeError(`Invalid address: ${name} must not be empty`);
  if (host.includes(":") || bracketed) return normaliseIPv6(host, value, name, zone);
  return normaliseHostname(host, name);
}

function normaliseHostname(host: string, name: string): string {
  const shown = `${name} ${quote(host)}`;
  const labels = host.split(".");
  if (labels.length > 1 && labels[labels.length - 1] === "") labels.pop(); // a final dot: "example.com."
  if (host.length - (host.endsWith(".") ? 1 : 0) > MAX_HOSTNAME_LENGTH) {
    throw new RangeError(
      `Invalid address: ${shown} is ${host.length} characters long; a host name has at most ${MAX_HOSTNAME_LENGTH}`,
    );
  }
  for (const label of labels) {
    if (label === "") {
      throw new TypeError(`Invalid address: ${shown} has an empty label (a dot too many)`);
    }
    if (label.length > MAX_LABEL_LENGTH) {
      throw new RangeError(
        `Invalid address: ${shown} has a label of ${label.length} characters; at most ${MAX_LABEL_LENGTH} are allowed`,
      );
    }
    if (!/^[A-Za-z0-9_-]+$/.test(label)) {
      throw new TypeError(
        // deno-lint-ignore no-control-regex -- any character outside ASCII
        /[^\x00-\x7f]/.test(label)
          ? `Invalid address: ${shown} is not ASCII; give an internationalised name in its ASCII form ("xn--...")`
          : `Invalid address: ${shown} is not a host name or IP address (letters, digits, "-", "_" and dots only)`,
      );
    }
  }
  // All-numeric labels mean an IPv4 address. Resolvers read "127.1",
  // "0x7f.1" or "010.0.0.1" (octal) in different ways, or not at all: only
  // the plain dotted quad is accepted.
  if (labels.every((label) => /^(0x[0-9a-f]*|[0-9]+)$/i.test(label)) && !isIPv4(host)) {
    throw new TypeError(
      `Invalid address: ${shown} is not a valid IPv4 address (four decimal numbers from 0 to 255, without leading zeros)`,
    );
  }
  return host.toLowerCase();
}

function normaliseIPv6(host: string, given: string, name: string, zone: boolean): string {
  const at = host.indexOf("%");
  const address = at === -1 ? host : host.slice(0, at);
  if (!isIPv6(address)) {
    throw new TypeError(`Invalid address: ${name} ${quote(given)} is not a valid IPv6 address`);
  }
  if (at === -1) return address.toLowerCase();
  const id = host.slice(at + 1);
  if (!zone) {
    throw new TypeError(`Invalid address: ${name} ${quote(given)} may not have a zone id`);
  }
  if (!isLinkLocal(address)) {
    throw new TypeError(
      `Invalid address: ${name} ${
        quote(given)
      } has a zone id, which only a link-local address (fe80::/10) may have`,
    );
  }
  if (id.length > MAX_ZONE_LENGTH || !/^[A-Za-z0-9_.-]+$/.test(id)) {
    throw new TypeError(
      `Invalid address: ${name} ${quote(given)} has a zone id that is not an interface name`,
    );
  }
  if (/^[0-9]+$/.test(id)) {
    throw new TypeError(
      `Invalid address: ${name} ${
        quote(given)
      } has a numeric zone id; give the interface's name (Node cannot connect with its number)`,
    );
  }
  // Interface names are case-sensitive: only the address is lowered.
  return `${address.toLowerCase()}%${id}`;
}

/** Whether `text` is a dotted-quad IPv4 address: 0-255 four times, no leading zeros. */
export function isIPv4(text: string): boolean {
  const parts = text.split(".");
  return parts.length === 4 &&
    parts.every((part) => /^(0|[1-9][0-9]{0,2})$/.test(part) && Number(part) <= 255);
}

/**
 * Whether `text` is an IPv6 address in any of the textual forms of RFC 4291
 * §2.2: eight groups of 1-4 hex digits, or fewer with one `::` standing for
 * one or more zero groups, the last two groups optionally written as IPv4.
 * No brackets, no zone id.
 */
export function isIPv6(text: string): boolean {
  if (text.length > 45) return false; // the longest form, ffff:...:ffff:255.255.255.255
  const halves = text.split("::");
  if (halves.length > 2) return false;
  let groups = 0;
  for (const [i, half] of halves.entries()) {
    if (half === "") continue;
    const parts = half.split(":");
    for (const [j, part] of parts.entries()) {
      const last = i === halves.length - 1 && j === parts.length - 1;
      if (last && part.includes(".")) {
        if (!isIPv4(part)) return false;
        groups += 2;
      } else if (/^[0-9a-fA-F]{1,4}$/.test(part)) {
        groups++;
      } else {
        return false;
      }
    }
  }
  return halves.length === 2 ? groups <= 7 : groups === 8;
}

/** Whether an IPv6 address (valid, without zone) is link-local unicast, fe80::/10. */
function isLinkLocal(address: string): boolean {
  if (address.startsWith(":")) return false; // "::..." starts with a zero group
  const first = parseInt(address.split(":")[0]!, 16);
  return (first & 0xffc0) === 0xfe80;
}
