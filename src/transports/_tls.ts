// What the runtime adapters share about TLS: telling a failed certificate
// check from other handshake failures, and refusing what a runtime cannot do.
import type { ResolvedTcpAddress } from "../address.ts";
import { PoolError } from "../errors.ts";

// OpenSSL's verification results as Node and Bun report them in `code`.
const CERTIFICATE_CODES = new Set([
  "CERT_CHAIN_TOO_LONG",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "CERT_REJECTED",
  "CERT_REVOKED",
  "CERT_SIGNATURE_FAILURE",
  "CERT_UNTRUSTED",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "ERR_TLS_CERT_ALTNAME_INVALID",
  "HOSTNAME_MISMATCH",
  "INVALID_CA",
  "INVALID_PURPOSE",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_DECRYPT_CERT_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
]);

/** Whether a runtime error says the server's certificate failed verification. */
function isCertificateError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === "string" && CERTIFICATE_CODES.has(code)) return true;
  // Deno (rustls) has no code: "invalid peer certificate: UnknownIssuer".
  return error instanceof Error && /invalid peer certificate/i.test(error.message);
}

/**
 * The library's error for a TLS handshake that failed with `cause`:
 * `TLS_CERT_INVALID` for a certificate that failed verification,
 * `TLS_HANDSHAKE_FAILED` for anything else.
 */
export function tlsHandshakeError(address: ResolvedTcpAddress, cause: unknown): PoolError {
  const detail = cause instanceof Error ? cause.message : String(cause);
  if (isCertificateError(cause)) {
    return new PoolError(
      "TLS_CERT_INVALID",
      `Cannot connect to "${address.key}": the server's certificate failed verification for "${address.tls?.serverName}": ${detail}`,
      { address: address.key, cause },
    );
  }
  return new PoolError(
    "TLS_HANDSHAKE_FAILED",
    `Cannot connect to "${address.key}": the TLS handshake failed: ${detail}`,
    { address: address.key, cause },
  );
}

/** The library's error for TLS options this runtime cannot honour. */
export function tlsUnsupportedError(address: ResolvedTcpAddress, what: string): PoolError {
  return new PoolError(
    "TLS_UNSUPPORTED",
    `Cannot connect to "${address.key}": ${what}`,
    { address: address.key },
  );
}
