// The pool against real upstreams that nobody here wrote: nginx, redis and
// memcached from Debian packages (`npm test` installs them). Each runs on a
// free port of 127.0.0.1 with a config written here and a 1 s idle timeout,
// and is stopped after. The three servers are checked at the same time, so
// their waits overlap. Servers' versions and the numbers of each run are
// logged; the README lists what was tested against which version.
import { after, before, describe, test } from "node:test";
import { runtime } from "./_runtime.ts";
import type { RealServer } from "./_servers/real_server.ts";
import { startMemcached } from "./_servers/memcached.ts";
import { realServersSkipReason } from "./_servers/process.ts";
import { startNginx } from "./_servers/nginx.ts";
import { startRedis } from "./_servers/redis.ts";
import {
  checkIdleClosesSeen,
  checkRandomIdleGaps,
  checkRestartUnderLoad,
} from "./_servers/scenarios.ts";

/** Runs `check` on every server at once; logs each one's summary. */
async function onEachServer(
  servers: RealServer[],
  check: (server: RealServer) => Promise<string>,
): Promise<void> {
  const results = await Promise.allSettled(servers.map(check));
  results.forEach((result, i) => {
    const name = `${servers[i]!.name} (${runtime})`;
    if (result.status === "fulfilled") console.log(`  ${name}: ${result.value}`);
  });
  for (const result of results) if (result.status === "rejected") throw result.reason;
}

// Without the servers (and not under CI, where that fails) each test is
// skipped with the command that installs them.
const skip = realServersSkipReason();
// Bun's default is 5 s per test; these wait out idle timeouts on purpose.
const LONG = { timeout: 60_000, skip };

describe("real servers: nginx, redis, memcached", () => {
  const servers: RealServer[] = [];

  before(async () => {
    if (skip) return;
    const started = await Promise.allSettled([startNginx(), startRedis(), startMemcached()]);
    for (const result of started) if (result.status === "fulfilled") servers.push(result.value);
    for (const result of started) if (result.status === "rejected") throw result.reason;
    for (const server of servers) console.log(`  ${server.name}: ${server.version}`);
  });

  after(async () => {
    await Promise.all(servers.map((server) => server.close()));
  });

  test("idle connections the server closes leave the pool by the idle read", LONG, async () => {
    await onEachServer(servers, (server) => checkIdleClosesSeen(server));
  });

  test("thousands of requests with idle gaps around the timeout: none fails", LONG, async () => {
    await onEachServer(servers, (server) => {
      const { min, max } = server.idleClose;
      const gapMs = { min: Math.max(0, min - 500), max: max + 500 };
      // Enough workers for 2000 requests in about 6 s at these gaps.
      const workers = Math.ceil((2000 * (gapMs.min + gapMs.max) / 2) / 6000);
      return checkRandomIdleGaps(server, { requests: 2000, workers, gapMs });
    });
  });

  test(
    "the server killed and restarted under load: pool errors only, then recovery",
    LONG,
    async () => {
      await onEachServer(servers, (server) => checkRestartUnderLoad(server));
    },
  );
});
