// Throwaway TLS certificates for tests, the demo and the benchmarks, minted
// with the `openssl` command at run time into a temporary directory that is
// removed right after: nothing secret is ever committed. Minted once per
// process; P-256 keys keep it to a few tens of milliseconds.
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

/** A certificate and its private key, in PEM. */
export interface KeyPair {
  cert: string;
  key: string;
}

export interface TestCertificates {
  /** The CA that signed `server` and `client`. */
  ca: string;
  /** Another CA, which signed nothing the servers present. */
  otherCa: string;
  /** For `localhost` and `127.0.0.1`, signed by `ca`. */
  server: KeyPair;
  /** A client certificate signed by `ca`. */
  client: KeyPair;
}

let minted: TestCertificates | undefined;

/** Mints (once per process) a CA, a server and a client certificate. */
export function testCertificates(): TestCertificates {
  return minted ??= mint();
}

function mint(): TestCertificates {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "upstream-pool-certs-"));
  const file = (name: string): string => path.join(dir, name);
  const openssl = (...args: string[]): void => {
    try {
      execFileSync("openssl", args, { stdio: ["ignore", "ignore", "pipe"] });
    } catch (error) {
      const detail = (error as { stderr?: Uint8Array }).stderr;
      throw new Error(
        `openssl ${args[0]} failed (is openssl installed? npm test installs it where it can): ${
          detail === undefined ? String(error) : new TextDecoder().decode(detail)
        }`,
      );
    }
  };
  const key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  const ca = (name: string): void =>
    openssl(
      "req",
      "-x509",
      ...key,
      "-keyout",
      file(`${name}.key`),
      "-out",
      file(`${name}.pem`),
      "-days",
      "2",
      "-subj",
      `/CN=upstream-pool test ${name}`,
    );
  const leaf = (name: string, extensions: string): void => {
    openssl(
      "req",
      ...key,
      "-keyout",
      file(`${name}.key`),
      "-out",
      file(`${name}.csr`),
      "-subj",
      `/CN=${name}`,
    );
    fs.writeFileSync(file(`${name}.ext`), extensions);
    openssl(
      "x509",
      "-req",
      "-in",
      file(`${name}.csr`),
      "-CA",
      file("ca.pem"),
      "-CAkey",
      file("ca.key"),
      "-CAcreateserial",
      "-out",
      file(`${name}.pem`),
      "-days",
      "2",
      "-extfile",
      file(`${name}.ext`),
    );
  };
  try {
    ca("ca");
    ca("other-ca");
    leaf(
      "server",
      "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    );
    leaf("client", "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n");
    const read = (name: string): string => fs.readFileSync(file(name), "utf8");
    return {
      ca: read("ca.pem"),
      otherCa: read("other-ca.pem"),
      server: { cert: read("server.pem"), key: read("server.key") },
      client: { cert: read("client.pem"), key: read("client.key") },
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
