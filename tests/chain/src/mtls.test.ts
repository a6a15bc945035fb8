import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
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
} from "@demo/rpc-kit/testing";
import { credentials, status } from "@grpc/grpc-js";
import { type Chain, type ServiceProcess, startChain } from "./processes.ts";

/**
 * The chain with mTLS on both internal hops: each service reads its own
 * certificate (users' as a Kubernetes Secret volume, the others' as plain
 * files), all signed by one CA made here with openssl.
 */
describe("mTLS between gateway → profiles → users, as three processes", () => {
  const tmp = mkdtempSync(join(tmpdir(), "chain-mtls-"));
  let ca: TestCa;
  let otherCa: TestCa;
  let chain: Chain;
  const certs: Record<"users" | "profiles" | "gateway", Issued> = {} as never;
  const dir = (name: string) => join(tmp, name);

  before(async () => {
    ca = testCa(dir("ca"));
    otherCa = testCa(dir("other-ca"), "another CA");
    for (const name of ["users", "profiles", "gateway"] as const) certs[name] = ca.issue(name);
    writeLikeKubelet(dir("users"), secretFiles(certs.users, ca));
    writeByRename(dir("profiles"), secretFiles(certs.profiles, ca));
    writeByRename(dir("gateway"), secretFiles(certs.gateway, ca));
    chain = await startChain({
      // Users closes connections after a second, so that profiles handshakes again and again during the test.
      users: { ...tlsEnv(dir("users")), MAX_CONNECTION_AGE_MS: "1000" },
      profiles: tlsEnv(dir("profiles")),
      gateway: tlsEnv(dir("gateway")),
    });
  });
  after(async () => {
    await chain?.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  const getProfile = async (userId = "u-1") => {
    const res = await fetch(`${chain.baseUrl}/demo.gateway.v1.GatewayService/GetProfile`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ userId }),
    });
    return { status: res.status, body: (await res.json()) as { profile?: { user?: { name?: string } } } };
  };

  const logged = (p: ServiceProcess, msg: string) => p.lines.filter((l) => l.msg === msg);

  async function until(check: () => boolean | Promise<boolean>, ms: number, what: string): Promise<number> {
    const started = performance.now();
    while (!(await check())) {
      assert.ok(performance.now() - started < ms, `${what} within ${ms} ms`);
      await new Promise((r) => setTimeout(r, 20));
    }
    return performance.now() - started;
  }

  it("answers GetProfile through both TLS hops, and says so in each service's log", async () => {
    const { status: code, body } = await getProfile();
    assert.equal(code, 200);
    assert.equal(body.profile?.user?.name, "Ada Lovelace");
    assert.equal(await peerSerial(chain.users.port, ca, certs.gateway), certs.users.serial);
    assert.equal(await peerSerial(chain.profiles.port, ca, certs.gateway), certs.profiles.serial);
    for (const p of [chain.users, chain.profiles, chain.gateway]) {
      assert.equal(logged(p, "mTLS on: certificates loaded").length, 1, `${p.name} logs its certificate`);
    }
    assert.equal(
      logged(
        chain.gateway,
        "the TLS files serve this process's clients; its public port stays plain (TLS ends at the ingress)",
      ).length,
      1,
    );
  });

  it("turns away callers without a certificate, with another CA's, and in plaintext (Unavailable)", async () => {
    const intruder = otherCa.issue("intruder");
    const good = credentials.createSsl(ca.cert, certs.gateway.key, certs.gateway.cert);
    for (const p of [chain.users, chain.profiles]) {
      assert.equal(await healthCheckStatus(p.port, good), status.OK, `${p.name}: a certificate of the CA is let in`);
      assert.equal(
        await healthCheckStatus(p.port, credentials.createSsl(ca.cert)),
        status.UNAVAILABLE,
        `${p.name}: none`,
      );
      assert.equal(
        await healthCheckStatus(p.port, credentials.createSsl(ca.cert, intruder.key, intruder.cert)),
        status.UNAVAILABLE,
        `${p.name}: another CA's`,
      );
      assert.equal(
        await healthCheckStatus(p.port, credentials.createInsecure()),
        status.UNAVAILABLE,
        `${p.name}: plaintext`,
      );
    }
  });

  it("rotates users' and profiles' certificates without a restart, failing no call", async () => {
    const failures: string[] = [];
    let calls = 0;
    let stop = false;
    const load = Promise.all(
      Array.from({ length: 4 }, async () => {
        while (!stop) {
          await getProfile().then(
            (r) => (r.status === 200 ? calls++ : failures.push(JSON.stringify(r.body))),
            (e: unknown) => failures.push(String(e)),
          );
        }
      }),
    );
    const next = { users: ca.issue("users"), profiles: ca.issue("profiles") };
    let usersMs = Number.NaN;
    let atSwap = 0;
    try {
      await new Promise((r) => setTimeout(r, 300));
      atSwap = calls;
      writeLikeKubelet(dir("users"), secretFiles(next.users, ca));
      writeByRename(dir("profiles"), secretFiles(next.profiles, ca));
      usersMs = await until(
        async () => (await peerSerial(chain.users.port, ca, certs.gateway)) === next.users.serial,
        5_000,
        "users serves its new certificate",
      );
      await until(
        async () => (await peerSerial(chain.profiles.port, ca, certs.gateway)) === next.profiles.serial,
        5_000,
        "profiles serves its new certificate",
      );
      // Past users' connection age: profiles has reconnected, presenting its new client certificate.
      await new Promise((r) => setTimeout(r, 1_500));
      // Calls kept being answered after the swap: a count, however long it takes, not a count in a fixed time.
      await until(() => calls - atSwap >= 20 || failures.length > 0, 20_000, "20 calls answered after the swap");
    } finally {
      stop = true;
      await load;
    }
    assert.deepEqual(failures, []);
    assert.ok(calls - atSwap >= 20, `${calls - atSwap} calls answered after the swap`);
    for (const p of [chain.users, chain.profiles]) {
      const [line, ...more] = logged(p, "mTLS certificates reloaded: new connections use them");
      assert.ok(line && more.length === 0, `${p.name}: one reload line`);
      assert.equal((line.tls as { serial: string }).serial, next[p.name as "users"].serial);
      assert.doesNotMatch(p.output(), /PRIVATE KEY/);
    }
    console.log(
      `users served its new certificate ${usersMs.toFixed(0)} ms after the swap; ${calls} calls, none failed`,
    );
    certs.users = next.users;
    certs.profiles = next.profiles;
  });

  it("keeps serving with the certificate in use when the new files are broken", async () => {
    const stranger = ca.issue("users");
    const warned = chain.users.lines.length;
    writeLikeKubelet(dir("users"), { "tls.crt": ca.issue("users").cert, "tls.key": stranger.key, "ca.crt": ca.cert });
    await until(
      () => chain.users.lines.slice(warned).some((l) => l.level === "warn"),
      3_000,
      "users warns about the files",
    );
    const warning = chain.users.lines.slice(warned).find((l) => l.level === "warn");
    assert.match(String(warning?.reason), /tls\.key does not match the certificate/);
    assert.equal(await peerSerial(chain.users.port, ca, certs.gateway), certs.users.serial);
    // Past users' connection age again: profiles reconnects to the old certificate.
    await new Promise((r) => setTimeout(r, 1_200));
    for (let i = 0; i < 20; i++) assert.equal((await getProfile()).status, 200);
  });
});
