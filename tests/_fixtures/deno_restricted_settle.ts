// Deno only. Run with restricted net permissions: --allow-net=127.0.0.1:<port>
// and nothing else, so that settle() can ping neither over an abstract Unix
// socket nor over TCP and must fall back to timer turns; or
// --allow-net=127.0.0.1, which leaves it the TCP ping only. Either way it must
// still deliver bytes or a FIN already received before it resolves. Listens
// on the granted port itself (node:net), connects with denoTransport, and
// prints {"rounds":N,"missed":M,"pingAllowed":bool,"unixPingAllowed":bool}.
import * as net from "node:net";
import process from "node:process";
import { resolveAddress } from "../../src/address.ts";
import { denoTransport } from "../../src/transports/deno.ts";

const port = Number(process.argv[2]);
const deno = (globalThis as unknown as {
  Deno: { permissions: { querySync(d: { name: "net"; host?: string }): { state: string } } };
}).Deno;
const pingAllowed =
  deno.permissions.querySync({ name: "net", host: "127.0.0.1" }).state === "granted";
// The abstract Unix socket ping needs --allow-net for every host.
const unixPingAllowed = deno.permissions.querySync({ name: "net" }).state === "granted";
const accepted: net.Socket[] = [];
const server = net.createServer((socket) => accepted.push(socket));
await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", () => resolve()));
const rounds = 40;
let missed = 0;
for (let i = 0; i < rounds; i++) {
  const socket = await denoTransport.connect(resolveAddress({ hostname: "127.0.0.1", port }), {});
  while (accepted.length === 0) await new Promise((resolve) => setTimeout(resolve, 1));
  const peer = accepted.shift()!;
  let delivered = false;
  socket.read().then(() => delivered = true, () => delivered = true);
  await new Promise((resolve) => setTimeout(resolve, 0));
  await new Promise<void>((resolve) => {
    const check = (): void => {
      denoTransport.settle().then(() => {
        if (!delivered) missed++;
        resolve();
      });
    };
    if (i % 2 === 0) peer.write("x", check);
    else peer.end(check);
  });
  socket.close();
  peer.destroy();
}
server.close();
console.log(JSON.stringify({ rounds, missed, pingAllowed, unixPingAllowed }));
