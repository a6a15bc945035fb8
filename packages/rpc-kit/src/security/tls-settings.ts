import type { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import type { Setting } from "../config/config.ts";
import {
  checkPair,
  parseCa,
  parseCertificate,
  parseKey,
  readSync,
  type TlsFiles,
  VARS,
  WHICH,
} from "./certificate-checks.ts";
import { CertificateFiles } from "./certificate-files.ts";

/**
 * TLS_CERT_FILE, TLS_KEY_FILE, TLS_CA_FILE (and TLS_SERVER_NAME): the
 * settings of a service's mTLS identity, checked at start, and the shared
 * certificate provider of a set of files.
 */

// ---------------------------------------------------------------------------
// Settings.

type Env = Readonly<Record<string, string | undefined>>;

const isSet = (value: string | undefined) => value !== undefined && value.trim() !== "";

/** One of the three files: all or none may be set; a set one must hold what it should (checked at start). */
function fileSetting(which: keyof TlsFiles, doc: string): Setting<string | undefined> {
  const env = VARS[which];
  return {
    env,
    doc,
    defaultText: undefined,
    parse(raw, all: Env = {}) {
      const path = raw?.trim();
      if (path === undefined || path === "") {
        const others = WHICH.filter((w) => w !== which && isSet(all[VARS[w]])).map((w) => VARS[w]);
        if (others.length > 0) {
          throw new Error(
            `is required when ${others.join(" and ")} ${others.length > 1 ? "are" : "is"} set (mTLS needs ${Object.values(VARS).join(", ")})`,
          );
        }
        return undefined;
      }
      const pem = readSync(path);
      if (which === "certFile") parseCertificate(pem, Date.now());
      if (which === "caFile") parseCa(pem);
      if (which === "keyFile") {
        const key = parseKey(pem);
        // The pair is checked here, where a mismatch is reported, when the certificate itself is fine.
        const certPath = all[VARS.certFile]?.trim();
        let cert: X509Certificate | undefined;
        try {
          cert = certPath ? parseCertificate(readFileSync(certPath), Date.now()) : undefined;
        } catch {
          cert = undefined; // reported under TLS_CERT_FILE
        }
        if (cert) checkPair(cert, key);
      }
      return path;
    },
  };
}

/**
 * The mTLS files of a process; spread into both `serverSettings()` and
 * `clientSettings()`. All unset: plaintext h2c, as before. All set: the
 * grpc engine serves TLS and requires client certificates, clients dial TLS
 * with the certificate. Checked at start: each file readable and holding
 * what it should, the key matching the certificate.
 */
export function tlsSettings() {
  return {
    tlsCertFile: fileSetting(
      "certFile",
      "mTLS: PEM certificate of this service (tls.crt), presented to callers and upstreams; set with TLS_KEY_FILE and TLS_CA_FILE, or none for plaintext",
    ),
    tlsKeyFile: fileSetting("keyFile", "mTLS: PEM private key of TLS_CERT_FILE (tls.key)"),
    tlsCaFile: fileSetting(
      "caFile",
      "mTLS: PEM CA certificate(s) (ca.crt) that callers' and upstreams' certificates must be signed by",
    ),
  };
}

/** The client-only mTLS setting; spread into `clientSettings()`. */
export function tlsClientSettings() {
  return {
    tlsServerName: {
      env: "TLS_SERVER_NAME",
      doc: "mTLS: name upstream server certificates must carry (default: each target's host name); for targets given as IP addresses",
      defaultText: undefined,
      parse(raw: string | undefined, all: Env = {}) {
        const name = raw?.trim();
        if (name && !WHICH.some((w) => isSet(all[VARS[w]]))) {
          throw new Error(`has no effect without ${Object.values(VARS).join(", ")} (TLS is off)`);
        }
        return name || undefined;
      },
    } satisfies Setting<string | undefined>,
  };
}

/** The parsed settings of {@link tlsSettings}, as any server or client config holds them. */
export interface TlsConfig {
  readonly tlsCertFile?: string | undefined;
  readonly tlsKeyFile?: string | undefined;
  readonly tlsCaFile?: string | undefined;
}

const shared = new Map<string, CertificateFiles>();

/**
 * The process's {@link CertificateFiles} for these settings (one per set of
 * files, shared by the server and every client), or undefined when TLS is off.
 */
export function tlsFrom(config: TlsConfig): CertificateFiles | undefined {
  const { tlsCertFile: certFile, tlsKeyFile: keyFile, tlsCaFile: caFile } = config;
  if (certFile === undefined && keyFile === undefined && caFile === undefined) return undefined;
  if (certFile === undefined || keyFile === undefined || caFile === undefined) {
    throw new Error(`mTLS needs all of ${Object.values(VARS).join(", ")} or none`);
  }
  const key = `${certFile}\0${keyFile}\0${caFile}`;
  let files = shared.get(key);
  if (files === undefined) {
    files = new CertificateFiles({ certFile, keyFile, caFile });
    shared.set(key, files);
  }
  return files;
}
