import assert from "node:assert/strict";
import { lookup } from "node:dns/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fromBinary } from "@bufbuild/protobuf";
import { base64Decode } from "@bufbuild/protobuf/wire";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { GatewayService } from "@demo/proto/demo/gateway/v1/gateway_pb";
import { UserService } from "@demo/proto/demo/users/v1/users_pb";
import { BadRequestSchema } from "@demo/proto/google/rpc/error_details_pb";
import { parseServerTiming, SERVER_TIMING, SERVER_TIMING_REQUEST } from "@demo/rpc-kit/server-timing";
import { until } from "@demo/rpc-kit/testing";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { leaksOf } from "./leaks.ts";
import { type Chain, connectionLocalPorts, establishedConnections, repoRoot, startChain } from "./processes.ts";

describe("the chain gateway → profiles → users, as three processes", () => {
  let chain: Chain;
  let grpcClient: ReturnType<typeof createClient<typeof GatewayService>>;

  before(async () => {
    chain = await startChain({ all: { FAULT_INJECTION: "on" } });
    grpcClient = createClient(GatewayService, createGrpcTransport({ baseUrl: chain.baseUrl }));
  });
  after(() => chain.stop());

  const post = (method: string, body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${chain.baseUrl}/demo.gateway.v1.GatewayService/${method}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify(body),
    });

  /** The fields named by the google.rpc.BadRequest detail of a Connect JSON error body. */
  function badRequestFields(body: { details?: { type: string; value: string }[] }): string[] {
    const detail = body.details?.find((d) => d.type === "google.rpc.BadRequest");
    assert.ok(detail, `a BadRequest detail in ${JSON.stringify(body)}`);
    return fromBinary(BadRequestSchema, base64Decode(detail.value)).fieldViolations.map((v) => v.field);
  }

  it("returns the profile of u-1 over Connect JSON on HTTP/1.1", async () => {
    const res = await post("GetProfile", { userId: "u-1" });
    assert.equal(res.status, 200);
    const body = (await res.json()) as { profile: { user: { id: string; name: string }; displayName: string } };
    assert.equal(body.profile.user.id, "u-1");
    assert.equal(body.profile.user.name, "Ada Lovelace");
    assert.equal(body.profile.displayName, "Ada L.");
  });

  it("returns the profile of u-1 over gRPC", async () => {
    const { profile } = await grpcClient.getProfile({ userId: "u-1" });
    assert.equal(profile?.user?.name, "Ada Lovelace");
  });

  it("keeps NotFound as NotFound through both hops (HTTP 404 for Connect JSON)", async () => {
    const res = await post("GetProfile", { userId: "nobody" });
    assert.equal(res.status, 404);
    assert.deepEqual(await res.json(), { code: "not_found", message: "user nobody not found" });
    await assert.rejects(grpcClient.getProfile({ userId: "nobody" }), (e: unknown) => {
      return e instanceof ConnectError && e.code === Code.NotFound;
    });
  });

  it("answers InvalidArgument naming the field, from the edge and from the owner", async () => {
    const atEdge = await post("CreateUser", { name: "X", email: "not-an-email" });
    assert.equal(atEdge.status, 400);
    const edgeBody = (await atEdge.json()) as { code: string; details?: { type: string; value: string }[] };
    assert.equal(edgeBody.code, "invalid_argument");
    assert.deepEqual(badRequestFields(edgeBody), ["email"]);

    // Passes the edge's shape check; users, the owner, refuses it; the verdict travels back two hops.
    const atOwner = await post("CreateUser", { name: "X", email: "x@localhost" });
    assert.equal(atOwner.status, 400);
    assert.deepEqual(badRequestFields((await atOwner.json()) as never), ["email"]);
  });

  it("creates a user, then answers AlreadyExists for the same email", async () => {
    const created = await post("CreateUser", { name: "Barbara Liskov", email: "barbara@example.com" });
    assert.equal(created.status, 200);
    const { user } = (await created.json()) as { user: { id: string } };
    assert.match(user.id, /^u-\d+$/);
    const again = await post("CreateUser", { name: "Barbara L", email: "barbara@example.com" });
    assert.equal(again.status, 409);
    assert.equal(((await again.json()) as { code: string }).code, "already_exists");
  });

  it("streams every profile, in order, through the whole chain", async () => {
    const client = createClient(GatewayService, createConnectTransport({ baseUrl: chain.baseUrl, httpVersion: "1.1" }));
    const ids: string[] = [];
    for await (const { profile } of client.listProfiles({})) ids.push(profile?.user?.id ?? "");
    // Every user the owner holds (the seeded three and those created above), in its order: none dropped.
    const owner = createClient(UserService, createGrpcTransport({ baseUrl: `http://localhost:${chain.users.port}` }));
    const owned: string[] = [];
    for await (const { user } of owner.listUsers({})) owned.push(user?.id ?? "");
    assert.ok(owned.length >= 4, `users holds ${owned.join()}`);
    assert.deepEqual(ids, owned);
    assert.deepEqual(ids.slice(0, 3), ["u-1", "u-2", "u-3"]);
    const numbers = ids.map((id) => Number(id.slice(2)));
    assert.deepEqual(
      numbers,
      [...numbers].sort((a, b) => a - b),
    );
    const viaGrpc: string[] = [];
    for await (const { profile } of grpcClient.listProfiles({})) viaGrpc.push(profile?.user?.id ?? "");
    assert.deepEqual(viaGrpc, ids);
  });

  it("answers a call that asks with its hops in a server-timing trailer, on Connect and gRPC alike", async () => {
    const connect = createClient(
      GatewayService,
      createConnectTransport({ baseUrl: chain.baseUrl, httpVersion: "1.1" }),
    );
    const services = (value: string | null) => parseServerTiming(value).hops.map((h) => `${h.service}:${h.code}`);
    const headers = { [SERVER_TIMING_REQUEST]: "on" };
    for (const client of [connect, grpcClient]) {
      let unasked: string | null | undefined;
      await client.getProfile({ userId: "u-1" }, { onTrailer: (t) => (unasked = t.get(SERVER_TIMING)) });
      assert.equal(unasked, null, "a call that does not ask gets no timing (and costs none)");

      let unary: string | null = null;
      await client.getProfile({ userId: "u-1" }, { headers, onTrailer: (t) => (unary = t.get(SERVER_TIMING)) });
      // users' queries are one more hop, timed by users (the database reports no timing of its own).
      assert.deepEqual(services(unary), ["gateway:ok", "profiles:ok", "users:ok", "postgres:ok"]);
      const database = parseServerTiming(unary).hops.at(-1);
      assert.equal(database?.method, "SELECT users");
      assert.match(parseServerTiming(unary).traceparent ?? "", /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);

      const err = await client.getProfile({ userId: "u-404" }, { headers }).catch((e: unknown) => ConnectError.from(e));
      assert.ok(err instanceof ConnectError);
      assert.deepEqual(services(err.metadata.get(SERVER_TIMING)), [
        "gateway:not_found",
        "profiles:not_found",
        "users:not_found",
        "postgres:ok", // a query that finds no row is no error
      ]);

      let stream: string | null = null;
      for await (const _ of client.listProfiles({}, { headers, onTrailer: (t) => (stream = t.get(SERVER_TIMING)) })) {
        // drained
      }
      const hops = parseServerTiming(stream).hops;
      assert.deepEqual(
        hops.map((h) => h.method),
        [
          "demo.gateway.v1.GatewayService/ListProfiles",
          "demo.profiles.v1.ProfileService/ListProfiles",
          "demo.users.v1.UserService/ListUsers",
          "SELECT users",
        ],
      );
      for (let i = 1; i < hops.length; i++) assert.ok((hops[i - 1]?.durationMs ?? 0) >= (hops[i]?.durationMs ?? 0));
    }
  });

  it("ends at the caller's deadline with DeadlineExceeded, and users stops waiting", async () => {
    const deadlineMs = 300;
    const injectedMs = 2_000;
    const started = performance.now();
    const res = await post(
      "GetProfile",
      { userId: "u-2" },
      { "connect-timeout-ms": String(deadlineMs), "x-fault-delay-ms": String(injectedMs), "x-fault-target": "users" },
    );
    const took = performance.now() - started;
    const body = (await res.json()) as { code: string; message: string };
    assert.equal(body.code, "deadline_exceeded");
    // grpc-js's own message names the upstream's address; the public caller gets the kit's.
    assert.equal(body.message, "deadline exceeded");
    assert.ok(took < deadlineMs + 100, `answered after ${took.toFixed(0)} ms`);

    // users logs the call as ended early by the deadline or the cancellation that carried it.
    const usersLine = await until("users' line of the cut-short call", () =>
      chain.users.lines.find(
        (l) => l.rpc_method === "GetUser" && (l.rpc_code === "deadline_exceeded" || l.rpc_code === "canceled"),
      ),
    );
    assert.ok((usersLine.duration_ms as number) < deadlineMs, `users held the call ${usersLine.duration_ms} ms`);
  });

  it("holds at most one connection per upstream endpoint after 1,000 calls", async () => {
    const endpoints = new Set((await lookup("localhost", { all: true })).map((a) => a.address)).size;
    // Every connection seen during the calls, not just those left at the end: a client that
    // opened and closed one per call would show a new local port each time.
    const seenToProfiles = new Set<number>();
    const seenToUsers = new Set<number>();
    const sample = () => {
      for (const p of connectionLocalPorts(chain.gateway.pid, chain.profiles.port)) seenToProfiles.add(p);
      for (const p of connectionLocalPorts(chain.profiles.pid, chain.users.port)) seenToUsers.add(p);
    };
    const sampler = setInterval(sample, 5);
    let next = 0;
    try {
      await Promise.all(
        Array.from({ length: 20 }, async () => {
          while (next < 1_000) {
            next++;
            await grpcClient.getProfile({ userId: `u-${(next % 3) + 1}` });
          }
        }),
      );
    } finally {
      clearInterval(sampler);
    }
    sample();
    const toProfiles = establishedConnections(chain.gateway.pid, chain.profiles.port);
    const toUsers = establishedConnections(chain.profiles.pid, chain.users.port);
    assert.ok(toProfiles >= 1 && toProfiles <= endpoints, `gateway → profiles: ${toProfiles} connections`);
    assert.ok(toUsers >= 1 && toUsers <= endpoints, `profiles → users: ${toUsers} connections`);
    assert.ok(seenToProfiles.size <= endpoints, `gateway → profiles: ${seenToProfiles.size} connections over the run`);
    assert.ok(seenToUsers.size <= endpoints, `profiles → users: ${seenToUsers.size} connections over the run`);
  });

  it("can be called by a stock grpc-js client built from the .proto files alone", async () => {
    const definition = protoLoader.loadSync(
      [join(repoRoot, "proto/demo/users/v1/users.proto"), join(repoRoot, "proto/demo/gateway/v1/gateway.proto")],
      { includeDirs: [join(repoRoot, "proto")], keepCase: false, longs: String },
    );
    const loaded = grpc.loadPackageDefinition(definition) as unknown as {
      demo: {
        users: { v1: { UserService: grpc.ServiceClientConstructor } };
        gateway: { v1: { GatewayService: grpc.ServiceClientConstructor } };
      };
    };
    const call = (client: grpc.Client, method: string, request: object) =>
      new Promise<Record<string, unknown>>((resolve, reject) => {
        (client as unknown as Record<string, grpc.requestCallback<unknown> & ((...a: unknown[]) => void)>)[method]?.(
          request,
          { deadline: Date.now() + 5_000 },
          (err: grpc.ServiceError | null, res: Record<string, unknown>) => (err ? reject(err) : resolve(res)),
        );
      });
    const users = new loaded.demo.users.v1.UserService(
      `localhost:${chain.users.port}`,
      grpc.credentials.createInsecure(),
    );
    const gateway = new loaded.demo.gateway.v1.GatewayService(
      `localhost:${chain.gateway.port}`,
      grpc.credentials.createInsecure(),
    );
    try {
      const fromUsers = (await call(users, "getUser", { id: "u-3" })) as { user: { name: string } };
      assert.equal(fromUsers.user.name, "Alan Turing");
      const fromGateway = (await call(gateway, "getProfile", { userId: "u-3" })) as { profile: { initials: string } };
      assert.equal(fromGateway.profile.initials, "AT");
      await assert.rejects(call(gateway, "getProfile", { userId: "nobody" }), (e: grpc.ServiceError) => {
        return e.code === grpc.status.NOT_FOUND;
      });
    } finally {
      users.close();
      gateway.close();
    }
  });

  it("writes no seeded email or token to any log line of any service", async () => {
    for (const service of [chain.users, chain.profiles, chain.gateway]) {
      assert.ok(service.lines.length > 10, `${service.name} logged`);
      assert.deepEqual(leaksOf(service), [], `${service.name} logged them`);
    }
  });
});
