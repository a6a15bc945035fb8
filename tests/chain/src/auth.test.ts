import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fromBinary } from "@bufbuild/protobuf";
import { base64Decode } from "@bufbuild/protobuf/wire";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { GatewayService } from "@demo/proto/demo/gateway/v1/gateway_pb";
import { ProfileService } from "@demo/proto/demo/profiles/v1/profiles_pb";
import { UserService } from "@demo/proto/demo/users/v1/users_pb";
import { RetryInfoSchema } from "@demo/proto/google/rpc/error_details_pb";
import { SignJWT } from "jose";
import { type Chain, spawnService, startChain } from "./processes.ts";

const SECRET = "chain-test-only-secret-0123456789abcdef";
const ISSUER = "https://issuer.chain.test/";
const AUDIENCE = "rpc-chain";
/** The one answer to every missing or bad credential, whatever was wrong. */
const UNAUTHENTICATED = { code: "unauthenticated", message: "missing or invalid credentials" };

/** Polls `check` until it holds (log lines reach the parent within ~100 ms); fails after 3 s. */
async function eventually(check: () => boolean): Promise<void> {
  const deadline = Date.now() + 3_000;
  while (!check()) {
    assert.ok(Date.now() < deadline, "condition not met within 3 s");
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("edge security: JWT at the gateway, verified again on every hop, per-client rate limit", () => {
  let chain: Chain;
  let dir: string;
  /** Every token this suite minted: none may ever appear in a log line. */
  const minted: string[] = [];

  async function mint(
    o: { subject?: string; issuer?: string; audience?: string; expiresIn?: number; secret?: string } = {},
  ): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({ scope: "users:write" })
      .setProtectedHeader({ alg: "HS256" })
      .setSubject(o.subject ?? "alice")
      .setIssuer(o.issuer ?? ISSUER)
      .setAudience(o.audience ?? AUDIENCE)
      .setIssuedAt(now - 60)
      .setExpirationTime(now + (o.expiresIn ?? 300))
      .sign(new TextEncoder().encode(o.secret ?? SECRET));
    minted.push(token);
    return token;
  }

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "chain-auth-"));
    const secretFile = join(dir, "jwt-secret");
    writeFileSync(secretFile, `${SECRET}\n`, { mode: 0o600 });
    chain = await startChain({
      all: { AUTH_JWT_SECRET_FILE: secretFile, AUTH_ISSUER: ISSUER, AUTH_AUDIENCE: AUDIENCE, LOG_LEVEL: "debug" },
      gateway: { RATE_LIMIT_PER_SECOND: "2", RATE_LIMIT_BURST: "20" },
    });
  });
  after(async () => {
    await chain.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const post = (method: string, body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${chain.baseUrl}/demo.gateway.v1.GatewayService/${method}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify(body),
    });
  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

  it("says at start, on every service, that authentication is on", () => {
    for (const s of [chain.gateway, chain.profiles, chain.users]) {
      const line = s.lines.find((l) => typeof l.msg === "string" && l.msg.startsWith("authentication is on"));
      assert.equal(line?.auth_keys, "hmac", s.name);
    }
  });

  it("answers CreateUser without a token with 401 Unauthenticated", async () => {
    const res = await post("CreateUser", { name: "Mallory", email: "mallory@example.com" });
    assert.equal(res.status, 401);
    assert.equal(res.headers.get("www-authenticate"), "Bearer");
    assert.deepEqual(await res.json(), UNAUTHENTICATED);
  });

  it("answers expired, wrong-audience, wrong-issuer and badly signed tokens alike: no hint of which", async () => {
    const tokens = [
      await mint({ expiresIn: -120 }),
      await mint({ audience: "another-api" }),
      await mint({ issuer: "https://evil.test/" }),
      await mint({ secret: "not-the-secret-not-the-secret-not-the-secret" }),
    ];
    for (const token of tokens) {
      const res = await post("CreateUser", { name: "Mallory", email: "mallory@example.com" }, bearer(token));
      assert.equal(res.status, 401);
      assert.deepEqual(await res.json(), UNAUTHENTICATED);
    }
    // The reasons are in the gateway's log (without the token), for operators only.
    const reasons = () =>
      chain.gateway.lines.filter((l) => l.msg === "authentication failed").map((l) => l.auth_failure);
    await eventually(() =>
      ["expired", "wrong audience", "wrong issuer", "bad signature"].every((r) => reasons().includes(r)),
    );
  });

  it("creates a user with a valid token, over Connect and gRPC, and the identity reaches users", async () => {
    const res = await post("CreateUser", { name: "Alice Liddell", email: "alice@example.com" }, bearer(await mint()));
    assert.equal(res.status, 200);
    const { user } = (await res.json()) as { user: { id: string } };

    const grpc = createClient(GatewayService, createGrpcTransport({ baseUrl: chain.baseUrl }));
    const viaGrpc = await grpc.createUser(
      { name: "Bob Lidell", email: "bob@example.com" },
      { headers: bearer(await mint({ subject: "bob" })) },
    );

    const createdBy = (id: unknown) =>
      chain.users.lines.find((l) => l.msg === "user created" && l.user_id === id)?.created_by;
    await eventually(() => createdBy(user.id) === "alice" && createdBy(viaGrpc.user?.id) === "bob");
  });

  it("serves reads without a token (AUTH_REQUIRE_FOR_READS is off by default)", async () => {
    const res = await post("GetProfile", { userId: "u-1" });
    assert.equal(res.status, 200);
    const grpc = createClient(GatewayService, createGrpcTransport({ baseUrl: chain.baseUrl }));
    let n = 0;
    for await (const _ of grpc.listProfiles({})) n++;
    assert.ok(n >= 3);
  });

  it("trusts no identity header on an internal port: a direct call with a forged identity gets nothing", async () => {
    const forged = {
      "x-user-id": "alice",
      "x-authenticated-user": "alice",
      "x-forwarded-user": "alice",
      "x-jwt-subject": "alice",
    };
    const profiles = createClient(
      ProfileService,
      createGrpcTransport({ baseUrl: `http://localhost:${chain.profiles.port}` }),
    );
    const users = createClient(UserService, createGrpcTransport({ baseUrl: `http://localhost:${chain.users.port}` }));
    const createdBefore = chain.users.lines.filter((l) => l.msg === "user created").length;
    const badlySigned = await mint({ secret: "forged-forged-forged-forged-forged-forged" });
    const attempts = [
      () => profiles.createProfile({ name: "Mallory", email: "m1@example.com" }, { headers: forged }),
      () => users.createUser({ name: "Mallory", email: "m2@example.com" }, { headers: forged }),
      () =>
        profiles.createProfile(
          { name: "Mallory", email: "m3@example.com" },
          { headers: { ...forged, ...bearer(badlySigned) } },
        ),
    ];
    for (const attempt of attempts) {
      await assert.rejects(attempt(), (e: unknown) => {
        assert.ok(e instanceof ConnectError);
        assert.equal(e.code, Code.Unauthenticated);
        assert.equal(e.rawMessage, UNAUTHENTICATED.message);
        return true;
      });
    }
    assert.equal(chain.users.lines.filter((l) => l.msg === "user created").length, createdBefore);
  });

  it("refuses a client past its burst with ResourceExhausted (429), RetryInfo and retry-after", async () => {
    const token = await mint({ subject: "flooder" });
    const started = performance.now();
    const answers = await Promise.all(
      Array.from({ length: 30 }, () => post("GetProfile", { userId: "u-1" }, bearer(token))),
    );
    const seconds = (performance.now() - started) / 1000;
    const statuses = answers.map((r) => r.status);
    // The burst, plus what 2/s refills while the 30 calls arrive: on a busy machine they may take
    // longer than a second to arrive, so the bound follows the time they took.
    const ok = statuses.filter((s) => s === 200).length;
    const most = 20 + Math.max(2, Math.ceil(2 * seconds));
    assert.ok(ok >= 20 && ok <= most, `${ok} answered (at most ${most} in ${seconds.toFixed(2)} s): ${statuses}`);
    const refused = answers.filter((r) => r.status === 429);
    assert.equal(refused.length, 30 - ok, statuses.join());
    const first = refused[0] as Response;
    assert.match(first.headers.get("retry-after") ?? "", /^[1-9]$/);
    const body = (await first.json()) as { code: string; details: { type: string; value: string }[] };
    assert.equal(body.code, "resource_exhausted");
    const detail = body.details.find((d) => d.type === "google.rpc.RetryInfo");
    assert.ok(detail, JSON.stringify(body));
    const info = fromBinary(RetryInfoSchema, base64Decode(detail.value));
    const ms = Number(info.retryDelay?.seconds ?? 0n) * 1000 + (info.retryDelay?.nanos ?? 0) / 1e6;
    assert.ok(ms > 0 && ms <= 1000, `retry delay ${ms} ms`);
    for (const r of answers) if (!r.bodyUsed) await r.body?.cancel();
    // Another client (alice) is not affected by the flooder.
    assert.equal((await post("GetProfile", { userId: "u-1" }, bearer(await mint()))).status, 200);
    const metrics = await (await fetch(`http://localhost:${chain.gateway.adminPort}/metrics`)).text();
    const counted =
      /rpc_kit_rate_limited_total\{grpc_service="demo.gateway.v1.GatewayService",grpc_method="GetProfile"\} (\d+)/.exec(
        metrics,
      );
    assert.equal(Number(counted?.[1]), refused.length);
  });

  it("never writes a token to any log line, at debug level, on any service", async () => {
    await new Promise((r) => setTimeout(r, 250)); // the log buffer is flushed every 100 ms
    assert.ok(minted.length >= 8);
    for (const s of [chain.gateway, chain.profiles, chain.users]) {
      const output = s.output();
      assert.ok(output.length > 0);
      for (const token of minted) {
        const signature = token.split(".")[2] as string;
        assert.ok(!output.includes(signature), `${s.name} logged a token`);
      }
      assert.ok(!output.includes(SECRET), `${s.name} logged the secret`);
    }
  });
});

describe("edge security: a bad auth configuration stops the start, naming the variable", () => {
  async function run(env: Record<string, string>) {
    const { child, output } = spawnService("users", { PORT: "0", ADMIN_PORT: "0", ...env });
    const [code] = (await once(child, "exit")) as [number | null];
    return { code, text: output() };
  }

  it("an unreadable key file", async () => {
    const { code, text } = await run({ AUTH_JWT_SECRET_FILE: "/nonexistent/jwt-secret" });
    assert.equal(code, 1);
    assert.match(text, /AUTH_JWT_SECRET_FILE="\/nonexistent\/jwt-secret": cannot read the file \(ENOENT\)/);
  });

  it("a malformed JWKS, and a key file without issuer and audience", async () => {
    const dir = mkdtempSync(join(tmpdir(), "chain-auth-"));
    try {
      const jwks = join(dir, "jwks.json");
      writeFileSync(jwks, '{"keys": "none"}');
      const bad = await run({ AUTH_JWKS_FILE: jwks });
      assert.equal(bad.code, 1);
      assert.match(bad.text, /AUTH_JWKS_FILE=".*": not a JWKS/);
      const secret = join(dir, "jwt-secret");
      writeFileSync(secret, SECRET);
      const partial = await run({ AUTH_JWT_SECRET_FILE: secret });
      assert.equal(partial.code, 1);
      assert.match(partial.text, /users cannot start: .*AUTH_ISSUER: is required.*AUTH_AUDIENCE: is required/s);
      assert.ok(!partial.text.includes(SECRET));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
