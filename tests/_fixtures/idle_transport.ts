// Connects with one runtime transport, leaves a read pending and unrefs the
// connection. The process must then exit by itself: an idle pooled
// connection may not keep a program alive. Prints "idle" once waiting.
import * as fs from "node:fs";
import process from "node:process";
import type { Transport } from "../../src/transports/transport.ts";
import { resolveAddress } from "../../src/address.ts";

// The upstream: a TCP port on 127.0.0.1, or a Unix socket's path; with a CA
// file as third argument, over TLS.
const [transportName, location, caFile] = process.argv.slice(2);
const modules: Record<string, () => Promise<{ transport: Transport }>> = {
  deno: async () => ({ transport: (await import("../../src/transports/deno.ts")).denoTransport }),
  bun: async () => ({ transport: (await import("../../src/transports/bun.ts")).bunTransport }),
  node: async () => ({ transport: (await import("../../src/transports/node.ts")).nodeTransport }),
};
const { transport } = await modules[transportName!]!();
const tls = caFile === undefined ? undefined : { caCerts: [fs.readFileSync(caFile, "utf8")] };
const address = /^[0-9]+$/.test(location!)
  ? { hostname: "127.0.0.1", port: location!, tls }
  : { path: location! };
const socket = await transport.connect(resolveAddress(address), {});
socket.read().then(() => {}, () => {});
socket.unref();
console.log("idle");
