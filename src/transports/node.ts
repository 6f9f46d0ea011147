/**
 * The Node.js transport: TCP and Unix-socket connections through `node:net`.
 *
 * `node:net` is imported at the first connect, so loading this module has no
 * side effects on any runtime. Reads adapt the socket's `'data'`/`'end'`
 * events to the pull-based {@linkcode TransportConnection.read}; the socket's
 * web-stream adapters are avoided (they never report EOF on a half-open
 * socket in Node 20, and are slower).
 *
 * @example Use Node's sockets explicitly
 * ```ts
 * import { ConnectionPool } from "@upstream/pool";
 * import { nodeTransport } from "@upstream/pool/node";
 * const pool = new ConnectionPool({ transport: nodeTransport });
 * ```
 *
 * @module
 */

import type { ResolvedAddress } from "../address.ts";
import type { Transport, TransportConnection, TransportConnectOptions } from "./transport.ts";
import { twoImmediateTurns } from "./_immediate_turns.ts";
import { type AdoptSocket, connectNodeSocket, NodeConnection } from "./_node_net.ts";

export type { Transport, TransportConnection, TransportConnectOptions } from "./transport.ts";
export type { ResolvedAddress } from "../address.ts";

const adopt: AdoptSocket = (socket, tls) => new NodeConnection(socket, tls);

function connect(
  address: ResolvedAddress,
  options: TransportConnectOptions,
): Promise<TransportConnection> {
  return connectNodeSocket(address, options, adopt);
}

// settle() is two chained immediates (_immediate_turns.ts). An immediate runs in the check phase, right
// after the poll phase; but if settle() is called from the poll phase itself
// (an I/O callback, or a promise continuation after one), the first
// immediate runs in that same iteration, and bytes that reached the kernel
// after its `epoll_wait` have not been read yet. The second immediate runs
// only after the next full poll phase, which started after the call.
const settle: () => Promise<void> = twoImmediateTurns;

/**
 * The transport for Node.js: TCP connections made with `node:net`, with
 * Nagle's algorithm off, and Unix-domain socket connections for `{ path }`
 * addresses; half-open sockets allowed, so that
 * {@linkcode TransportConnection.closeWrite} is a real half-close.
 *
 * `node:net` is loaded at the first `connect`, never at import. Connect
 * errors are Node's own, with their `code` (`ECONNREFUSED`, `ENOTFOUND`,
 * `ENOENT` for a missing socket path, ...); an aborted `signal` rejects with the signal's reason and destroys
 * the socket. A `write` resolves as soon as Node has accepted the bytes and
 * its send buffer is below its high-water mark, otherwise at the next
 * `'drain'`; Node may still hold a reference to the chunk until it is sent,
 * so the caller must not modify it afterwards. `settle` costs two turns of
 * `setImmediate` (about 2 µs), far below a loopback round trip.
 *
 * On Bun it also works through Bun's `node:net` (the Bun transport is
 * faster). Not on Deno: there `setImmediate` does not wait for socket
 * events, so `settle` would resolve too early; use the Deno transport.
 *
 * @example Echo one message through a local server
 * ```ts
 * import { createServer } from "node:net";
 * import { resolveAddress } from "@upstream/pool";
 * import { nodeTransport } from "@upstream/pool/node";
 *
 * const server = createServer((peer) => peer.pipe(peer)).listen(0, "127.0.0.1");
 * await new Promise((resolve) => server.once("listening", resolve));
 * const { port } = server.address() as { port: number };
 *
 * const socket = await nodeTransport.connect(resolveAddress({ hostname: "127.0.0.1", port }), {
 *   signal: AbortSignal.timeout(1000),
 * });
 * await socket.write(new TextEncoder().encode("ping"));
 * console.log(new TextDecoder().decode((await socket.read())!)); // "ping"
 * socket.close();
 * server.close();
 * ```
 */
export const nodeTransport: Transport = Object.freeze({
  name: "node",
  connect,
  settle,
});
