// Echo upstreams on many ports, in a Node process of their own, for the
// benchmarks that hold thousands of connections (bench/scale.ts): one
// process has a limit of open files, and Node's server keeps accepting
// where another runtime's node:net server was seen to stop at 1,024.
//
// `node bench/_upstreams.mjs COUNT` listens on COUNT free ports on
// 127.0.0.1, prints `{"ports":[...]}` on one line, writes back whatever
// arrives, and exits when its standard input closes.
//
// `--churn=SHARE,MS` makes them close connections (bench/detection.ts):
// after a reply, with probability SHARE, and one open connection at random
// every MS ms. Each connection's first 4 bytes are then its id (not echoed);
// after closing one, the upstream prints `closed ID`. The line leaves after
// the FIN, so whoever reads it knows the FIN is already on its way.
import net from "node:net";
import process from "node:process";

const count = Number(process.argv[2]);
if (!Number.isInteger(count) || count < 1) {
  console.error(`_upstreams.mjs: expected a port count, got ${JSON.stringify(process.argv[2])}`);
  process.exit(2);
}
const churnArg = process.argv.find((arg) => arg.startsWith("--churn="));
const [closeShare, closeEveryMs] = (churnArg?.slice("--churn=".length) ?? "0,0").split(",")
  .map(Number);

const sockets = new Set();
const ids = new Map();

function close(socket) {
  const id = ids.get(socket);
  if (id === undefined || socket.destroyed) return;
  socket.destroy();
  process.stdout.write(`closed ${id}\n`); // a pipe: written synchronously on Linux
}

/** Echoes, or with --churn reads the id first, then echoes and sometimes closes. */
function serve(socket) {
  if (churnArg === undefined) return socket.on("data", (chunk) => socket.write(chunk));
  let head = Buffer.alloc(0);
  socket.on("data", (chunk) => {
    let data = chunk;
    if (!ids.has(socket)) {
      head = Buffer.concat([head, chunk]);
      if (head.length < 4) return;
      ids.set(socket, head.readUInt32LE(0));
      data = head.subarray(4);
    }
    if (data.length === 0) return;
    if (Math.random() < closeShare) socket.write(data, () => close(socket));
    else socket.write(data);
  });
}

const servers = [];
for (let i = 0; i < count; i++) {
  const server = net.createServer({ noDelay: true }, (socket) => {
    sockets.add(socket);
    serve(socket);
    socket.on("error", () => {}); // a client that exits resets its sockets
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", 4096, resolve);
  });
  servers.push(server);
}
process.stdout.write(
  JSON.stringify({ ports: servers.map((server) => server.address().port) }) + "\n",
);

const churn = churnArg === undefined ? undefined : setInterval(() => {
  const open = [...sockets];
  const victim = open[Math.floor(Math.random() * open.length)];
  if (victim !== undefined) close(victim);
}, closeEveryMs);

process.stdin.on("end", () => {
  clearInterval(churn);
  for (const socket of sockets) socket.destroy();
  for (const server of servers) server.close();
});
process.stdin.resume();
