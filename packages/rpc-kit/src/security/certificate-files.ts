import { createHash } from "node:crypto";
import { type FSWatcher, watch } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname } from "node:path";
import { type ChannelCredentials, experimental, type ServerCredentials } from "@grpc/grpc-js";
import { Counter, Gauge } from "prom-client";
import type { Logger } from "../observe/logger.ts";
import { metricsRegistry } from "../observe/metrics.ts";
import {
  type CertificateInfo,
  DEFAULT_TLS_DEBOUNCE_MS,
  DEFAULT_TLS_POLL_MS,
  type Material,
  message,
  type Pem,
  readSync,
  type TlsFiles,
  validate,
  WHICH,
} from "./certificate-checks.ts";

/**
 * Mutual TLS between services, from certificate files that are reloaded
 * when they change.
 *
 * The files are what a Kubernetes Secret of type kubernetes.io/tls (and
 * cert-manager's Certificate) mounts: `tls.crt` (the certificate, with any
 * intermediates), `tls.key` (its private key), `ca.crt` (the CA that signs
 * every service's certificate). The same three files serve both sides: a
 * server presents `tls.crt` and requires a client certificate signed by
 * `ca.crt`; a client presents `tls.crt` and verifies the server's against
 * `ca.crt` and the target's host name.
 *
 * Reloading goes through grpc-js's certificate-provider hook
 * (`experimental.createCertificateProviderServerCredentials` and
 * `...ChannelCredentials`, the mechanism its xDS support uses):
 * {@link CertificateFiles} is the provider. A server calls
 * `setSecureContext` on its listening http2 server with each update, so new
 * handshakes use the new certificate and established connections carry on;
 * a channel builds a SecureContext from the latest update for each new
 * connection, so no channel is recreated. grpc-js's own
 * FileWatcherCertificateProvider is not used: it forwards a failed read as
 * "no certificate" (a server then drops every new connection) and does not
 * check that a key matches its certificate; this provider only ever
 * publishes material that passed `tls.createSecureContext`.
 */

// ---------------------------------------------------------------------------
// Metrics.

const live = new Set<CertificateFiles>();

let registered = false;
let reloads: Counter | undefined;
/** The certificates' series on /metrics, registered with the first set of files (never at import). */
function registerMetrics(): void {
  if (registered) return;
  registered = true;
  new Gauge({
    name: "rpc_kit_tls_certificate_expiry_timestamp_seconds",
    help: "When the mTLS certificate in use expires (Unix time); alert well before it passes.",
    labelNames: ["cert_file"],
    registers: [metricsRegistry],
    collect() {
      this.reset();
      for (const f of live) this.set({ cert_file: f.files.certFile }, f.certificate.validTo.getTime() / 1000);
    },
  });
  reloads = new Counter({
    name: "rpc_kit_tls_reloads_total",
    help: "Changes of the mTLS files: reloaded (in use for new connections) or rejected (invalid; the previous certificate stays in use).",
    labelNames: ["cert_file", "result"],
    registers: [metricsRegistry],
  });
}

// ---------------------------------------------------------------------------
// The provider.

export interface CertificateFilesOptions {
  /** Read the files this often, whatever the watch reports. Default {@link DEFAULT_TLS_POLL_MS}. */
  readonly pollMs?: number;
  /** Quiet time after a watch event before reloading. Default {@link DEFAULT_TLS_DEBOUNCE_MS}. */
  readonly debounceMs?: number;
  /** Watch the files' directories (inotify). Default true; false leaves the poll alone (tests). */
  readonly watch?: boolean;
  /** Where reloads and rejected files are reported. Default none until {@link CertificateFiles.setLogger}. */
  readonly logger?: Logger;
}

export type ReloadResult = "reloaded" | "unchanged" | "rejected";

/**
 * A service's certificate, key and CA, read from files at construction
 * (throwing if they are unusable) and re-read whenever their directories
 * change (fs.watch: an atomic rename, the `..data` symlink swap of a
 * Kubernetes Secret volume, an in-place write) and every `pollMs` in case no
 * event came. New contents are used only if they pass every check; otherwise
 * the previous ones stay in use and a warning is logged (once per content).
 *
 * A grpc-js `CertificateProvider` (identity and CA): hand it to grpc-js
 * through {@link serverCredentials} and {@link channelCredentials}.
 */
export class CertificateFiles implements experimental.CertificateProvider {
  readonly files: TlsFiles;
  #material: Material;
  #logger: Logger | undefined;
  readonly #caListeners = new Set<experimental.CaCertificateUpdateListener>();
  readonly #identityListeners = new Set<experimental.IdentityCertificateUpdateListener>();
  readonly #watchers: FSWatcher[] = [];
  readonly #poll: NodeJS.Timeout;
  readonly #debounceMs: number;
  #debounce: NodeJS.Timeout | undefined;
  #reloading: Promise<ReloadResult> | undefined;
  #again = false;
  #rejected: string | undefined;
  #closed = false;
  #serverCredentials: ServerCredentials | undefined;
  #channelCredentials: ChannelCredentials | undefined;

  constructor(files: TlsFiles, options: CertificateFilesOptions = {}) {
    this.files = files;
    this.#logger = options.logger;
    this.#debounceMs = options.debounceMs ?? DEFAULT_TLS_DEBOUNCE_MS;
    const pem = { cert: readSync(files.certFile), key: readSync(files.keyFile), ca: readSync(files.caFile) };
    this.#material = validate(files, pem);
    if (options.watch ?? true) {
      for (const dir of new Set(WHICH.map((w) => dirname(files[w])))) this.#watch(dir);
    }
    this.#poll = setInterval(() => void this.reload("poll"), options.pollMs ?? DEFAULT_TLS_POLL_MS).unref();
    registerMetrics();
    live.add(this);
  }

  /** The certificate in use for new connections. */
  get certificate(): CertificateInfo {
    return this.#material.info;
  }

  /** Reports reloads and rejected files to `logger`, starting with one line about the certificate in use. */
  setLogger(logger: Logger): void {
    if (this.#logger === logger) return;
    this.#logger = logger;
    logger.info({ tls: this.#describe() }, "mTLS on: certificates loaded");
  }

  /** Server credentials: present the certificate, require a client certificate signed by the CA. */
  serverCredentials(): ServerCredentials {
    this.#serverCredentials ??= experimental.createCertificateProviderServerCredentials(this, this, true);
    return this.#serverCredentials;
  }

  /**
   * Channel credentials: present the certificate, verify the server's
   * against the CA. The name checked is the channel's
   * `grpc.ssl_target_name_override` (the upstream sets it).
   */
  channelCredentials(): ChannelCredentials {
    this.#channelCredentials ??= experimental.createCertificateProviderChannelCredentials(this, this);
    return this.#channelCredentials;
  }

  /**
   * Reads the files now; uses them if they changed and pass the checks.
   * Concurrent calls share one read; a call during a read reads again after it.
   */
  reload(trigger = "manual"): Promise<ReloadResult> {
    if (this.#reloading) {
      this.#again = true;
      return this.#reloading;
    }
    this.#reloading = (async () => {
      let result: ReloadResult;
      do {
        this.#again = false;
        result = await this.#reloadOnce(trigger);
      } while (this.#again && !this.#closed);
      this.#reloading = undefined;
      return result;
    })();
    return this.#reloading;
  }

  async #reloadOnce(trigger: string): Promise<ReloadResult> {
    if (this.#closed) return "unchanged";
    const started = performance.now();
    let pem: Pem;
    try {
      const [cert, key, ca] = await Promise.all(WHICH.map((w) => readFile(this.files[w])));
      pem = { cert: cert as Buffer, key: key as Buffer, ca: ca as Buffer };
    } catch (err) {
      // Mid-swap or removed: keep what works; the next event or poll reads again.
      this.#reject(`${(err as NodeJS.ErrnoException).path ?? "a file"} cannot be read (${message(err)})`, trigger);
      return "rejected";
    }
    const current = this.#material;
    if (pem.cert.equals(current.cert) && pem.key.equals(current.key) && pem.ca.equals(current.ca)) {
      this.#rejected = undefined;
      return "unchanged";
    }
    let next: Material;
    try {
      next = validate(this.files, pem);
    } catch (err) {
      const digest = createHash("sha256").update(pem.cert).update(pem.key).update(pem.ca).digest("hex");
      this.#reject(message(err), trigger, digest);
      return "rejected";
    }
    this.#material = next;
    this.#rejected = undefined;
    this.#publish();
    reloads?.inc({ cert_file: this.files.certFile, result: "reloaded" });
    this.#logger?.info(
      {
        tls: this.#describe(),
        trigger,
        previous_serial: current.info.serial,
        reload_ms: Math.round((performance.now() - started) * 10) / 10,
      },
      "mTLS certificates reloaded: new connections use them",
    );
    return "reloaded";
  }

  #reject(reason: string, trigger: string, digest = reason): void {
    if (this.#rejected === digest) return; // already reported
    this.#rejected = digest;
    reloads?.inc({ cert_file: this.files.certFile, result: "rejected" });
    this.#logger?.warn(
      { tls: this.#describe(), trigger, reason },
      "mTLS files changed but cannot be used; keeping the certificates in use",
    );
  }

  #describe() {
    const { info } = this.#material;
    return {
      cert_file: this.files.certFile,
      serial: info.serial,
      subject: info.subject,
      subject_alt_name: info.subjectAltName,
      not_after: info.validTo.toISOString(),
    };
  }

  #publish(): void {
    const { cert, key, ca } = this.#material;
    for (const listener of this.#caListeners) listener({ caCertificate: ca });
    for (const listener of this.#identityListeners) listener({ certificate: cert, privateKey: key });
  }

  #watch(dir: string): void {
    try {
      const watcher = watch(dir, { persistent: false }, () => this.#schedule());
      // The directory went away or the watch broke: the poll carries on.
      watcher.on("error", () => watcher.close());
      this.#watchers.push(watcher);
    } catch (err) {
      this.#logger?.debug({ dir, err }, "cannot watch the mTLS directory; polling only");
    }
  }

  #schedule(): void {
    if (this.#closed) return;
    clearTimeout(this.#debounce);
    this.#debounce = setTimeout(() => void this.reload("watch"), this.#debounceMs).unref();
  }

  /** Stops watching; connections keep the certificates they have. */
  close(): void {
    this.#closed = true;
    clearInterval(this.#poll);
    clearTimeout(this.#debounce);
    for (const w of this.#watchers) w.close();
    live.delete(this);
  }

  /** For the upstream pool's key: upstreams with the same files share channels. */
  toJSON(): string {
    return `tls:${this.files.certFile}`;
  }

  // experimental.CertificateProvider: grpc-js registers while a server listens or a channel connects.
  addCaCertificateListener(listener: experimental.CaCertificateUpdateListener): void {
    this.#caListeners.add(listener);
    process.nextTick(listener, { caCertificate: this.#material.ca });
  }
  removeCaCertificateListener(listener: experimental.CaCertificateUpdateListener): void {
    this.#caListeners.delete(listener);
  }
  addIdentityCertificateListener(listener: experimental.IdentityCertificateUpdateListener): void {
    this.#identityListeners.add(listener);
    const { cert, key } = this.#material;
    process.nextTick(listener, { certificate: cert, privateKey: key });
  }
  removeIdentityCertificateListener(listener: experimental.IdentityCertificateUpdateListener): void {
    this.#identityListeners.delete(listener);
  }
}
