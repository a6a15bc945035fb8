/**
 * A throwaway certificate authority for mTLS tests, made with the `openssl`
 * command in a directory of the test's, and the two ways certificate files
 * change under a running service: an atomic rename, and the `..data`
 * symlink swap of a Kubernetes Secret volume.
 */
import { execFileSync } from "node:child_process";
import { randomBytes, randomInt, X509Certificate } from "node:crypto";
import { mkdirSync, readFileSync, readlinkSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as tls from "node:tls";
import { type ChannelCredentials, Client, Metadata, type ServiceError, status } from "@grpc/grpc-js";

/** A certificate and its key, as PEM. */
export interface Issued {
  readonly cert: Buffer;
  readonly key: Buffer;
  /** Upper-case hex, as `X509Certificate#serialNumber` and `getPeerCertificate().serialNumber` show it. */
  readonly serial: string;
}

export interface TestCa {
  /** The CA certificate (what `ca.crt` holds). */
  readonly cert: Buffer;
  /**
   * A leaf certificate for both server and client auth. `names` become
   * SANs (IP addresses as IP SANs); default localhost, 127.0.0.1 and ::1.
   */
  issue(cn: string, names?: readonly string[]): Issued;
}

function openssl(args: readonly string[], cwd: string): void {
  execFileSync("openssl", args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
}

const EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

/** A new CA in `dir` (created), valid for two days. */
export function testCa(dir: string, name = "rpc-kit test CA"): TestCa {
  mkdirSync(dir, { recursive: true });
  openssl(
    [
      "req",
      "-x509",
      ...EC,
      "-keyout",
      "ca.key",
      "-out",
      "ca.crt",
      "-days",
      "2",
      "-subj",
      `/CN=${name}`,
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
    ],
    dir,
  );
  let n = 0;
  return {
    cert: readFileSync(join(dir, "ca.crt")),
    issue(cn, names = ["localhost", "127.0.0.1", "::1"]) {
      const base = `leaf-${++n}`;
      const san = names.map((s) => (/^[\d.]+$|:/.test(s) ? `IP:${s}` : `DNS:${s}`)).join(",");
      writeFileSync(
        join(dir, `${base}.ext`),
        `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=${san}\n`,
      );
      openssl(["req", "-new", ...EC, "-keyout", `${base}.key`, "-out", `${base}.csr`, "-subj", `/CN=${cn}`], dir);
      // 16 hex digits, the first 1-7: no sign bit, no leading zero, so every tool prints it the same.
      const serial = `${randomInt(1, 8).toString(16)}${randomBytes(8).toString("hex").slice(1)}`;
      openssl(
        [
          "x509",
          "-req",
          "-in",
          `${base}.csr`,
          "-CA",
          "ca.crt",
          "-CAkey",
          "ca.key",
          "-set_serial",
          `0x${serial}`,
          "-days",
          "1",
          "-out",
          `${base}.crt`,
          "-extfile",
          `${base}.ext`,
        ],
        dir,
      );
      const cert = readFileSync(join(dir, `${base}.crt`));
      return { cert, key: readFileSync(join(dir, `${base}.key`)), serial: new X509Certificate(cert).serialNumber };
    },
  };
}

/** The files of a kubernetes.io/tls Secret: `tls.crt`, `tls.key`, `ca.crt`. */
export type SecretFiles = Readonly<Record<"tls.crt" | "tls.key" | "ca.crt", Buffer | string>>;

export function secretFiles(issued: Issued, ca: TestCa | Buffer): SecretFiles {
  return { "tls.crt": issued.cert, "tls.key": issued.key, "ca.crt": Buffer.isBuffer(ca) ? ca : ca.cert };
}

/** Where a service reads its mTLS files from, for TLS_CERT_FILE, TLS_KEY_FILE, TLS_CA_FILE. */
export function tlsEnv(dir: string): Record<"TLS_CERT_FILE" | "TLS_KEY_FILE" | "TLS_CA_FILE", string> {
  return {
    TLS_CERT_FILE: join(dir, "tls.crt"),
    TLS_KEY_FILE: join(dir, "tls.key"),
    TLS_CA_FILE: join(dir, "ca.crt"),
  };
}

/** Writes each file next to itself and renames it into place (one file at a time, as a careful tool does). */
export function writeByRename(dir: string, files: SecretFiles): void {
  mkdirSync(dir, { recursive: true });
  for (const [name, content] of Object.entries(files)) {
    writeFileSync(join(dir, `.${name}.tmp`), content, { mode: 0o600 });
    renameSync(join(dir, `.${name}.tmp`), join(dir, name));
  }
}

let generation = 0;

/**
 * Writes the files as kubelet updates a Secret volume (its AtomicWriter): a
 * new `..<timestamp>` directory, a `..data_tmp` symlink to it renamed over
 * `..data`, each name a symlink into `..data`, and the old directory removed.
 */
export function writeLikeKubelet(dir: string, files: SecretFiles): void {
  mkdirSync(dir, { recursive: true });
  const stamp = `..${new Date().toISOString().replace(/[-:.TZ]/g, "_")}${++generation}`;
  mkdirSync(join(dir, stamp));
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, stamp, name), content, { mode: 0o600 });
  let previous: string | undefined;
  try {
    previous = readlinkSync(join(dir, "..data"));
  } catch {
    previous = undefined;
  }
  symlinkSync(stamp, join(dir, "..data_tmp"));
  renameSync(join(dir, "..data_tmp"), join(dir, "..data"));
  for (const name of Object.keys(files)) {
    try {
      symlinkSync(join("..data", name), join(dir, name));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
  }
  if (previous) rmSync(join(dir, previous), { recursive: true, force: true });
}

/** The serial of the certificate a fresh TLS connection to `localhost:port` is shown, connecting as `client`. */
export function peerSerial(port: number, ca: Pick<TestCa, "cert">, client: Issued): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect(
      { host: "localhost", port, ca: ca.cert, cert: client.cert, key: client.key, ALPNProtocols: ["h2"] },
      () => {
        const serial = socket.getPeerCertificate().serialNumber;
        socket.destroy();
        resolve(serial);
      },
    );
    socket.on("error", reject);
  });
}

/** A grpc.health.v1 Check with `creds` straight to `localhost:port`, on its own channel; resolves the status code. */
export function healthCheckStatus(port: number, creds: ChannelCredentials): Promise<number> {
  const client = new Client(`localhost:${port}`, creds);
  return new Promise<number>((resolve) => {
    client.makeUnaryRequest(
      "/grpc.health.v1.Health/Check",
      (b: Buffer) => b,
      (b: Buffer) => b,
      Buffer.alloc(0),
      new Metadata(),
      { deadline: Date.now() + 2_000 },
      (err: ServiceError | null) => resolve(err?.code ?? status.OK),
    );
  }).finally(() => client.close());
}
