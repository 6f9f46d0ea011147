// Not a test: measures how large a margin an idle deadline needs below
// nginx's `keepalive_timeout 1s` for no request to fail, on the runtime that
// runs it. For each margin m, 2,000 requests with no retry, each on a
// connection retained with `retain(connection, { idleTimeout: 1000 - m })`,
// after an idle gap drawn from a band just below that deadline (the gaps
// that put a request nearest the server's close), or from 500-1500 ms as the
// real-server test draws them (SWEEP_GAPS=wide). Prints failed requests per
// margin and run.
//
//   deno run -A tests/_servers/margin_sweep.ts
//   bun tests/_servers/margin_sweep.ts
//   node scripts/build_npm.mjs && node npm/esm/tests/_servers/margin_sweep.js
//
// SWEEP_MARGINS=0,5,10 (ms), SWEEP_RUNS=3, SWEEP_GAPS=band|wide.
import process from "node:process";
import { runtime } from "../_runtime.ts";
import { startNginx } from "./nginx.ts";
import { measureRandomIdleGaps } from "./scenarios.ts";

const margins = (process.env.SWEEP_MARGINS ?? "0,5,10,25,50,100,150,250").split(",").map(Number);
const runs = Number(process.env.SWEEP_RUNS ?? "3");
const wide = process.env.SWEEP_GAPS === "wide";
const requests = 2000;

const server = await startNginx();
try {
  console.log(
    `${runtime}, ${server.version}, gaps ${wide ? "500-1500 ms" : "deadline -100..+20 ms"}`,
  );
  for (let run = 1; run <= runs; run++) {
    for (const margin of margins) {
      const deadline = 1000 - margin;
      const gapMs = wide ? { min: 500, max: 1500 } : { min: deadline - 100, max: deadline + 20 };
      // Enough workers for the requests in about 6 s at these gaps.
      const workers = Math.ceil((requests * (gapMs.min + gapMs.max) / 2) / 6000);
      const result = await measureRandomIdleGaps(server, {
        requests,
        workers,
        gapMs,
        idleDeadline: deadline,
      });
      console.log(`run ${run} margin ${margin} ms: ${result.failed} failed; ${result.summary}`);
    }
  }
} finally {
  await server.close();
}
