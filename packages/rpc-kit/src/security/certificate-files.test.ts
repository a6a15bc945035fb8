import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import type * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import * as tls from "node:tls";
import { Code, ConnectError } from "@connectrpc/connect";
import { UserService } from "@demo/proto/demo/users/v1/users_pb";
import { credentials, status } from "@grpc/grpc-js";
import { clientSettings, createClient } from "../client/client.ts";
import { DEFAULT_CHANNEL_OPTIONS, UpstreamPool } from "../client/upstream-pool.ts";
import { ConfigError, loadConfig } from "../config/config.ts";
import { type RunningServer, serve, serverSettings } from "../serve.ts";
import { service } from "../server/service-registration.ts";
import { userFixture } from "../test-support/users.ts";
import { captureLogger, testServerSettings, waitFor } from "../testing/index.ts";
import {
  healthCheckStatus,
  type Issued,
  peerSerial,
  secretFiles,
  type TestCa,
  testCa,
  tlsEnv,
  writeByRename,
  writeLikeKubelet,
} from "../testing/pki.ts";
import type { TlsFiles } from "./certificate-checks.ts";
import { CertificateFiles } from "./certificate-files.ts";

const tmp = mkdtempSync(join(tmpdir(), "rpc-kit-tls-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

let ca: TestCa;
let otherCa: TestCa;
before(() => {
  ca = testCa(join(tmp, "ca"));
  otherCa = testCa(join(tmp, "other-ca"), "another CA");
});

const filesOf = (dir: string): TlsFiles => {
  const env = tlsEnv(dir);
  return { certFile: env.TLS_CERT_FILE, keyFile: env.TLS_KEY_FILE, caFile: env.TLS_CA_FILE };
};

/** A pool whose channels share no connection with any other's (grpc-js shares subchannels process-wide). */
const freshPool = () => new UpstreamPool({ ...DEFAULT_CHANNEL_OPTIONS, "grpc.use_local_subchannel_pool": 1 });

describe("mTLS settings", () => {
  const spec = { ...serverSettings({ port: 1, adminPort: 2 }), ...clientSettings() };
  let dir: string;
  let issued: Issued;
  before(() => {
    dir = join(tmp, "settings");
    issued = ca.issue("users");
    writeByRename(dir, secretFiles(issued, ca));
  });
  const problems = (env: Record<string, string>) => {
    try {
      loadConfig(spec, env);
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      return err.problems;
    }
    return [];
  };

  it("is off when no file is set, on with all three", () => {
    const off = loadConfig(spec, {});
    assert.equal(off.tlsCertFile, undefined);
    const on = loadConfig(spec, { ...tlsEnv(dir), TLS_SERVER_NAME: "users" });
    assert.equal(on.tlsCertFile, join(dir, "tls.crt"));
    assert.equal(on.tlsServerName, "users");
  });

  it("names each missing variable when only some are set", () => {
    const found = problems({ TLS_CERT_FILE: join(dir, "tls.crt") });
    assert.equal(found.length, 2, found.join("\n"));
    assert.match(found[0] ?? "", /^TLS_KEY_FILE: is required when TLS_CERT_FILE is set/);
    assert.match(found[1] ?? "", /^TLS_CA_FILE: is required when TLS_CERT_FILE is set/);
  });

  it("names the file that cannot be read, is not PEM, or does not match", () => {
    const garbage = join(tmp, "garbage.pem");
    writeFileSync(garbage, "not a certificate");
    const stranger = ca.issue("stranger");
    const strangerKey = join(tmp, "stranger.key");
    writeFileSync(strangerKey, stranger.key);
    const found = problems({
      TLS_CERT_FILE: join(dir, "tls.crt"),
      TLS_KEY_FILE: strangerKey,
      TLS_CA_FILE: join(tmp, "missing.crt"),
    });
    assert.equal(found.length, 2, found.join("\n"));
    assert.match(found[0] ?? "", /^TLS_KEY_FILE=".*": does not match the certificate in TLS_CERT_FILE/);
    assert.match(found[1] ?? "", /^TLS_CA_FILE=".*": cannot be read \(ENOENT\)/);
    const notPem = problems({ ...tlsEnv(dir), TLS_CERT_FILE: garbage });
    assert.equal(notPem.length, 1, notPem.join("\n"));
    assert.match(notPem[0] ?? "", /^TLS_CERT_FILE=".*garbage.pem": is not a PEM certificate/);
  });

  it("refuses TLS_SERVER_NAME without the files", () => {
    assert.match(problems({ TLS_SERVER_NAME: "users" })[0] ?? "", /^TLS_SERVER_NAME=.*has no effect without/);
  });
});

describe("mTLS between a grpc server and rpc-kit clients", () => {
  let server: RunningServer;
  let serverCert: Issued;
  let clientCert: Issued;
  let clientFiles: CertificateFiles;
  const serverDir = () => join(tmp, "server");
  const logs = captureLogger("users");
  const pool = new UpstreamPool();
  let users: ReturnType<typeof createClient<typeof UserService>>;

  before(async () => {
    serverCert = ca.issue("users");
    clientCert = ca.issue("profiles");
    // The server's files as a Kubernetes Secret volume mounts them; the client's as plain files.
    writeLikeKubelet(serverDir(), secretFiles(serverCert, ca));
    writeByRename(join(tmp, "client"), secretFiles(clientCert, ca));
    const env = tlsEnv(serverDir());
    server = await serve({
      name: "users",
      settings: testServerSettings({
        tlsCertFile: env.TLS_CERT_FILE,
        tlsKeyFile: env.TLS_KEY_FILE,
        tlsCaFile: env.TLS_CA_FILE,
      }),
      logger: logs.logger,
      services: [service(UserService, userFixture().impl)],
      ownsProcess: false,
      pool: new UpstreamPool(),
    });
    clientFiles = new CertificateFiles(filesOf(join(tmp, "client")));
    users = createClient(UserService, `localhost:${server.port}`, { pool, tls: clientFiles });
  });
  after(async () => {
    pool.close();
    clientFiles.close();
    await server.shutdown();
  });

  it("serves calls from a client with a certificate of the CA, presenting its own", async () => {
    assert.equal((await users.getUser({ id: "u-1" })).user?.id, "u-1");
    assert.equal(await peerSerial(server.port, ca, clientCert), serverCert.serial);
    assert.equal(await healthCheckStatus(server.port, clientFiles.channelCredentials()), status.OK);
    const loaded = logs.lines.find((l) => l.msg === "mTLS on: certificates loaded");
    assert.equal((loaded?.tls as { serial?: string } | undefined)?.serial, serverCert.serial);
  });

  it("rejects a TLS client without a certificate, or with one of another CA (Unavailable)", async () => {
    assert.equal(await healthCheckStatus(server.port, credentials.createSsl(ca.cert)), status.UNAVAILABLE);
    const stranger = otherCa.issue("intruder");
    const foreign = credentials.createSsl(ca.cert, stranger.key, stranger.cert);
    assert.equal(await healthCheckStatus(server.port, foreign), status.UNAVAILABLE);
    // Underneath: the handshake completes from the client's side (TLS 1.3), then Node's server, which
    // checks the client certificate after the handshake, hangs up without a byte (no alert).
    const alert = await new Promise<string>((resolve) => {
      const socket = tls.connect(
        {
          host: "localhost",
          port: server.port,
          ca: ca.cert,
          cert: stranger.cert,
          key: stranger.key,
          ALPNProtocols: ["h2"],
        },
        () => socket.once("data", () => resolve("data")),
      );
      socket.on("error", (err) => resolve(String((err as NodeJS.ErrnoException).code)));
      socket.on("close", () => resolve("closed without an alert"));
    });
    assert.match(alert, /^closed without an alert$|ECONNRESET/);
  });

  it("fails a plaintext client (Unavailable)", async () => {
    const plainPool = new UpstreamPool();
    const plain = createClient(UserService, `localhost:${server.port}`, { pool: plainPool });
    await assert.rejects(
      plain.getUser({ id: "u-1" }, { timeoutMs: 1_000 }),
      (e: unknown) => e instanceof ConnectError && e.code === Code.Unavailable,
    );
    plainPool.close();
  });

  it("verifies the server: its CA, and the name of the target (or TLS_SERVER_NAME)", async () => {
    const wrongName = new UpstreamPool();
    const named = createClient(UserService, `localhost:${server.port}`, {
      pool: wrongName,
      tls: clientFiles,
      tlsServerName: "billing.example",
    });
    await assert.rejects(
      named.getUser({ id: "u-1" }, { timeoutMs: 1_000 }),
      (e: unknown) => e instanceof ConnectError && e.code === Code.Unavailable,
    );
    wrongName.close();
    // An impostor: a TLS server whose certificate comes from another CA.
    const impostorCert = otherCa.issue("users");
    const impostor = tls.createServer({ cert: impostorCert.cert, key: impostorCert.key, ALPNProtocols: ["h2"] });
    await new Promise<void>((r) => impostor.listen(0, r));
    const impostorPool = new UpstreamPool();
    const port = (impostor.address() as net.AddressInfo).port;
    const fooled = createClient(UserService, `localhost:${port}`, { pool: impostorPool, tls: clientFiles });
    await assert.rejects(
      fooled.getUser({ id: "u-1" }, { timeoutMs: 1_000 }),
      (e: unknown) => e instanceof ConnectError && e.code === Code.Unavailable,
    );
    impostorPool.close();
    impostor.close();
  });

  it("picks up a rotated certificate (Secret volume ..data swap) for new connections, failing no call", async () => {
    const next = ca.issue("users");
    let stop = false;
    const failures: string[] = [];
    let calls = 0;
    let fresh = 0;
    // Calls on the established connection, and fresh clients that each handshake anew.
    const steady = Promise.all(
      Array.from({ length: 4 }, async () => {
        while (!stop) {
          await users.getUser({ id: "u-1" }).then(
            () => calls++,
            (e: unknown) => failures.push(String(e)),
          );
        }
      }),
    );
    const handshakes = (async () => {
      while (!stop) {
        const p = freshPool();
        await createClient(UserService, `localhost:${server.port}`, { pool: p, tls: clientFiles })
          .getUser({ id: "u-1" })
          .then(
            () => fresh++,
            (e: unknown) => failures.push(`fresh: ${String(e)}`),
          );
        p.close();
      }
    })();
    await new Promise((r) => setTimeout(r, 100));
    const rotated = performance.now();
    writeLikeKubelet(serverDir(), secretFiles(next, ca));
    let seenAfter = Number.NaN;
    for (;;) {
      if ((await peerSerial(server.port, ca, clientCert)) === next.serial) {
        seenAfter = performance.now() - rotated;
        break;
      }
      assert.ok(performance.now() - rotated < 3_000, "the new certificate is served within 3 s");
      await new Promise((r) => setTimeout(r, 10));
    }
    await new Promise((r) => setTimeout(r, 100));
    stop = true;
    await Promise.all([steady, handshakes]);
    assert.deepEqual(failures, []);
    assert.ok(calls > 20 && fresh > 2, `${calls} calls, ${fresh} fresh connections during the rotation`);
    const line = logs.lines.find((l) => l.msg === "mTLS certificates reloaded: new connections use them");
    assert.ok(line, "one line says so");
    assert.equal((line.tls as { serial: string }).serial, next.serial);
    assert.equal(line.previous_serial, serverCert.serial);
    assert.doesNotMatch(logs.text(), /PRIVATE KEY/, "never the key");
    console.log(`new certificate served ${seenAfter.toFixed(0)} ms after the swap (${calls} calls, ${fresh} fresh)`);
    serverCert = next;
  });

  it("keeps the certificate in use when the new files are invalid or half-written, then takes good ones", async () => {
    const before = serverCert.serial;
    const good = ca.issue("users");
    const stranger = ca.issue("users");
    const bad = [
      { "tls.crt": "-----BEGIN CERTIFICATE-----\nMIIB", "tls.key": good.key, "ca.crt": ca.cert },
      { "tls.crt": good.cert, "tls.key": stranger.key, "ca.crt": ca.cert },
      { "tls.crt": good.cert, "tls.key": good.key, "ca.crt": "garbage" },
    ];
    for (const files of bad) {
      const warned = logs.lines.length;
      writeLikeKubelet(serverDir(), files);
      await waitFor(() => logs.lines.slice(warned).some((l) => l.level === "warn"), 3_000);
      assert.equal(await peerSerial(server.port, ca, clientCert), before, "still the previous certificate");
      assert.equal((await users.getUser({ id: "u-1" })).user?.id, "u-1");
      const fresh = freshPool();
      const again = createClient(UserService, `localhost:${server.port}`, { pool: fresh, tls: clientFiles });
      assert.equal((await again.getUser({ id: "u-1" })).user?.id, "u-1", "new connections still work");
      fresh.close();
    }
    const warnings = logs.lines.filter((l) => l.level === "warn").map((l) => String(l.reason));
    assert.match(warnings.join("\n"), /tls\.key does not match the certificate/);
    assert.match(warnings.join("\n"), /tls\.crt is not a PEM certificate/);
    assert.match(warnings.join("\n"), /ca\.crt holds no PEM certificate/);
    writeLikeKubelet(serverDir(), secretFiles(good, ca));
    await waitFor(() => logs.lines.some((l) => (l.tls as { serial?: string } | undefined)?.serial === good.serial));
    assert.equal(await peerSerial(server.port, ca, clientCert), good.serial);
    serverCert = good;
  });

  it("shows the certificate's expiry and the reloads on /metrics", async () => {
    const text = await (await fetch(`http://localhost:${server.adminPort}/metrics`)).text();
    const certFile = join(serverDir(), "tls.crt");
    const expiry = new RegExp(
      `^rpc_kit_tls_certificate_expiry_timestamp_seconds\\{cert_file="${certFile}"\\} (\\d+)$`,
      "m",
    );
    const notAfter = Number(expiry.exec(text)?.[1]);
    assert.ok(notAfter * 1000 > Date.now() && notAfter * 1000 < Date.now() + 2 * 86_400_000, `expiry ${notAfter}`);
    const count = (result: string) =>
      Number(
        new RegExp(`^rpc_kit_tls_reloads_total\\{cert_file="${certFile}",result="${result}"\\} (\\d+)$`, "m").exec(
          text,
        )?.[1],
      );
    assert.equal(count("reloaded"), 2);
    assert.ok(count("rejected") >= 3, "the three broken sets at least");
  });

  it("presents a rotated client certificate on the channel's next connection, without a new channel", async () => {
    // A TLS server that records the client certificate of each connection, then hangs up.
    const serverSide = ca.issue("users");
    const seen: string[] = [];
    const recorder = tls.createServer(
      {
        cert: serverSide.cert,
        key: serverSide.key,
        ca: ca.cert,
        requestCert: true,
        rejectUnauthorized: true,
        ALPNProtocols: ["h2"],
      },
      (socket) => {
        seen.push(socket.getPeerCertificate().serialNumber);
        socket.destroy();
      },
    );
    await new Promise<void>((r) => recorder.listen(0, r));
    const port = (recorder.address() as net.AddressInfo).port;
    const dir = join(tmp, "rotating-client");
    const first = ca.issue("profiles");
    writeByRename(dir, secretFiles(first, ca));
    const files = new CertificateFiles(filesOf(dir));
    const recorderPool = new UpstreamPool();
    const client = createClient(UserService, `localhost:${port}`, { pool: recorderPool, tls: files });
    const attempt = () => client.getUser({ id: "u-1" }, { timeoutMs: 300 }).catch(() => undefined);
    await attempt();
    await waitFor(() => seen.includes(first.serial));
    const second = ca.issue("profiles");
    writeByRename(dir, secretFiles(second, ca));
    await waitFor(() => files.certificate.serial === second.serial);
    // The same channel reconnects (250 ms backoff): its next handshake shows the new certificate.
    const deadline = Date.now() + 3_000;
    while (!seen.includes(second.serial) && Date.now() < deadline) await attempt();
    assert.ok(seen.includes(second.serial), `serials seen: ${seen.join(", ")}`);
    recorderPool.close();
    files.close();
    recorder.close();
  });
});

describe("CertificateFiles", () => {
  it("notices a change by polling when no watch event comes", async () => {
    const dir = join(tmp, "polled");
    const first = ca.issue("users");
    writeByRename(dir, secretFiles(first, ca));
    const files = new CertificateFiles(filesOf(dir), { watch: false, pollMs: 100 });
    try {
      const second = ca.issue("users");
      writeByRename(dir, secretFiles(second, ca));
      await waitFor(() => files.certificate.serial === second.serial, 1_000);
      assert.equal(await files.reload(), "unchanged");
    } finally {
      files.close();
    }
  });

  it("refuses to start with unusable files, naming the file", () => {
    const dir = join(tmp, "unusable");
    const a = ca.issue("users");
    const b = ca.issue("users");
    writeByRename(dir, { "tls.crt": a.cert, "tls.key": b.key, "ca.crt": ca.cert });
    assert.throws(() => new CertificateFiles(filesOf(dir)), /tls\.key does not match the certificate in TLS_CERT_FILE/);
  });
});
