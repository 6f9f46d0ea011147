// The parts of Deno's API the Deno transport uses, typed locally so that
// tsc can compile the adapter without Deno's type library (the npm build
// compiles every file). `Deno` is looked up at call time, never at load.
export interface DenoConn {
  readonly localAddr: { readonly port?: number };
  readonly remoteAddr: { readonly port?: number };
  read(buffer: Uint8Array): Promise<number | null>;
  write(data: Uint8Array): Promise<number>;
  closeWrite(): Promise<void>;
  close(): void;
  ref(): void;
  unref(): void;
}

/** A TCP connection; Unix-socket connections have no Nagle switch. */
export interface DenoTcpConn extends DenoConn {
  setNoDelay(noDelay?: boolean): void;
  /** SO_KEEPALIVE on or off; the times are the kernel's. */
  setKeepAlive(keepAlive?: boolean): void;
}

/** A TLS connection made with `Deno.startTls`; the handshake runs on first use or `handshake()`. */
export interface DenoTlsConn extends DenoConn {
  handshake(): Promise<{ alpnProtocol: string | null }>;
}

export interface DenoStartTlsOptions {
  hostname: string;
  caCerts?: string[];
  alpnProtocols?: string[];
}

export interface DenoListener {
  readonly addr: { readonly port?: number };
  accept(): Promise<DenoTcpConn>;
  close(): void;
}

export interface DenoRuntime {
  connect(options: {
    hostname: string;
    port: number;
    transport?: "tcp";
    signal?: AbortSignal;
  }): Promise<DenoTcpConn>;
  connect(options: { transport: "unix"; path: string }): Promise<DenoConn>;
  startTls(conn: DenoTcpConn, options: DenoStartTlsOptions): Promise<DenoTlsConn>;
  listen(options: { hostname: string; port: number; transport?: "tcp" }): DenoListener;
  listen(options: { transport: "unix"; path: string }): DenoListener;
  permissions?: {
    querySync?(descriptor: { name: "net"; host?: string }): { state: string };
  };
  readonly build?: { readonly os?: string };
}

export function deno(): DenoRuntime {
  const runtime = (globalThis as unknown as { Deno?: DenoRuntime }).Deno;
  if (runtime === undefined) {
    throw new TypeError(
      "Cannot use denoTransport: the Deno global is missing (not running on Deno)",
    );
  }
  return runtime;
}

/** Closes a Deno connection that may already be closed. */
export function closeQuietly(conn: DenoConn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}
