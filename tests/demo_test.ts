// The README's first command runs the demo: it must keep working, on every
// runtime. Figures in its output are timings and are not asserted; its
// counts and its failure count are.
import { test } from "node:test";
import assert from "node:assert/strict";
import { runScript } from "./_subprocess.ts";
import { runtime } from "./_runtime.ts";

// Bun's default is 5 s per test; the demo takes longer on a loaded machine.
test("the demo runs against its embedded upstream with no failed request", {
  timeout: 90_000,
}, async () => {
  const result = await runScript("../examples/demo", [], 60_000);
  assert.equal(result.killed, false, "the demo did not finish within 60 s");
  assert.equal(result.code, 0, result.stdout + result.stderr);
  // One connection serves them all; a loaded machine can stall the demo past
  // the upstream's idle timeout, and exchange() then opens another.
  const sequential = /2000 sequential requests\s+(\d+) opened, (\d+) reused/.exec(result.stdout);
  assert.ok(sequential, result.stdout);
  assert.ok(Number(sequential[1]) <= 3, `${sequential[1]} connections opened`);
  const handedOut = Number(sequential[1]) + Number(sequential[2]); // a replay is one more
  assert.ok(handedOut >= 2000 && handedOut <= 2003, `${handedOut} hand-outs`);
  assert.match(result.stdout, /idle after \d+ ms\s+0 \(16 closes noticed while idle/);
  assert.match(result.stdout, /failed requests, whole demo\s+0\n/);
  assert.match(result.stdout, /pool speed-up\s+[\d.]+x/);
  assert.match(
    result.stdout,
    /TLS round trip.*\n\s+through the pool\s+\d+ µs \(1 connection opened\)/,
  );
  // The keep-alive edge: exchange() with an idle deadline loses no request.
  assert.match(result.stdout, /exchange \+ idle deadline\s+0 failed/);
  const resumed = /(\d+) of 500 resumed a session/.exec(result.stdout);
  assert.ok(resumed, result.stdout);
  // Deno has no TLS session API; Node and Bun resume all but the first.
  if (runtime === "deno") assert.equal(resumed[1], "0");
  else assert.ok(Number(resumed[1]) >= 490, `only ${resumed[1]} of 500 resumed`);
});
