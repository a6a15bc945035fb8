/**
 * The hand-wired alternative to rpc-kit (issue 15): what a Node team writes
 * when it skips the kit and wires the stock libraries itself, serving any of
 * the three roles with the demo's work (users reads a user, profiles composes
 * a profile from it, gateway passes it on):
 *
 * - stock @grpc/grpc-js on the .proto files (@grpc/proto-loader, from proto/);
 * - OpenTelemetry's NodeSDK with every span sampled (AlwaysOnSampler) and
 *   none exported (a no-op span processor: spans are made, ended and
 *   dropped), @opentelemetry/instrumentation-grpc for the server and client
 *   spans (and W3C trace context on the wire), and on users
 *   @opentelemetry/instrumentation-pg for the queries' spans;
 * - one pino info line per call served (service, trace_id, method, code,
 *   duration_ms) to a file (pino.destination, sync: false);
 * - prom-client grpc_server_handled_total / grpc_server_handling_seconds and
 *   grpc_client_handled_total / grpc_client_handling_seconds, with
 *   go-grpc-middleware's names and labels (and Prometheus' default buckets,
 *   as go-grpc-prometheus), on /metrics at ADMIN_PORT;
 * - a 2 s deadline on each upstream call;
 * - users on PostgreSQL through a plain pg.Pool (users-db.ts: migrations at
 *   start, one query per GetUser).
 *
 *   ROLE=users|profiles|gateway PORT=… [UPSTREAM=host:port] [ADMIN_PORT=…]
 *   [LOG_FILE=path (default: stdout)] [DATABASE_URL=postgres://… (users: required)]
 *   SPAN_STATS=1: count the spans ended, by name and kind, and print them at SIGTERM
 *     (the check that the instrumentations do make spans; off in the benchmark).
 *
 * ESM: the instrumentations patch modules as they are loaded, so the order is
 * what a team must get right: import-in-the-middle's loader hook registered
 * first (@opentelemetry/instrumentation/hook.mjs, as `--import` would), the
 * SDK with the instrumentations started second, and grpc-js, proto-loader
 * and pg imported only then (dynamically: static imports would be evaluated
 * before any of this).
 */
import * as http from "node:http";
import { register } from "node:module";
import { fileURLToPath } from "node:url";
import type * as Grpc from "@grpc/grpc-js";
import { trace } from "@opentelemetry/api";
import { GrpcInstrumentation } from "@opentelemetry/instrumentation-grpc";
import { PgInstrumentation } from "@opentelemetry/instrumentation-pg";
import { NodeSDK } from "@opentelemetry/sdk-node";
import { AlwaysOnSampler, NoopSpanProcessor, type ReadableSpan, type SpanProcessor } from "@opentelemetry/sdk-trace";
import pino from "pino";
import * as prom from "prom-client";
import { profileFields } from "./profile-rule.ts";

const role = process.env.ROLE ?? "users";
const port = Number(process.env.PORT ?? 0);
const upstream = process.env.UPSTREAM ?? "";
const adminPort = process.env.ADMIN_PORT ? Number(process.env.ADMIN_PORT) : undefined;
const databaseUrl = process.env.DATABASE_URL;
const spanStats = process.env.SPAN_STATS === "1";
if (role === "users" && !databaseUrl) throw new Error("users needs DATABASE_URL");

// 1. The loader hook, before anything that is to be patched is imported.
register("@opentelemetry/instrumentation/hook.mjs", import.meta.url);

// 2. Tracing: every span sampled, none exported.
const ended = new Map<string, number>();
const countEnded: SpanProcessor = {
  onStart() {},
  onEnd(span: ReadableSpan) {
    const key = `${span.name} (kind ${span.kind})`;
    ended.set(key, (ended.get(key) ?? 0) + 1);
  },
  async forceFlush() {},
  async shutdown() {},
};
const sdk = new NodeSDK({
  serviceName: role,
  sampler: new AlwaysOnSampler(),
  // No exporter: without a processor of its own, the SDK would build the OTLP one from OTEL_*.
  spanProcessors: [spanStats ? countEnded : new NoopSpanProcessor()],
  metricReaders: [],
  logRecordProcessors: [],
  instrumentations: [new GrpcInstrumentation(), ...(role === "users" ? [new PgInstrumentation()] : [])],
});
sdk.start();

// 3. Only now the libraries the instrumentations patch.
const grpc = await import("@grpc/grpc-js");
const protoLoader = await import("@grpc/proto-loader");

// Logs: one info line per call served, to a file, asynchronously.
const logFile = process.env.LOG_FILE;
const destination = pino.destination({ dest: logFile ?? 1, sync: false, mkdir: true });
const logger = pino({ base: { service: role } }, destination);

// Metrics: go-grpc-middleware's names and labels, Prometheus' default buckets.
const serverHandled = new prom.Counter({
  name: "grpc_server_handled_total",
  help: "Total number of RPCs completed on the server, regardless of success or failure.",
  labelNames: ["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
});
const serverSeconds = new prom.Histogram({
  name: "grpc_server_handling_seconds",
  help: "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
  labelNames: ["grpc_type", "grpc_service", "grpc_method"],
});
const clientHandled = new prom.Counter({
  name: "grpc_client_handled_total",
  help: "Total number of RPCs completed by the client, regardless of success or failure.",
  labelNames: ["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
});
const clientSeconds = new prom.Histogram({
  name: "grpc_client_handling_seconds",
  help: "Histogram of response latency (seconds) of the gRPC until it is finished by the application.",
  labelNames: ["grpc_type", "grpc_service", "grpc_method"],
});

/** grpc_code as go-grpc-middleware writes it (Go's codes.Code names). */
const CODE_NAMES = [
  "OK",
  "Canceled",
  "Unknown",
  "InvalidArgument",
  "DeadlineExceeded",
  "NotFound",
  "AlreadyExists",
  "PermissionDenied",
  "ResourceExhausted",
  "FailedPrecondition",
  "Aborted",
  "OutOfRange",
  "Unimplemented",
  "Internal",
  "Unavailable",
  "DataLoss",
  "Unauthenticated",
];
const codeName = (code: number) => CODE_NAMES[code] ?? String(code);

// The services, from the .proto files (gateway's imports profiles' and users').
const PROTO_DIR = fileURLToPath(new URL("../../../proto/", import.meta.url));
const definition = protoLoader.loadSync("demo/gateway/v1/gateway.proto", {
  includeDirs: [PROTO_DIR],
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
// biome-ignore lint/suspicious/noExplicitAny: proto-loader's packages are untyped
const demo = (grpc.loadPackageDefinition(definition) as any).demo;
const UserService: Grpc.ServiceClientConstructor = demo.users.v1.UserService;
const ProfileService: Grpc.ServiceClientConstructor = demo.profiles.v1.ProfileService;
const GatewayService: Grpc.ServiceClientConstructor = demo.gateway.v1.GatewayService;

/** A failure with a gRPC status: what a handler throws, and what an upstream call rejects with. */
interface StatusError {
  code?: number;
  details?: string;
}

/** A unary handler with its log line and server metrics. */
function served<Req, Res>(
  service: string,
  method: string,
  handle: (request: Req) => Promise<Res>,
): Grpc.handleUnaryCall<Req, Res> {
  const labels = { grpc_type: "unary", grpc_service: service, grpc_method: method };
  const path = `${service}/${method}`;
  return (call, callback) => {
    const start = performance.now();
    // The server span the instrumentation opened for this call is the active one here.
    const traceId = trace.getActiveSpan()?.spanContext().traceId;
    const finish = (code: number) => {
      const ms = performance.now() - start;
      serverHandled.inc({ ...labels, grpc_code: codeName(code) });
      serverSeconds.observe(labels, ms / 1000);
      logger.info(
        { trace_id: traceId, method: path, code: codeName(code), duration_ms: Math.round(ms * 1000) / 1000 },
        "call",
      );
    };
    handle(call.request).then(
      (response) => {
        finish(grpc.status.OK);
        callback(null, response);
      },
      (err: StatusError) => {
        const code = typeof err.code === "number" ? err.code : grpc.status.INTERNAL;
        finish(code);
        callback({ code, details: err.details ?? String(err) });
      },
    );
  };
}

/** A unary method of a generated client. */
type Unary<Req, Res> = (
  request: Req,
  options: Grpc.CallOptions,
  callback: Grpc.requestCallback<Res>,
) => Grpc.ClientUnaryCall;

/** `client`'s method `method`, bound. */
function stub<Req, Res>(client: Grpc.Client, method: string): Unary<Req, Res> {
  return (client as unknown as Record<string, Unary<Req, Res>>)[method]?.bind(client) as Unary<Req, Res>;
}

/** One upstream unary call: a 2 s deadline, client metrics. */
function callUpstream<Req, Res>(call: Unary<Req, Res>, service: string, method: string, request: Req): Promise<Res> {
  const labels = { grpc_type: "unary", grpc_service: service, grpc_method: method };
  const start = performance.now();
  return new Promise((resolve, reject) => {
    call(request, { deadline: Date.now() + 2_000 }, (err, response) => {
      clientHandled.inc({ ...labels, grpc_code: codeName(err ? err.code : grpc.status.OK) });
      clientSeconds.observe(labels, (performance.now() - start) / 1000);
      if (err) reject(err);
      else resolve(response as Res);
    });
  });
}

interface User {
  id: string;
  name: string;
  email: string;
  createdAt: { seconds: string | number; nanos: number };
}

const server = new grpc.Server();
let closeDatabase: () => Promise<void> = async () => {};

if (role === "users") {
  const db = await import("./users-db.ts");
  const pool = await db.openUsersDatabase(databaseUrl as string);
  closeDatabase = () => pool.end();
  server.addService(UserService.service, {
    GetUser: served<{ id: string }, { user: User }>("demo.users.v1.UserService", "GetUser", async (req) => {
      const row = await db.findUser(pool, req.id);
      if (!row) throw { code: grpc.status.NOT_FOUND, details: `user ${req.id} not found` };
      const ms = row.created_at.getTime();
      return {
        user: {
          id: `u-${row.id}`,
          name: row.name,
          email: row.email,
          createdAt: { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 },
        },
      };
    }),
  });
} else if (role === "profiles") {
  const getUser = stub<{ id: string }, { user: User }>(
    new UserService(upstream, grpc.credentials.createInsecure()),
    "GetUser",
  );
  server.addService(ProfileService.service, {
    GetProfile: served<{ userId: string }, unknown>("demo.profiles.v1.ProfileService", "GetProfile", async (req) => {
      const { user } = await callUpstream(getUser, "demo.users.v1.UserService", "GetUser", { id: req.userId });
      return { profile: { user, ...profileFields(user.name) } };
    }),
  });
} else {
  const getProfile = stub<{ userId: string }, { profile: unknown }>(
    new ProfileService(upstream, grpc.credentials.createInsecure()),
    "GetProfile",
  );
  server.addService(GatewayService.service, {
    GetProfile: served<{ userId: string }, unknown>("demo.gateway.v1.GatewayService", "GetProfile", async (req) => {
      const { profile } = await callUpstream(getProfile, "demo.profiles.v1.ProfileService", "GetProfile", {
        userId: req.userId,
      });
      return { profile };
    }),
  });
}

// /metrics for Prometheus (and the bench's reading of users' handling time).
const admin =
  adminPort === undefined
    ? undefined
    : http
        .createServer((req, res) => {
          if (req.url !== "/metrics") {
            res.writeHead(404).end();
            return;
          }
          prom.register.metrics().then(
            (text) => res.writeHead(200, { "content-type": prom.register.contentType }).end(text),
            (err: Error) => res.writeHead(500).end(err.message),
          );
        })
        .listen(adminPort, "127.0.0.1");

server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, bound) => {
  if (err) throw err;
  process.stdout.write(`${JSON.stringify({ msg: `${role} listening`, port: bound })}\n`);
});

process.on("SIGTERM", () =>
  server.tryShutdown(async () => {
    admin?.close();
    await closeDatabase().catch(() => {});
    await sdk.shutdown().catch(() => {});
    if (spanStats) {
      process.stdout.write(`${JSON.stringify({ msg: "spans ended", spans: Object.fromEntries(ended) })}\n`);
    }
    try {
      destination.flushSync();
    } catch {
      // nothing buffered, or the file not open yet
    }
    process.exit(0);
  }),
);
