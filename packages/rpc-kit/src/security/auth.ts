import { createPublicKey, createSecretKey, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import type { DescMethod } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type HandlerContext, type Interceptor } from "@connectrpc/connect";
import { createLocalJWKSet, type JSONWebKeySet, type JWTPayload, jwtVerify } from "jose";
import { callRecordKey, callRecordOf, type Identity } from "../call/call-record.ts";
import { type Config, ConfigError, type Setting, setting } from "../config/config.ts";
import { requestLogger } from "../observe/rpc-log.ts";

/**
 * Bearer-JWT authentication, the same on every hop.
 *
 * A call that carries `authorization: Bearer <JWT>` has the token verified
 * (signature against the configured keys, `iss`, `aud`, `exp`/`nbf` with a
 * small clock skew, a `sub`); methods with side effects (any method whose
 * proto does not declare `idempotency_level = NO_SIDE_EFFECTS`) require one,
 * and so do reads with AUTH_REQUIRE_FOR_READS. Every failure is the same
 * Unauthenticated with the same message: the reason is logged, never sent.
 *
 * Identity downstream: a verified token is forwarded, as it came, to the
 * outbound calls the handler makes (the call's record carries it, like the deadline),
 * and each internal service with keys configured verifies it again. No
 * service ever trusts an identity header: a caller that reaches an internal
 * port directly has nothing to show but a token, and a forged one fails.
 * Handlers read the verified identity with {@link callerIdentity}.
 */

/** The one message of every Unauthenticated answer: no hint of what was wrong. */
export const UNAUTHENTICATED_MESSAGE = "missing or invalid credentials";

export type { Identity } from "../call/call-record.ts";

/** The verified identity of the caller, or undefined (no token, or authentication off). */
export function callerIdentity(ctx: Pick<HandlerContext, "values">): Identity | undefined {
  return ctx.values.get(callRecordKey)?.identity;
}

const HMAC_ALGORITHMS = ["HS256", "HS384", "HS512"];
/** Asymmetric only: a JWKS never verifies an HMAC token (no algorithm confusion). */
const JWKS_ALGORITHMS = [
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "ES256",
  "ES384",
  "ES512",
  "EdDSA",
  "Ed25519",
];
/** RFC 7518 §3.2: an HMAC key at least as long as the hash output of HS256. */
const MIN_SECRET_BYTES = 32;
/** Verified tokens remembered per process (a few hundred bytes each). */
const VERIFIED_CACHE_SIZE = 4096;
/** Services whose calls never need credentials: probes must work without a token. */
const OPEN_SERVICES: ReadonlySet<string> = new Set(["grpc.health.v1.Health"]);

/** A file read once at start; the error names what is wrong, never the content. */
function readKeyFile(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    throw new Error(`cannot read the file${typeof code === "string" ? ` (${code})` : ""}`);
  }
}

function secretFileSetting(env: string, doc: string): Setting<{ path: string; key: KeyObject } | undefined> {
  return {
    env,
    doc,
    defaultText: undefined,
    parse(raw) {
      if (raw === undefined) return undefined;
      const path = raw.trim();
      // A trailing newline (`echo secret > file`, most Secret tooling) is not part of the secret.
      const bytes = Buffer.from(
        readKeyFile(path)
          .toString("latin1")
          .replace(/[\r\n]+$/, ""),
        "latin1",
      );
      if (bytes.length < MIN_SECRET_BYTES) throw new Error(`the secret must be at least ${MIN_SECRET_BYTES} bytes`);
      return { path, key: createSecretKey(bytes) };
    },
  };
}

function jwksFileSetting(env: string, doc: string): Setting<{ path: string; jwks: JSONWebKeySet } | undefined> {
  return {
    env,
    doc,
    defaultText: undefined,
    parse(raw) {
      if (raw === undefined) return undefined;
      const path = raw.trim();
      let jwks: unknown;
      try {
        jwks = JSON.parse(readKeyFile(path).toString("utf8"));
      } catch (err) {
        throw err instanceof SyntaxError ? new Error("not a JSON document") : err;
      }
      const keys = (jwks as { keys?: unknown } | null)?.keys;
      if (!Array.isArray(keys) || keys.length === 0)
        throw new Error('not a JWKS: needs {"keys": [ ...at least one key ]}');
      keys.forEach((jwk: unknown, i) => {
        const kty = (jwk as { kty?: unknown } | null)?.kty;
        if (kty !== "RSA" && kty !== "EC" && kty !== "OKP") {
          throw new Error(`key ${i}: kty must be RSA, EC or OKP (HMAC secrets go in AUTH_JWT_SECRET_FILE)`);
        }
        if ((jwk as { d?: unknown }).d !== undefined) {
          throw new Error(`key ${i} is a private key: give the public keys only`);
        }
        try {
          createPublicKey({ key: jwk as never, format: "jwk" });
        } catch {
          throw new Error(`key ${i} is not a valid ${kty} public key`);
        }
      });
      return { path, jwks: jwks as JSONWebKeySet };
    },
  };
}

/**
 * The environment of authentication, the same for every service; spread it
 * into an app's config spec and pass the config as `serve({ auth })`.
 * No key file set: authentication is off (one warning at start).
 */
export function authSettings() {
  return {
    authJwtSecretFile: secretFileSetting(
      "AUTH_JWT_SECRET_FILE",
      "file holding the HMAC secret (≥ 32 bytes) that signs bearer JWTs (HS256/384/512); with AUTH_JWKS_FILE unset too, authentication is off",
    ),
    authJwksFile: jwksFileSetting(
      "AUTH_JWKS_FILE",
      "file holding the JWKS (public RSA/EC/OKP keys) that verifies bearer JWTs; instead of AUTH_JWT_SECRET_FILE",
    ),
    authIssuer: setting.optional("AUTH_ISSUER", "the `iss` every token must carry (required when a key file is set)"),
    authAudience: setting.optional(
      "AUTH_AUDIENCE",
      "the `aud` every token must include (required when a key file is set)",
    ),
    authClockSkewSeconds: setting.int(
      "AUTH_CLOCK_SKEW_SECONDS",
      30,
      "tolerance when checking a token's exp and nbf against this host's clock",
      { max: 300 },
    ),
    authRequireForReads: setting.bool(
      "AUTH_REQUIRE_FOR_READS",
      false,
      "require a token for read methods (idempotency_level = NO_SIDE_EFFECTS) too, not only for methods with side effects",
    ),
  };
}

/** The parsed settings of {@link authSettings}. */
export type AuthSettings = Config<ReturnType<typeof authSettings>>;

/** Verifies bearer tokens with the configured keys and claims. */
export interface Authenticator {
  /** `hmac` or `jwks`: which key file verifies tokens. */
  readonly keys: "hmac" | "jwks";
  readonly requireForReads: boolean;
  /** The identity of a valid token, or the reason (for logs only) it is not one. */
  verify(token: string): Promise<{ identity: Identity } | { reason: string }>;
}

/**
 * The authenticator of `settings`, or undefined when no key file is set.
 * Throws a ConfigError naming the variables when the settings disagree.
 */
export function createAuthenticator(settings: AuthSettings): Authenticator | undefined {
  const { authJwtSecretFile: secret, authJwksFile: jwksFile } = settings;
  if (secret === undefined && jwksFile === undefined) return undefined;
  const problems: string[] = [];
  if (secret !== undefined && jwksFile !== undefined) {
    problems.push("AUTH_JWT_SECRET_FILE and AUTH_JWKS_FILE: set one of them, not both");
  }
  if (settings.authIssuer === undefined) problems.push("AUTH_ISSUER: is required when a key file is set");
  if (settings.authAudience === undefined) problems.push("AUTH_AUDIENCE: is required when a key file is set");
  if (problems.length > 0) throw new ConfigError(problems);

  const options = {
    issuer: settings.authIssuer as string,
    audience: settings.authAudience as string,
    clockTolerance: settings.authClockSkewSeconds,
    requiredClaims: ["sub", "exp"],
    algorithms: secret !== undefined ? HMAC_ALGORITHMS : JWKS_ALGORITHMS,
  };
  const jwks = jwksFile !== undefined ? createLocalJWKSet(jwksFile.jwks) : undefined;
  const skewMs = settings.authClockSkewSeconds * 1000;
  /**
   * Tokens verified already, by their exact text, until they expire: a
   * client sends the same token for many calls, and every hop verifies it,
   * while a verification costs 50–300 CPU-µs (WebCrypto). Only successes are
   * kept; the oldest entry goes first when full.
   */
  const verified = new Map<string, { identity: Identity; untilMs: number }>();
  return {
    keys: secret !== undefined ? "hmac" : "jwks",
    requireForReads: settings.authRequireForReads,
    async verify(token) {
      const hit = verified.get(token);
      if (hit !== undefined) {
        if (Date.now() < hit.untilMs) return { identity: hit.identity };
        verified.delete(token);
      }
      try {
        const { payload } =
          secret !== undefined
            ? await jwtVerify(token, secret.key, options)
            : await jwtVerify(token, jwks as NonNullable<typeof jwks>, options);
        if (typeof payload.sub !== "string" || payload.sub.length === 0) return { reason: "no subject" };
        const identity = { subject: payload.sub, scopes: scopesOf(payload), claims: payload };
        if (verified.size >= VERIFIED_CACHE_SIZE) verified.delete(verified.keys().next().value as string);
        verified.set(token, { identity, untilMs: (payload.exp as number) * 1000 + skewMs });
        return { identity };
      } catch (err) {
        return { reason: failureReason(err) };
      }
    },
  };
}

function scopesOf(payload: JWTPayload): string[] {
  if (typeof payload.scope === "string") return payload.scope.split(" ").filter(Boolean);
  if (Array.isArray(payload.scp)) return payload.scp.filter((s): s is string => typeof s === "string");
  return [];
}

/** Why jose refused a token, in words fit for a log line (never the token). */
export function failureReason(err: unknown): string {
  const { code, claim } = err as { code?: unknown; claim?: unknown };
  switch (code) {
    case "ERR_JWT_EXPIRED":
      return "expired";
    case "ERR_JWT_CLAIM_VALIDATION_FAILED":
      if (claim === "iss") return "wrong issuer";
      if (claim === "aud") return "wrong audience";
      if (claim === "nbf") return "not yet valid";
      return `invalid ${typeof claim === "string" ? claim : "claim"}`;
    case "ERR_JWS_SIGNATURE_VERIFICATION_FAILED":
      return "bad signature";
    case "ERR_JOSE_ALG_NOT_ALLOWED":
    case "ERR_JOSE_NOT_SUPPORTED":
      return "algorithm not allowed";
    case "ERR_JWKS_NO_MATCHING_KEY":
      return "no matching key";
    default:
      return "malformed token";
  }
}

/** A method that changes nothing: its proto says `idempotency_level = NO_SIDE_EFFECTS`. */
export function isReadOnly(method: DescMethod): boolean {
  return method.idempotency === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS;
}

/** The token of an `authorization: Bearer <token>` value, or undefined. */
export function bearerToken(value: string): string | undefined {
  const m = /^Bearer +([A-Za-z0-9\-_.~+/]+=*) *$/i.exec(value);
  return m?.[1];
}

/**
 * The server interceptor: verifies the caller's token, refuses calls that
 * need one and have none (or a bad one), puts the identity in the call's
 * context and hands the token on to the handler's outbound calls.
 */
export function authInterceptor(auth: Authenticator): Interceptor {
  return (next) => async (req) => {
    if (OPEN_SERVICES.has(req.service.typeName)) return next(req);
    const refuse = (reason: string): never => {
      requestLogger({ values: req.contextValues, method: req.method }).info(
        { auth_failure: reason },
        "authentication failed",
      );
      throw new ConnectError(UNAUTHENTICATED_MESSAGE, Code.Unauthenticated, { "www-authenticate": "Bearer" });
    };
    const header = req.header.get("authorization");
    if (header === null) {
      if (auth.requireForReads || !isReadOnly(req.method)) refuse("no credentials");
      return next(req);
    }
    const token = bearerToken(header);
    if (token === undefined) return refuse("not a bearer token");
    const result = await auth.verify(token);
    if ("reason" in result) return refuse(result.reason);
    const record = callRecordOf(req.contextValues);
    record.identity = result.identity;
    record.forward({ authorization: `Bearer ${token}` });
    return next(req);
  };
}
