// A borrowed connection must keep the process alive while its borrower
// waits for the reply, even with nothing else to do (the upstream, in the
// parent process, answers late) and even after pool.close(): sockets are
// unref'd, the pool holds the process open while anything is borrowed.
// Prints the reply if it arrived before the process ended.
// No top-level await: a pending one keeps some runtimes alive by itself.
import process from "node:process";
import { ConnectionPool } from "../../mod.ts";

const [port, mode] = process.argv.slice(2);
const pool = new ConnectionPool();
pool.acquire({ hostname: "127.0.0.1", port: port! }).then(async ({ connection }) => {
  await connection.write(new TextEncoder().encode("request"));
  if (mode === "close-first") pool.close();
  const reply = await connection.read();
  console.log(reply === null ? "EOF" : new TextDecoder().decode(reply));
  pool.release(connection);
  return pool.close();
});
