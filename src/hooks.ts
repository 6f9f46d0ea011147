// Runs the pool's connection hooks: `setup` on every new connection and
// `validate` before handing out one that sat idle. Each gets a time budget
// and a handle of its own; a hook that throws, hangs or leaves the byte
// stream dirty fails, and the scheduler closes the connection.
import type { Lease } from "./connection.ts";
import { PoolError } from "./errors.ts";
import type { AddressPolicy } from "./options.ts";
import type { PooledSocket } from "./pooled_socket.ts";
import { unrefTimeout } from "./_timers.ts";

/** Runs `setup`; resolves with the connect error it amounts to, or undefined if it succeeded. */
export async function runSetup(
  policy: AddressPolicy,
  holder: Lease,
  socket: PooledSocket,
  budgetMs: number,
  closing: AbortSignal,
): Promise<PoolError | undefined> {
  const address = socket.address.key;
  const outcome = await withBudget(
    () => policy.setup!(holder),
    budgetMs,
    closing,
  );
  if (outcome.timedOut) {
    return new PoolError(
      "CONNECT_TIMEOUT",
      `Cannot connect to "${address}": setup did not finish within connectTimeout (${policy.connectTimeout} ms)`,
      { address, operation: "setup" },
    );
  }
  if (outcome.failed) {
    return new PoolError(
      "SETUP_FAILED",
      `Cannot connect to "${address}": setup failed: ${describe(outcome.error)}`,
      { address, cause: outcome.error, operation: "setup" },
    );
  }
  if (!socket.clean || socket.ended) {
    return new PoolError(
      "SETUP_FAILED",
      `Cannot connect to "${address}": setup left the connection unclean (unread bytes, a write in progress, EOF or a half-close)`,
      { address, operation: "setup" },
    );
  }
  return undefined;
}

/** Runs `validate`: true only if it said `true` in time and left the connection clean. */
export async function runValidate(
  policy: AddressPolicy,
  holder: Lease,
  socket: PooledSocket,
  closing: AbortSignal,
): Promise<boolean> {
  const outcome = await withBudget(
    () => policy.validate!(holder),
    policy.connectTimeout,
    closing,
  );
  return !outcome.timedOut && !outcome.failed && outcome.value === true && socket.clean &&
    !socket.ended;
}

type Outcome<T> =
  | { timedOut: true; failed: false; value?: undefined; error?: undefined }
  | { timedOut: false; failed: true; value?: undefined; error: unknown }
  | { timedOut: false; failed: false; value: T; error?: undefined };

/**
 * Runs `hook` (which may throw synchronously) for at most `budgetMs`, or
 * until `closing` aborts: a hook that hangs must not keep its connection's
 * acquire waiting, nor its timer alive, after the pool is closed.
 */
function withBudget<T>(
  hook: () => T | Promise<T>,
  budgetMs: number,
  closing: AbortSignal,
): Promise<Outcome<T>> {
  return new Promise((resolve) => {
    if (budgetMs <= 0 || closing.aborted) return resolve({ timedOut: true, failed: false });
    let settled = false;
    const finish = (outcome: Outcome<T>): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      closing.removeEventListener("abort", onClose);
      resolve(outcome);
    };
    const onClose = (): void => finish({ timedOut: false, failed: true, error: closing.reason });
    const timer = budgetMs === Infinity
      ? undefined
      : unrefTimeout(() => finish({ timedOut: true, failed: false }), budgetMs);
    closing.addEventListener("abort", onClose, { once: true });
    new Promise<T>((run) => run(hook())).then(
      (value) => finish({ timedOut: false, failed: false, value }),
      (error) => finish({ timedOut: false, failed: true, error }),
    );
  });
}

function describe(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}
