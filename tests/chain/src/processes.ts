/**
 * The three services as real processes, started from their built entry
 * points on free ports, with every log line kept for assertions.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { connectionLocalPorts, testDatabase } from "@demo/rpc-kit/testing";

export const repoRoot = fileURLToPath(new URL("../../../", import.meta.url));

export type ServiceName = "users" | "profiles" | "gateway";

/**
 * The NODE_OPTIONS the image runs the services with (`ENV NODE_OPTIONS="..."`
 * in the Dockerfile), so that tests which care about memory run them as
 * deployed: pass it in the env, e.g. `startChain({ all: { NODE_OPTIONS: imageNodeOptions() } })`.
 */
export function imageNodeOptions(): string {
  const dockerfile = readFileSync(join(repoRoot, "Dockerfile"), "utf8");
  const m = /^ENV\s+NODE_OPTIONS="([^"]*)"/m.exec(dockerfile);
  if (!m?.[1]) throw new Error('no ENV NODE_OPTIONS="..." line in the Dockerfile');
  return m[1];
}

export interface ServiceProcess {
  readonly name: ServiceName;
  readonly pid: number;
  readonly port: number;
  readonly adminPort: number;
  /** users: the database it was given (its own, unless the test named one). */
  readonly databaseUrl?: string | undefined;
  /** Parsed JSON log lines, in order. */
  readonly lines: Record<string, unknown>[];
  /** stdout and stderr as written. */
  output(): string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Sends a signal and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface SpawnOptions {
  /** A command the service runs under, e.g. `["ip", "netns", "exec", "ns1"]` (it must exec node in place). */
  readonly prefix?: readonly string[];
  /**
   * Keep only the latest output (about `chars` characters) and the latest
   * `lines` parsed lines; default everything. For tests whose traffic makes
   * a service log without end.
   */
  readonly keep?: { readonly chars: number; readonly lines: number };
  /** Called with every parsed log line, kept or not. */
  readonly onLine?: (line: Record<string, unknown>) => void;
}

/**
 * Spawns `apps/<name>/dist/main.js` with `env`. users without a DATABASE_URL
 * would start an embedded PostgreSQL in the repository's `.data/` (the one
 * `npm start` keeps): here it gets a throwaway folder instead.
 */
export function spawnService(
  name: ServiceName,
  env: Record<string, string>,
  { prefix = [], keep }: SpawnOptions = {},
): { child: ChildProcess; output: () => string } {
  const [command = process.execPath, ...args] = [...prefix, process.execPath, `apps/${name}/dist/main.js`];
  const child = spawn(command, args, {
    cwd: repoRoot,
    env: {
      PATH: process.env.PATH ?? "",
      LOG_FORMAT: "json",
      // A path no other process has had, made only if users starts an embedded server there.
      EMBEDDED_DATABASE_DIR: join(tmpdir(), `chain-test-pg-${randomUUID()}`),
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const append = (s: string) => {
    output += s;
    if (keep !== undefined && output.length > 2 * keep.chars) output = output.slice(-keep.chars);
  };
  child.stdout?.setEncoding("utf8").on("data", append);
  child.stderr?.setEncoding("utf8").on("data", append);
  return { child, output: () => output };
}

/**
 * Starts a service and waits until it listens (15 s at most). users gets a
 * fresh database of its own on the test process's PostgreSQL (see
 * `testDatabase`), dropped when it stops, unless `env` names a DATABASE_URL
 * (replicas sharing one store, a server a test stops and starts).
 */
export async function startService(
  name: ServiceName,
  env: Record<string, string> = {},
  options: SpawnOptions = {},
): Promise<ServiceProcess> {
  const database = name === "users" && env.DATABASE_URL === undefined ? await testDatabase() : undefined;
  const { child, output } = spawnService(
    name,
    {
      PORT: "0",
      ADMIN_PORT: "0",
      SHUTDOWN_DRAIN_DELAY_MS: "0",
      ...(database && { DATABASE_URL: database.url }),
      ...env,
    },
    options,
  );
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  ).then(async (result) => {
    await database?.drop().catch(() => {});
    return result;
  });
  const lines: Record<string, unknown>[] = [];
  let buffered = "";
  let onListening: ((line: Record<string, unknown>) => void) | undefined;
  child.stdout?.on("data", (s: string) => {
    buffered += s;
    let nl = buffered.indexOf("\n");
    while (nl >= 0) {
      const text = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      nl = buffered.indexOf("\n");
      // Anything else on stdout (V8's report of a heap running out, say) stays in output() only.
      let line: Record<string, unknown>;
      try {
        line = JSON.parse(text) as Record<string, unknown>;
      } catch {
        continue;
      }
      lines.push(line);
      if (options.keep !== undefined && lines.length > 2 * options.keep.lines) {
        lines.splice(0, lines.length - options.keep.lines);
      }
      options.onLine?.(line);
      if (line.msg === `${name} listening`) onListening?.(line);
    }
  });
  const listening = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${name} did not start in 15 s:\n${output()}`));
    }, 15_000);
    onListening = (line) => {
      clearTimeout(timer);
      resolve(line);
    };
    void exited.then(({ code }) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited with ${code} before listening:\n${output()}`));
    });
  });
  return {
    name,
    pid: child.pid ?? -1,
    port: listening.port as number,
    adminPort: listening.admin_port as number,
    ...(name === "users" && { databaseUrl: env.DATABASE_URL ?? database?.url }),
    lines,
    output,
    exited,
    stop(signal = "SIGTERM") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

export interface Chain {
  readonly users: ServiceProcess;
  readonly profiles: ServiceProcess;
  readonly gateway: ServiceProcess;
  /** http://localhost:<gateway port> */
  readonly baseUrl: string;
  stop(): Promise<void>;
}

/** Starts users, then profiles pointed at it, then the gateway pointed at profiles. */
export async function startChain(
  env: Partial<Record<ServiceName | "all", Record<string, string>>> = {},
  options: (name: ServiceName) => SpawnOptions = () => ({}),
): Promise<Chain> {
  const users = await startService("users", { ...env.all, ...env.users }, options("users"));
  const profiles = await startService(
    "profiles",
    { USERS_ADDR: `localhost:${users.port}`, ...env.all, ...env.profiles },
    options("profiles"),
  );
  const gateway = await startService(
    "gateway",
    { PROFILES_ADDR: `localhost:${profiles.port}`, ...env.all, ...env.gateway },
    options("gateway"),
  );
  return {
    users,
    profiles,
    gateway,
    baseUrl: `http://localhost:${gateway.port}`,
    async stop() {
      await Promise.all([gateway.stop(), profiles.stop(), users.stop()]);
    },
  };
}

/**
 * Established TCP connections that process `pid` holds to `remotePort`, read
 * from /proc: sockets of the process (its fd links) matched against the
 * kernel's TCP tables.
 */
export function establishedConnections(pid: number, remotePort: number): number {
  return connectionLocalPorts(pid, remotePort).length;
}

export { connectionLocalPorts };
