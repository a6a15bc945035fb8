import { createPrivateKey, type KeyObject, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { createSecureContext } from "node:tls";

/**
 * The checks a service's mTLS files pass before they are used, at start
 * (tls-settings.ts) and at every reload (certificate-files.ts): PEM that
 * parses, a certificate in its validity period, a key that matches it, a CA.
 */

/** The three files of a service's mTLS identity. */
export interface TlsFiles {
  /** PEM certificate (leaf first, then intermediates): `tls.crt`. */
  readonly certFile: string;
  /** PEM private key of the certificate: `tls.key`. */
  readonly keyFile: string;
  /** PEM CA certificate(s) that peers' certificates must chain to: `ca.crt`. */
  readonly caFile: string;
}

/** What the logs and metrics show of a loaded certificate (never the key). */
export interface CertificateInfo {
  /** Serial number in upper-case hex, as `getPeerCertificate().serialNumber` shows it. */
  readonly serial: string;
  readonly subject: string;
  readonly subjectAltName: string | undefined;
  readonly validTo: Date;
  /** SHA-256 fingerprint of the certificate. */
  readonly fingerprint256: string;
}

export const VARS: Readonly<Record<keyof TlsFiles, string>> = {
  certFile: "TLS_CERT_FILE",
  keyFile: "TLS_KEY_FILE",
  caFile: "TLS_CA_FILE",
};
export const WHICH = Object.keys(VARS) as (keyof TlsFiles)[];

/** How often the files are read to catch a change that no watch event reported. */
export const DEFAULT_TLS_POLL_MS = 5_000;
/** A burst of watch events (a Secret update, a write in several steps) causes one reload after this quiet time. */
export const DEFAULT_TLS_DEBOUNCE_MS = 100;

// ---------------------------------------------------------------------------
// Checks, shared by the settings (at start) and by reloads.

export function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export function parseCertificate(pem: Buffer, now: number): X509Certificate {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(pem);
  } catch (err) {
    throw new Error(`is not a PEM certificate (${message(err)})`);
  }
  if (Date.parse(cert.validTo) <= now) throw new Error(`holds a certificate that expired on ${cert.validTo}`);
  return cert;
}

export function parseKey(pem: Buffer): KeyObject {
  try {
    return createPrivateKey(pem);
  } catch (err) {
    throw new Error(`is not an unencrypted PEM private key (${message(err)})`);
  }
}

export function parseCa(pem: Buffer): X509Certificate[] {
  const blocks = pem.toString("utf8").match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new Error("holds no PEM certificate");
  return blocks.map((block) => {
    try {
      return new X509Certificate(block);
    } catch (err) {
      throw new Error(`holds an invalid certificate (${message(err)})`);
    }
  });
}

export function checkPair(cert: X509Certificate, key: KeyObject): void {
  if (!cert.checkPrivateKey(key)) throw new Error(`does not match the certificate in ${VARS.certFile}`);
}

export function infoOf(cert: X509Certificate): CertificateInfo {
  return {
    serial: cert.serialNumber.toUpperCase(),
    subject: cert.subject.replaceAll("\n", ", "),
    subjectAltName: cert.subjectAltName,
    validTo: new Date(cert.validTo),
    fingerprint256: cert.fingerprint256,
  };
}

export interface Pem {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly ca: Buffer;
}

export interface Material extends Pem {
  readonly info: CertificateInfo;
}

/** Checks a set of files' contents; the error names the file at fault. */
export function validate(files: TlsFiles, pem: Pem, now = Date.now()): Material {
  const at = <T>(which: keyof TlsFiles, check: () => T): T => {
    try {
      return check();
    } catch (err) {
      throw new Error(`${files[which]} ${message(err)}`);
    }
  };
  const cert = at("certFile", () => parseCertificate(pem.cert, now));
  const key = at("keyFile", () => parseKey(pem.key));
  at("caFile", () => parseCa(pem.ca));
  at("keyFile", () => checkPair(cert, key));
  at("certFile", () => {
    try {
      createSecureContext({ cert: pem.cert, key: pem.key, ca: pem.ca });
    } catch (err) {
      throw new Error(`cannot be used with its key and CA (${message(err)})`);
    }
  });
  return { ...pem, info: infoOf(cert) };
}

export function readSync(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new Error(`cannot be read (${(err as NodeJS.ErrnoException).code ?? message(err)})`);
  }
}
