import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError, createClient as createConnectClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { UserService } from "@demo/proto/demo/users/v1/users_pb";
import { Health } from "@demo/proto/health/v1/health_pb";
import { exportJWK, generateKeyPair, type JWTPayload, SignJWT } from "jose";
import { currentCall } from "../call/call-record.ts";
import { ConfigError, loadConfig } from "../config/config.ts";
import { type RunningServer, serve } from "../serve.ts";
import { service } from "../server/service-registration.ts";
import { ada, userFixture } from "../test-support/users.ts";
import { captureLogger, testServerSettings } from "../testing/index.ts";
import {
  type AuthSettings,
  authSettings,
  bearerToken,
  callerIdentity,
  createAuthenticator,
  type Identity,
  UNAUTHENTICATED_MESSAGE,
} from "./auth.ts";

const dir = mkdtempSync(join(tmpdir(), "rpc-kit-auth-"));
const SECRET = "test-only-hmac-secret-of-at-least-32-bytes";
const ISSUER = "https://issuer.test/";
const AUDIENCE = "rpc-chain";
const secretFile = join(dir, "jwt-secret");
writeFileSync(secretFile, `${SECRET}\n`);
const secretKey = new TextEncoder().encode(SECRET);

function settings(env: Record<string, string>): AuthSettings {
  return loadConfig(authSettings(), env);
}

const hmacSettings = () => settings({ AUTH_JWT_SECRET_FILE: secretFile, AUTH_ISSUER: ISSUER, AUTH_AUDIENCE: AUDIENCE });

interface MintOptions {
  claims?: JWTPayload;
  subject?: string | undefined;
  issuer?: string;
  audience?: string;
  /** Seconds from now; negative for a token that has expired. */
  expiresIn?: number;
  alg?: string;
  key?: Parameters<SignJWT["sign"]>[0];
  kid?: string;
}

function mint(o: MintOptions = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const jwt = new SignJWT(o.claims ?? { scope: "users:write users:read" })
    .setProtectedHeader({ alg: o.alg ?? "HS256", ...(o.kid && { kid: o.kid }) })
    .setIssuer(o.issuer ?? ISSUER)
    .setAudience(o.audience ?? AUDIENCE)
    .setIssuedAt(now - 60)
    .setExpirationTime(now + (o.expiresIn ?? 300));
  if (!("subject" in o)) jwt.setSubject("alice");
  else if (o.subject !== undefined) jwt.setSubject(o.subject);
  return jwt.sign(o.key ?? secretKey);
}

describe("auth settings", () => {
  it("leaves authentication off when no key file is set", () => {
    assert.equal(createAuthenticator(settings({})), undefined);
  });

  it("names the variable of an unreadable, short or malformed key file, never its content", () => {
    const short = join(dir, "short");
    writeFileSync(short, "hunter2");
    const notJson = join(dir, "not-json");
    writeFileSync(notJson, "{hunter2");
    const priv = join(dir, "private.json");
    writeFileSync(priv, JSON.stringify({ keys: [{ kty: "EC", crv: "P-256", x: "a", y: "b", d: "hunter2" }] }));
    const oct = join(dir, "oct.json");
    writeFileSync(oct, JSON.stringify({ keys: [{ kty: "oct", k: "aHVudGVyMg" }] }));
    const cases: [Record<string, string>, RegExp][] = [
      [
        { AUTH_JWT_SECRET_FILE: join(dir, "missing") },
        /AUTH_JWT_SECRET_FILE=".*missing": cannot read the file \(ENOENT\)/,
      ],
      [{ AUTH_JWT_SECRET_FILE: short }, /AUTH_JWT_SECRET_FILE=.*: the secret must be at least 32 bytes/],
      [{ AUTH_JWKS_FILE: notJson }, /AUTH_JWKS_FILE=.*: not a JSON document/],
      [{ AUTH_JWKS_FILE: secretFile }, /AUTH_JWKS_FILE=.*: not a JSON document/],
      [{ AUTH_JWKS_FILE: join(dir, "jwt-secret-missing") }, /AUTH_JWKS_FILE=.*cannot read the file/],
      [{ AUTH_JWKS_FILE: priv }, /AUTH_JWKS_FILE=.*: key 0 is a private key/],
      [{ AUTH_JWKS_FILE: oct }, /AUTH_JWKS_FILE=.*: key 0: kty must be RSA, EC or OKP/],
    ];
    for (const [env, expected] of cases) {
      assert.throws(
        () => settings(env),
        (err: unknown) => {
          assert.ok(err instanceof ConfigError);
          assert.match(err.message, expected);
          assert.doesNotMatch(err.message, /hunter2|test-only-hmac/);
          return true;
        },
      );
    }
  });

  it("requires an issuer and an audience, and one key file only", () => {
    assert.throws(
      () => createAuthenticator(settings({ AUTH_JWT_SECRET_FILE: secretFile })),
      (err: unknown) =>
        err instanceof ConfigError &&
        /AUTH_ISSUER: is required/.test(err.message) &&
        /AUTH_AUDIENCE: is required/.test(err.message),
    );
    const jwks = join(dir, "empty-ok.json");
    writeFileSync(jwks, JSON.stringify({ keys: [] }));
    assert.throws(() => settings({ AUTH_JWKS_FILE: jwks }), /at least one key/);
  });
});

describe("auth: token verification", () => {
  const auth = () => {
    const a = createAuthenticator(hmacSettings());
    assert.ok(a);
    return a;
  };

  it("accepts a valid HS256 token: subject and scopes", async () => {
    const result = await auth().verify(await mint());
    assert.ok("identity" in result, JSON.stringify(result));
    assert.equal(result.identity.subject, "alice");
    assert.deepEqual(result.identity.scopes, ["users:write", "users:read"]);
  });

  it("tells apart, for the log only, every way a token is wrong", async () => {
    const other = new TextEncoder().encode("another-secret-another-secret-another!");
    const cases: [Promise<string>, string][] = [
      [mint({ expiresIn: -120 }), "expired"],
      [mint({ audience: "someone-else" }), "wrong audience"],
      [mint({ issuer: "https://evil.test/" }), "wrong issuer"],
      [mint({ key: other }), "bad signature"],
      [mint({ subject: undefined }), "invalid sub"],
      [Promise.resolve("not.a.jwt"), "malformed token"],
      [
        // alg "none": an unsigned token
        Promise.resolve(
          `${Buffer.from('{"alg":"none"}').toString("base64url")}.${Buffer.from(
            JSON.stringify({ sub: "alice", iss: ISSUER, aud: AUDIENCE, exp: 9e9 }),
          ).toString("base64url")}.`,
        ),
        "algorithm not allowed",
      ],
    ];
    for (const [token, reason] of cases) {
      assert.deepEqual(await auth().verify(await token), { reason });
    }
  });

  it("allows a small clock skew (AUTH_CLOCK_SKEW_SECONDS, default 30 s)", async () => {
    assert.ok("identity" in (await auth().verify(await mint({ expiresIn: -10 }))));
    assert.deepEqual(await auth().verify(await mint({ expiresIn: -40 })), { reason: "expired" });
  });

  it("remembers a verified token until it expires, then refuses it", async () => {
    const a = createAuthenticator({ ...hmacSettings(), authClockSkewSeconds: 0 });
    assert.ok(a);
    // exp is in whole seconds from a floored iat: 2 s leaves at least 1 s of validity.
    const token = await mint({ expiresIn: 2 });
    assert.ok("identity" in (await a.verify(token)));
    assert.ok("identity" in (await a.verify(token)));
    await new Promise((r) => setTimeout(r, 2_100));
    assert.deepEqual(await a.verify(token), { reason: "expired" });
  });

  it("verifies with a JWKS file, and refuses HMAC tokens there (no algorithm confusion)", async () => {
    const { publicKey, privateKey } = await generateKeyPair("ES256");
    const jwk = { ...(await exportJWK(publicKey)), kid: "k1", alg: "ES256", use: "sig" };
    const file = join(dir, "jwks.json");
    writeFileSync(file, JSON.stringify({ keys: [jwk] }));
    const a = createAuthenticator(settings({ AUTH_JWKS_FILE: file, AUTH_ISSUER: ISSUER, AUTH_AUDIENCE: AUDIENCE }));
    assert.ok(a);
    const ok = await a.verify(await mint({ alg: "ES256", key: privateKey, kid: "k1" }));
    assert.ok("identity" in ok && ok.identity.subject === "alice");
    assert.deepEqual(await a.verify(await mint()), { reason: "algorithm not allowed" });
    const stranger = await generateKeyPair("ES256");
    assert.deepEqual(await a.verify(await mint({ alg: "ES256", key: stranger.privateKey, kid: "k1" })), {
      reason: "bad signature",
    });
  });

  it("reads the token of an authorization header", () => {
    assert.equal(bearerToken("Bearer a.b.c"), "a.b.c");
    assert.equal(bearerToken("bearer a.b-_c"), "a.b-_c");
    assert.equal(bearerToken("Basic dXNlcjpwdw=="), undefined);
    assert.equal(bearerToken("Bearer "), undefined);
  });
});

describe("auth on a server, on both engines", () => {
  for (const engine of ["grpc", "connect"] as const) {
    describe(engine, () => {
      const log = captureLogger("users");
      let server: RunningServer;
      const seen: { identity: Identity | undefined; forwarded: string | null | undefined }[] = [];
      const fixture = userFixture();
      let client: ReturnType<typeof createConnectClient<typeof UserService>>;
      let health: ReturnType<typeof createConnectClient<typeof Health>>;

      before(async () => {
        server = await serve({
          name: "users",
          engine,
          settings: testServerSettings(),
          logger: log.logger,
          auth: hmacSettings(),
          services: [
            service(UserService, {
              ...fixture.impl,
              createUser(_req, ctx) {
                seen.push({
                  identity: callerIdentity(ctx),
                  forwarded: currentCall()?.forwardedHeaders?.get("authorization"),
                });
                return { user: ada };
              },
            }),
          ],
          ownsProcess: false,
        });
        const baseUrl = `http://localhost:${server.port}`;
        const transport =
          engine === "grpc"
            ? createGrpcTransport({ baseUrl })
            : createConnectTransport({ baseUrl, httpVersion: "1.1" });
        client = createConnectClient(UserService, transport);
        health = createConnectClient(Health, transport);
      });
      after(() => server.shutdown());

      const auth = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });

      it("refuses a method with side effects without a token, or with any bad one, all alike", async () => {
        const expired = await mint({ expiresIn: -120 });
        const otherAudience = await mint({ audience: "nope" });
        const headers: Record<string, string>[] = [
          {},
          auth(expired).headers,
          auth(otherAudience).headers,
          { authorization: "Basic eDp5" },
          { "x-user-id": "alice" },
        ];
        for (const h of headers) {
          await assert.rejects(
            client.createUser({ name: "x", email: "x@example.com" }, { headers: h }),
            (e: unknown) => {
              assert.ok(e instanceof ConnectError);
              assert.equal(e.code, Code.Unauthenticated);
              assert.equal(e.rawMessage, UNAUTHENTICATED_MESSAGE);
              assert.equal(e.details.length, 0);
              return true;
            },
          );
        }
        assert.equal(seen.length, 0);
        const reasons = log.lines.filter((l) => l.msg === "authentication failed").map((l) => l.auth_failure);
        assert.deepEqual(reasons, [
          "no credentials",
          "expired",
          "wrong audience",
          "not a bearer token",
          "no credentials",
        ]);
      });

      it("lets a valid token through: the handler sees the identity, and outbound calls carry the token", async () => {
        const token = await mint();
        const { user } = await client.createUser({ name: "x", email: "x@example.com" }, auth(token));
        assert.equal(user?.id, "u-1");
        const last = seen.at(-1);
        assert.equal(last?.identity?.subject, "alice");
        assert.deepEqual(last?.identity?.scopes, ["users:write", "users:read"]);
        assert.equal(last?.forwarded, `Bearer ${token}`);
        assert.doesNotMatch(log.text(), new RegExp(token.split(".")[2] as string));
      });

      it("serves reads and health checks without a token", async () => {
        assert.equal((await client.getUser({ id: "u-1" })).user?.id, "u-1");
        assert.equal((await health.check({ service: "" })).status, 1);
        // A token on a read is still checked: a bad one is refused, never ignored.
        await assert.rejects(
          client.getUser({ id: "u-1" }, auth(await mint({ issuer: "https://evil.test/" }))),
          (e: unknown) => e instanceof ConnectError && e.code === Code.Unauthenticated,
        );
      });
    });
  }

  it("requires a token for reads too with AUTH_REQUIRE_FOR_READS", async () => {
    const server = await serve({
      name: "users",
      engine: "connect",
      settings: testServerSettings(),
      logger: captureLogger("users").logger,
      auth: { ...hmacSettings(), authRequireForReads: true },
      services: [service(UserService, userFixture().impl)],
      ownsProcess: false,
    });
    try {
      const client = createConnectClient(
        UserService,
        createConnectTransport({ baseUrl: `http://localhost:${server.port}`, httpVersion: "1.1" }),
      );
      await assert.rejects(
        client.getUser({ id: "u-1" }),
        (e: unknown) => e instanceof ConnectError && e.code === Code.Unauthenticated,
      );
      const ok = await client.getUser({ id: "u-1" }, { headers: { authorization: `Bearer ${await mint()}` } });
      assert.equal(ok.user?.id, "u-1");
    } finally {
      await server.shutdown();
    }
  });

  it("says once at start that authentication is off when no key file is set", async () => {
    const log = captureLogger("users");
    const server = await serve({
      name: "users",
      settings: testServerSettings(),
      logger: log.logger,
      auth: settings({}),
      services: [service(UserService, userFixture().impl)],
      ownsProcess: false,
    });
    await server.shutdown();
    const off = log.lines.filter((l) => typeof l.msg === "string" && l.msg.startsWith("authentication is off"));
    assert.equal(off.length, 1);
    assert.equal(off[0]?.level, "warn");
  });
});
