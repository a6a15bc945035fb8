/**
 * The configurations compared: each is three processes on loopback, A → B → C,
 * and the request h2load sends to A.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, openSync, readFileSync } from "node:fs";
import * as net from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { toBinary } from "@bufbuild/protobuf";
import { GetProfileRequestSchema } from "@demo/proto/demo/gateway/v1/gateway_pb";
import { freePort } from "@demo/rpc-kit/testing";
import type { BenchDatabase, DatabaseServer, Databases } from "./databases.ts";
import type { LoadRequest } from "./h2load.ts";

export const root = fileURLToPath(new URL("../../", import.meta.url));
const ROLES = ["users", "profiles", "gateway"] as const;
export type Role = (typeof ROLES)[number];

/**
 * The V8 heap caps the services' image runs with (the Dockerfile's NODE_OPTIONS).
 * Every configuration, bare ones included, runs with them: the CPU and RSS
 * figures then compare stacks under the same runtime, as deployed.
 */
export const NODE_OPTIONS = (() => {
  const options = /^ENV NODE_OPTIONS="([^"]*)"$/m.exec(readFileSync(join(root, "Dockerfile"), "utf8"))?.[1];
  if (options === undefined) throw new Error("the Dockerfile sets no NODE_OPTIONS");
  return options;
})();

/** What a role is given besides its port and its upstream's. */
export interface RoleContext {
  /** A free port for its /metrics, /healthz and /readyz. */
  readonly adminPort: number;
  /** users' DATABASE_URL, for a configuration with a {@link Config.database}. */
  readonly databaseUrl?: string;
  /** A file of its own for its per-call log lines, for a process that writes them to one (`grpc-js-otel`). */
  readonly logFile: string;
}

export interface Config {
  readonly name: string;
  readonly description: string;
  /** Protocol of the request into the gateway. */
  readonly protocol: "grpc" | "connect";
  /** Command and env of one role listening on `port`, given the port of its upstream (if any). */
  command(
    role: Role,
    port: number,
    upstreamPort: number | undefined,
    context: RoleContext,
  ): { args: string[]; env: Record<string, string> };
  /** Requests per measurement, instead of a duration (for configurations that leak per call). */
  readonly maxRequests?: number;
  /** The PostgreSQL server users keeps its data in: a fresh database on it at every start. */
  readonly database?: DatabaseServer;
  /**
   * users serves Prometheus /metrics on its admin port: the bench reads its
   * handling time there (grpc_server_handling_seconds) and, where it has
   * it, its database time (db_client_operation_duration_seconds).
   */
  readonly usersMetrics?: boolean;
}

const GETPROFILE = toBinary(GetProfileRequestSchema, { $typeName: "demo.gateway.v1.GetProfileRequest", userId: "u-1" });

export function requestFor(config: Config, port: number): LoadRequest {
  const url = `http://127.0.0.1:${port}/demo.gateway.v1.GatewayService/GetProfile`;
  if (config.protocol === "connect") {
    return { url, headers: ["content-type: application/proto", "connect-protocol-version: 1"], body: GETPROFILE };
  }
  const envelope = new Uint8Array(5 + GETPROFILE.length);
  new DataView(envelope.buffer).setUint32(1, GETPROFILE.length);
  envelope.set(GETPROFILE, 5);
  return { url, headers: ["content-type: application/grpc", "te: trailers"], body: envelope };
}

/**
 * A chain of bench/src/bare/. Every role gets its admin port and log file (used by those that
 * serve /metrics or log to a file); users its database's URL, for a configuration with one.
 */
const bare =
  (file: string, env: Record<string, string>) =>
  (role: Role, port: number, upstream: number | undefined, { adminPort, databaseUrl, logFile }: RoleContext) => ({
    args: [join(root, "bench/src/bare", file)],
    env: {
      ROLE: role,
      PORT: String(port),
      ADMIN_PORT: String(adminPort),
      LOG_FILE: logFile,
      ...env,
      ...(upstream !== undefined && {
        UPSTREAM: file.startsWith("grpc-js") ? `127.0.0.1:${upstream}` : `http://127.0.0.1:${upstream}`,
      }),
      ...(role === "users" && databaseUrl !== undefined && { DATABASE_URL: databaseUrl }),
    },
  });

const kit =
  (env: Record<string, string>) =>
  (role: Role, port: number, upstream: number | undefined, { adminPort, databaseUrl }: RoleContext) => {
    // Never users' default, an embedded server in the working directory's .data/ (npm start's).
    if (role === "users" && databaseUrl === undefined) throw new Error("users needs a database of the bench's");
    return {
      args: ["--enable-source-maps", join(root, "apps", role, "dist/main.js")],
      env: {
        PORT: String(port),
        ADMIN_PORT: String(adminPort),
        HOST: "127.0.0.1",
        LOG_FORMAT: "json",
        SHUTDOWN_DRAIN_DELAY_MS: "0",
        ...env,
        ...(role === "users" && { DATABASE_URL: databaseUrl as string }),
        ...(role === "profiles" && { USERS_ADDR: `localhost:${upstream}` }),
        ...(role === "gateway" && { PROFILES_ADDR: `localhost:${upstream}` }),
      },
    };
  };

const FULL = { LOG_LEVEL: "info", OTEL_TRACES_SAMPLER: "always_on" };

export const CONFIGS: readonly Config[] = [
  {
    name: "grpc-js",
    description: "bare @grpc/grpc-js chain",
    protocol: "grpc",
    command: bare("grpc-js-chain.ts", {}),
  },
  {
    name: "grpc-js-pg",
    description:
      "bare @grpc/grpc-js chain with users on the bench's embedded PostgreSQL through a plain pg.Pool (max 10; no instrumentation, logs or metrics): the bare reference with the same database work as the rpc-kit chains",
    protocol: "grpc",
    command: bare("grpc-js-chain.ts", {}),
    database: "embedded",
  },
  {
    name: "grpc-js-otel",
    description:
      "hand-wired without rpc-kit: stock @grpc/grpc-js from the .proto files (proto-loader), OpenTelemetry's gRPC and pg instrumentations (spans at 100%, no exporter), a pino info line per call to a file, prom-client grpc_server_*/grpc_client_* counters and histograms, a 2 s deadline per upstream call; users on the bench's embedded PostgreSQL through a plain pg.Pool (max 10)",
    protocol: "grpc",
    command: bare("grpc-js-otel.ts", {}),
    database: "embedded",
    usersMetrics: true,
  },
  {
    name: "connect-grpc",
    description: "bare @connectrpc/connect-node chain, gRPC protocol",
    protocol: "grpc",
    command: bare("connect-chain.ts", { PROTOCOL: "grpc" }),
  },
  {
    name: "connect-connect",
    description: "bare @connectrpc/connect-node chain, Connect protocol (binary)",
    protocol: "connect",
    command: bare("connect-chain.ts", { PROTOCOL: "connect" }),
  },
  {
    name: "rpc-kit",
    description:
      "the apps on rpc-kit, full instrumentation (spans at 100%, metrics, info logs to a file); users on an embedded PostgreSQL the bench starts",
    protocol: "grpc",
    command: kit(FULL),
    database: "embedded",
    usersMetrics: true,
  },
  {
    name: "rpc-kit-lean",
    description:
      "the apps on rpc-kit, tracing off and logs at warn (metrics on); users on the bench's embedded PostgreSQL",
    protocol: "grpc",
    command: kit({ LOG_LEVEL: "warn", OTEL_SDK_DISABLED: "true" }),
    database: "embedded",
    usersMetrics: true,
  },
  {
    name: "rpc-kit-pg-real",
    description:
      "`rpc-kit` (full instrumentation) with users on a real PostgreSQL server (BENCH_DATABASE_URL or TEST_DATABASE_URL)",
    protocol: "grpc",
    command: kit(FULL),
    database: "real",
    usersMetrics: true,
  },
  {
    name: "per-request-client",
    description: "anti-pattern: the bare connect-node gRPC chain with a new transport per call",
    protocol: "grpc",
    command: bare("connect-chain.ts", { PROTOCOL: "grpc", PER_REQUEST_CLIENT: "1" }),
    maxRequests: 3_000,
  },
];

export interface RunningConfig {
  readonly pids: Record<Role, number>;
  readonly gatewayPort: number;
  /** Each role's admin port (/metrics): the rpc-kit apps and `grpc-js-otel` serve one; the other bare chains ignore it. */
  readonly adminPorts: Record<Role, number>;
  /** users' database, for a configuration with one: dropped by `stop()`. */
  readonly database?: BenchDatabase;
  stop(): Promise<void>;
}

/**
 * Starts users, profiles and gateway of a configuration, users on a fresh
 * database of `databases` when the configuration has one; their output goes
 * to files in `logDir`.
 */
export async function startConfig(
  config: Config,
  options: { logDir: string; databases: Databases; cpuProfileDir?: string | undefined },
): Promise<RunningConfig> {
  const { logDir, cpuProfileDir } = options;
  mkdirSync(logDir, { recursive: true });
  const children: ChildProcess[] = [];
  const pids = {} as Record<Role, number>;
  const adminPorts = {} as Record<Role, number>;
  const database = config.database ? await options.databases.fresh(config.database) : undefined;
  let upstream: number | undefined;
  try {
    for (const role of ROLES) {
      const port = await freePort();
      adminPorts[role] = await freePort();
      const { args, env } = config.command(role, port, upstream, {
        adminPort: adminPorts[role],
        logFile: join(logDir, `${config.name}-${role}.calls.log`),
        ...(role === "users" && database && { databaseUrl: database.url }),
      });
      const logPath = join(logDir, `${config.name}-${role}.log`);
      const out = openSync(logPath, "w");
      const profile = cpuProfileDir
        ? ["--cpu-prof", `--cpu-prof-dir=${join(cpuProfileDir, `${config.name}-${role}`)}`]
        : [];
      const child = spawn(process.execPath, [...profile, ...args], {
        env: { PATH: process.env.PATH ?? "", NODE_OPTIONS, ...env },
        stdio: ["ignore", out, out],
      });
      children.push(child);
      pids[role] = child.pid ?? -1;
      await listening(port, logPath, role, child);
      upstream = port;
    }
  } catch (err) {
    for (const c of children) c.kill("SIGKILL");
    await database?.drop().catch(() => {});
    throw err;
  }
  return {
    pids,
    gatewayPort: upstream ?? 0,
    adminPorts,
    ...(database && { database }),
    async stop() {
      await Promise.all(
        children.map(
          (c) =>
            new Promise<void>((resolve) => {
              if (c.exitCode !== null || c.signalCode !== null) return resolve();
              const timer = setTimeout(() => c.kill("SIGKILL"), 5_000);
              c.once("exit", () => {
                clearTimeout(timer);
                resolve();
              });
              c.kill("SIGTERM");
            }),
        ),
      );
      await database?.drop();
    },
  };
}

/** Waits until `port` accepts connections (each service starts serving as soon as it binds). */
async function listening(port: number, logPath: string, role: Role, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, "127.0.0.1");
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (open) return;
    if (child.exitCode !== null) throw new Error(`${role} exited: ${readFileSync(logPath, "utf8")}`);
    if (Date.now() > deadline) throw new Error(`${role} did not listen on ${port} in 15 s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
