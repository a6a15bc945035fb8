import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { UserService } from "@demo/proto/demo/users/v1/users_pb";
import { ConfigError, loadConfig } from "../config/config.ts";
import { type RunningServer, serve } from "../serve.ts";
import { service } from "../server/service-registration.ts";
import { type UserFixture, userFixture } from "../test-support/users.ts";
import { captureLogger, testServerSettings } from "../testing/index.ts";
import { corsSettings } from "./cors.ts";

const ALLOWED = "http://allowed.test:8000";
const EVIL = "http://evil.test";
const HEALTH_CHECK = "/grpc.health.v1.Health/Check";
const GET_USER = "/demo.users.v1.UserService/GetUser";

function origins(value: string | undefined): readonly string[] {
  return loadConfig(corsSettings(), { CORS_ALLOWED_ORIGINS: value }).corsAllowedOrigins;
}

function configError(value: string): ConfigError {
  try {
    origins(value);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `a ConfigError for ${JSON.stringify(value)}, got ${String(err)}`);
    return err;
  }
  assert.fail(`CORS_ALLOWED_ORIGINS=${JSON.stringify(value)} was accepted`);
}

describe("corsSettings: CORS_ALLOWED_ORIGINS", () => {
  it("is empty (same origin only) when unset or empty", () => {
    assert.deepEqual(origins(undefined), []);
    assert.deepEqual(origins(""), []);
    assert.deepEqual(loadConfig(corsSettings(), {}).corsAllowedOrigins, []);
  });

  it("normalizes a list of origins: case, a trailing slash, spaces around commas", () => {
    assert.deepEqual(origins("https://App.example.com, http://localhost:5173/ ,https://[::1]:8443"), [
      "https://app.example.com",
      "http://localhost:5173",
      "https://[::1]:8443",
    ]);
  });

  it("writes an origin as a browser sends it: default port dropped, host in punycode", () => {
    assert.deepEqual(origins("https://app.example.com:443, http://localhost:80, https://bücher.example"), [
      "https://app.example.com",
      "http://localhost",
      "https://xn--bcher-kva.example",
    ]);
  });

  it("accepts * alone", () => {
    assert.deepEqual(origins("*"), ["*"]);
    assert.deepEqual(origins(" * "), ["*"]);
  });

  it("refuses * together with origins", () => {
    const err = configError("*, https://app.example.com");
    assert.match(err.message, /CORS_ALLOWED_ORIGINS/);
    assert.match(err.message, /\*/);
  });

  for (const bad of ["https://a.example/x", "ftp://x", "not an origin", "https://a.example?q=1", "app.example.com"]) {
    it(`refuses ${JSON.stringify(bad)}, naming the variable and the value`, () => {
      const err = configError(bad);
      assert.equal(err.problems.length, 1);
      assert.match(err.message, /CORS_ALLOWED_ORIGINS/);
      assert.ok(err.message.includes(bad), err.message);
      assert.match(err.message, /not an origin/);
    });
  }

  it("names every bad item of a list, not just the first", () => {
    const err = configError("https://ok.example, ftp://x, https://a.example/x");
    assert.ok(err.message.includes('"ftp://x"'), err.message);
    assert.ok(err.message.includes('"https://a.example/x"'), err.message);
    assert.ok(!err.message.includes('"https://ok.example" is not'), err.message);
  });
});

interface Edge {
  server: RunningServer;
  users: UserFixture;
  log: ReturnType<typeof captureLogger>;
  base: string;
  self: string;
}

async function startEdge(cors: { corsAllowedOrigins: readonly string[] } | undefined): Promise<Edge> {
  const log = captureLogger("edge");
  const users = userFixture();
  const server = await serve({
    name: "edge",
    engine: "connect",
    settings: testServerSettings(),
    ownsProcess: false,
    logger: log.logger,
    services: [service(UserService, users.impl)],
    ...(cors && { cors }),
  });
  const self = `http://127.0.0.1:${server.port}`;
  return { server, users, log, base: self, self };
}

function post(edge: Edge, path: string, body: string, headers: Record<string, string> = {}) {
  return fetch(`${edge.base}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body,
  });
}

function preflight(edge: Edge, origin: string) {
  return fetch(`${edge.base}${GET_USER}`, {
    method: "OPTIONS",
    headers: {
      origin,
      "access-control-request-method": "POST",
      "access-control-request-headers": "content-type,connect-protocol-version,x-fault-delay-ms",
    },
  });
}

function listed(header: string | null): string[] {
  return (header ?? "").split(",").map((s) => s.trim().toLowerCase());
}

function rpcLines(edge: Edge, method: string) {
  return edge.log.lines.filter((l) => l.rpc_method === method);
}

describe("CORS at the edge, with CORS_ALLOWED_ORIGINS set", () => {
  let edge: Edge;
  before(async () => {
    edge = await startEdge({ corsAllowedOrigins: [ALLOWED] });
  });
  after(() => edge.server.shutdown());

  it("serves a call without an Origin (curl, servers) as before", async () => {
    const res = await post(edge, HEALTH_CHECK, "{}");
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { status: "SERVING" });
    assert.equal(res.headers.get("access-control-allow-origin"), null);
  });

  it("serves a same-origin call (a browser's POST carries Origin) without CORS headers", async () => {
    const res = await post(edge, HEALTH_CHECK, "{}", { origin: edge.self });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { status: "SERVING" });
    assert.equal(res.headers.get("access-control-allow-origin"), null);
  });

  it("answers an allowed origin's preflight with 204 and what the browser needs", async () => {
    const res = await preflight(edge, ALLOWED);
    assert.equal(res.status, 204);
    assert.equal(res.headers.get("access-control-allow-origin"), ALLOWED);
    assert.ok(listed(res.headers.get("access-control-allow-methods")).includes("post"));
    const allowHeaders = listed(res.headers.get("access-control-allow-headers"));
    for (const h of ["content-type", "connect-protocol-version", "x-fault-delay-ms"]) {
      assert.ok(allowHeaders.includes(h), `allow-headers has ${h}: ${allowHeaders.join(", ")}`);
    }
    const maxAge = Number(res.headers.get("access-control-max-age"));
    assert.ok(Number.isInteger(maxAge) && maxAge > 0, `max-age ${res.headers.get("access-control-max-age")}`);
    assert.ok(listed(res.headers.get("vary")).includes("origin"), `vary: ${res.headers.get("vary")}`);
    assert.equal(await res.text(), "");
  });

  it("serves an allowed origin's call and lets its page read the status and the timings", async () => {
    const res = await post(edge, GET_USER, '{"id":"u-1"}', { origin: ALLOWED, "connect-protocol-version": "1" });
    assert.equal(res.status, 200);
    assert.equal(((await res.json()) as { user: { id: string } }).user.id, "u-1");
    assert.equal(res.headers.get("access-control-allow-origin"), ALLOWED);
    const exposed = listed(res.headers.get("access-control-expose-headers"));
    for (const h of ["server-timing", "trailer-server-timing", "grpc-status"]) {
      assert.ok(exposed.includes(h), `expose-headers has ${h}: ${exposed.join(", ")}`);
    }
    assert.ok(listed(res.headers.get("vary")).includes("origin"), `vary: ${res.headers.get("vary")}`);
  });

  it("refuses another origin's preflight with 403 and no allow-origin", async () => {
    const res = await preflight(edge, EVIL);
    assert.equal(res.status, 403);
    assert.equal(res.headers.get("access-control-allow-origin"), null);
    assert.equal(res.headers.get("access-control-allow-methods"), null);
  });

  it("refuses another origin's call with 403 before the handler runs", async () => {
    const callsBefore = edge.users.calls;
    const linesBefore = rpcLines(edge, "GetUser").length;
    const res = await post(edge, GET_USER, '{"id":"u-1"}', { origin: EVIL });
    assert.equal(res.status, 403);
    assert.equal(res.headers.get("access-control-allow-origin"), null);
    assert.match(await res.text(), /origin not allowed/);
    assert.equal(edge.users.calls, callsBefore, "the handler never ran");
    assert.equal(rpcLines(edge, "GetUser").length, linesBefore, "no per-call log line");
    // The same call without the foreign Origin does reach the handler (the counters can move).
    assert.equal((await post(edge, GET_USER, '{"id":"u-1"}')).status, 200);
    assert.equal(edge.users.calls, callsBefore + 1);
    assert.equal(rpcLines(edge, "GetUser").length, linesBefore + 1);
  });

  it("does not take an origin that merely starts like an allowed one", async () => {
    for (const origin of [`${ALLOWED}.evil.test`, "https://allowed.test:8000", "http://allowed.test:8001", "null"]) {
      const res = await post(edge, HEALTH_CHECK, "{}", { origin });
      assert.equal(res.status, 403, origin);
    }
  });
});

describe("CORS at the edge, with the cors option omitted", () => {
  let edge: Edge;
  before(async () => {
    edge = await startEdge(undefined);
  });
  after(() => edge.server.shutdown());

  it("refuses cross-origin calls and preflights with 403", async () => {
    const callsBefore = edge.users.calls;
    const res = await post(edge, GET_USER, '{"id":"u-1"}', { origin: ALLOWED });
    assert.equal(res.status, 403);
    assert.match(await res.text(), /origin not allowed/);
    assert.equal(edge.users.calls, callsBefore);
    assert.equal((await preflight(edge, ALLOWED)).status, 403);
  });

  it("still serves same-origin calls and calls without an Origin", async () => {
    assert.equal((await post(edge, HEALTH_CHECK, "{}", { origin: edge.self })).status, 200);
    assert.equal((await post(edge, HEALTH_CHECK, "{}")).status, 200);
    const res = await post(edge, GET_USER, '{"id":"u-1"}', { origin: edge.self });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("access-control-allow-origin"), null);
  });
});

describe("serve: cors and site need the connect engine", () => {
  it("throws for the grpc engine given cors", async () => {
    await assert.rejects(
      serve({
        name: "users",
        settings: testServerSettings(),
        ownsProcess: false,
        logger: captureLogger("users").logger,
        services: [service(UserService, userFixture().impl)],
        cors: { corsAllowedOrigins: [ALLOWED] },
      }),
      /connect engine/,
    );
  });

  it("throws for an explicit grpc engine given a site", async () => {
    const site = { paths: ["/"], serve() {} };
    await assert.rejects(
      serve({
        name: "users",
        engine: "grpc",
        settings: testServerSettings(),
        ownsProcess: false,
        logger: captureLogger("users").logger,
        services: [service(UserService, userFixture().impl)],
        site,
      }),
      /connect engine/,
    );
  });
});
