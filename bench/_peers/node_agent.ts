// `node:http` with a keep-alive Agent (`maxSockets` per host), on whichever
// runtime runs it: Node's own, Deno's and Bun's implementations of node:http.
import * as http from "node:http";
import { BODY } from "../_nginx.ts";
import type { HttpClient } from "./client.ts";

/** A keep-alive `http.Agent` with at most `connections` sockets to 127.0.0.1:`port`. */
export function nodeAgentClient(port: number, connections: number): HttpClient {
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
  const options: http.RequestOptions = { agent, host: "127.0.0.1", port, path: "/" };
  return {
    get() {
      return new Promise<void>((resolve, reject) => {
        const request = http.get(options, (response) => {
          if (response.statusCode !== 200) {
            response.resume();
            return reject(new Error(`Expected status 200, got ${response.statusCode}`));
          }
          let length = 0;
          response.on("data", (chunk: Uint8Array) => length += chunk.length);
          response.on(
            "end",
            () =>
              length === BODY.length
                ? resolve()
                : reject(new Error(`Expected ${BODY.length} body bytes, got ${length}`)),
          );
          response.on("error", reject);
        });
        request.on("error", reject);
      });
    },
    close() {
      agent.destroy();
      return Promise.resolve();
    },
  };
}
