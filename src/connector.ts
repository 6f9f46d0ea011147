// Opens the pool's connections: the transport (detected at the first
// connect unless given), a timeout per connect, TLS sessions to resume, and
// the aborts that close() needs. What a connection or a failure means for
// waiters and limits is the pool's business, told through a callback.
import type { ResolvedAddress } from "./address.ts";
import { closedError, connectError, PoolError } from "./errors.ts";
import { TlsSessions } from "./tls_sessions.ts";
import { detectTransport } from "./transports/detect.ts";
import type { Transport, TransportConnection } from "./transports/transport.ts";
import { unrefTimeout } from "./_timers.ts";

export class Connector {
  #transport: Transport | undefined;
  /** TLS sessions to resume, per pool key (which names the TLS identity). */
  readonly #tlsSessions = new TlsSessions();
  // One controller per connect in progress, so that close() can abort them
  // without every connect listening on one long-lived signal.
  readonly #aborts: Set<AbortController> = new Set();
  readonly #opening: Set<Promise<void>> = new Set();
  #closed = false;

  constructor(transport: Transport | undefined) {
    this.#transport = transport;
  }

  /**
   * The transport's settle turn. Only asked for about idle connections,
   * so a connect has succeeded and the transport is known.
   */
  settle(): Promise<void> {
    return this.#transport!.settle();
  }

  /**
   * Starts a connect; `done` gets the connection, or the error to report:
   * `CONNECT_TIMEOUT` after `timeout` ms, `POOL_CLOSED` once closed, else
   * what the transport's failure means.
   */
  open(
    address: ResolvedAddress,
    { timeout, keepAlive }: { timeout: number; keepAlive: number | false },
    done: (result: TransportConnection | PoolError) => void,
  ): void {
    const abort = new AbortController();
    this.#aborts.add(abort);
    const timer = timeout === Infinity ? undefined : unrefTimeout(
      () =>
        abort.abort(
          new PoolError(
            "CONNECT_TIMEOUT",
            `Cannot connect to "${address.key}": no connection within ${timeout} ms`,
            { address: address.key, operation: "connect" },
          ),
        ),
      timeout,
    );
    const opening = (async (): Promise<void> => {
      let connection: TransportConnection | undefined;
      let failure: unknown;
      try {
        const transport = this.#transport ??= await detectTransport();
        connection = await transport.connect(address, {
          signal: abort.signal,
          tlsSessions: this.#tlsSessions,
          keepAlive,
        });
      } catch (cause) {
        failure = cause;
      }
      clearTimeout(timer);
      this.#aborts.delete(abort);
      if (connection !== undefined) {
        done(connection);
        return;
      }
      const reason = abort.signal.reason;
      done(
        this.#closed
          ? closedError(address.key, failure)
          : reason instanceof PoolError
          ? reason
          : connectError(address.key, failure),
      );
    })();
    this.#opening.add(opening);
    opening.then(() => this.#opening.delete(opening));
  }

  /** Aborts the connects in progress; those that fail from now on report `POOL_CLOSED`. */
  close(reason: PoolError): void {
    this.#closed = true;
    for (const controller of this.#aborts) controller.abort(reason);
  }

  forgetTlsSessions(): void {
    this.#tlsSessions.clear();
  }

  /** Settles once the connects started so far have ended, however. */
  allSettled(): Promise<unknown> {
    return Promise.allSettled(this.#opening);
  }
}
