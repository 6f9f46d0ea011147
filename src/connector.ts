// Opens the pool's connections: the transport (detected at the first
// connect unless given), a timeout per connect, TLS sessions to resume, and
// the aborts that close() needs. What a connection or a failure means for
// waiters and limits is the pool's business, told through callbacks.
//
// An attempt has two ends, told apart: the caller's answer (a connection,
// or an error as soon as the connect timed out or the pool closed) and the
// moment the attempt holds no socket any more. A runtime may need a while to
// let go of a connect it was told to abandon; until it has, the socket is
// real (a descriptor, a SYN in flight) and must count against the limits.
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
   * Starts a connect.
   *
   * `done` is called once, with the connection or with the error to report:
   * `CONNECT_TIMEOUT` after `timeout` ms and `POOL_CLOSED` once closed (both
   * at once, without waiting for the transport), else what the transport's
   * failure means. A connection given to `done` is the caller's.
   *
   * `released` is called once after `done` reported an error, when the
   * attempt holds nothing any more: the transport's connect has settled,
   * and a connection that opened too late has been closed. Until then the
   * attempt still holds a socket, which should count against the limits.
   * It is not called after a connection was handed over.
   */
  open(
    address: ResolvedAddress,
    { timeout, keepAlive }: { timeout: number; keepAlive: number | false },
    done: (result: TransportConnection | PoolError) => void,
    released: () => void,
  ): void {
    const abort = new AbortController();
    this.#aborts.add(abort);
    let answered = false;
    const answer = (result: TransportConnection | PoolError): void => {
      answered = true;
      done(result);
    };
    // The caller hears of a timeout or close() at once; the socket may take
    // longer to go, and `released` waits for that. A microtask, so that
    // `done` never runs inside close() or the timer's abort().
    abort.signal.addEventListener("abort", () => {
      queueMicrotask(() => {
        if (!answered) answer(this.#failure(address, abort.signal, undefined));
      });
    }, { once: true });
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
      if (connection !== undefined && !answered && !abort.signal.aborted) {
        answer(connection);
        return;
      }
      // Opened after the caller was told it failed (or as it was aborted).
      connection?.close();
      if (!answered) answer(this.#failure(address, abort.signal, failure));
      released();
    })();
    this.#opening.add(opening);
    opening.then(() => this.#opening.delete(opening));
  }

  #failure(address: ResolvedAddress, signal: AbortSignal, failure: unknown): PoolError {
    if (this.#closed) return closedError(address.key, failure ?? signal.reason);
    const reason = signal.reason;
    return reason instanceof PoolError ? reason : connectError(address.key, failure);
  }

  /** Aborts the connects in progress; those that fail from now on report `POOL_CLOSED`. */
  close(reason: PoolError): void {
    this.#closed = true;
    for (const controller of this.#aborts) controller.abort(reason);
  }

  forgetTlsSessions(): void {
    this.#tlsSessions.clear();
  }

  /** Settles once the connects started so far have ended and let go of their sockets. */
  allSettled(): Promise<unknown> {
    return Promise.allSettled(this.#opening);
  }
}
