import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

// Certificates made at test time with openssl (EC P-256, valid one day):
// the server's own (self-signed, for localhost and 127.0.0.1), a client CA
// with a client certificate it signed, and a second CA, unknown to the
// server, with a client certificate of its own.

export interface TestCertificates {
  readonly dir: string;
  /** The server's certificate and key; the certificate is also what clients trust. */
  readonly serverCert: string;
  readonly serverKey: string;
  /** The CA the server trusts for client certificates (--tls-client-ca). */
  readonly clientCa: string;
  /** A client certificate that clientCa signed, and its key. */
  readonly clientCert: string;
  readonly clientKey: string;
  /** A client certificate that another CA signed, and its key. */
  readonly strangerCert: string;
  readonly strangerKey: string;
  read(path: string): Buffer;
  remove(): void;
}

const curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"];

function openssl(args: string[]): void {
  execFileSync("openssl", args, { stdio: ["ignore", "ignore", "pipe"] });
}

export function makeCertificates(): TestCertificates {
  const dir = mkdtempSync(join(tmpdir(), "stream-certs-"));
  const at = (name: string) => join(dir, name);
  openssl([
    "req",
    "-x509",
    ...curve,
    "-subj",
    "/CN=localhost",
    "-addext",
    "subjectAltName=DNS:localhost,IP:127.0.0.1",
    "-keyout",
    at("server.key"),
    "-out",
    at("server.pem"),
  ]);
  writeFileSync(at("client.ext"), "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n");
  for (const who of ["client", "stranger"]) {
    openssl([
      "req",
      "-x509",
      ...curve,
      "-subj",
      `/CN=${who} CA`,
      "-keyout",
      at(`${who}-ca.key`),
      "-out",
      at(`${who}-ca.pem`),
    ]);
    openssl([
      "req",
      "-new",
      ...curve.slice(0, -2),
      "-subj",
      `/CN=${who}`,
      "-keyout",
      at(`${who}.key`),
      "-out",
      at(`${who}.csr`),
    ]);
    openssl([
      "x509",
      "-req",
      "-in",
      at(`${who}.csr`),
      "-CA",
      at(`${who}-ca.pem`),
      "-CAkey",
      at(`${who}-ca.key`),
      "-set_serial",
      "1",
      "-days",
      "1",
      "-extfile",
      at("client.ext"),
      "-out",
      at(`${who}.pem`),
    ]);
  }
  return {
    dir,
    serverCert: at("server.pem"),
    serverKey: at("server.key"),
    clientCa: at("client-ca.pem"),
    clientCert: at("client.pem"),
    clientKey: at("client.key"),
    strangerCert: at("stranger.pem"),
    strangerKey: at("stranger.key"),
    read: (path) => readFileSync(path),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
