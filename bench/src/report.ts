/** Medians, targets, bench/RESULTS.md and bench/results.svg. */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Config, NODE_OPTIONS, type Role, root } from "./configs.ts";
import type { DatabaseServer } from "./databases.ts";
import type { LoadResult } from "./h2load.ts";

export interface Sample extends LoadResult {
  readonly config: string;
  readonly concurrency: number;
  readonly cpuPerRequest: Record<Role, number>;
  readonly peakRss: Record<Role, number>;
  readonly fdsBefore: Record<Role, number>;
  readonly fdsAfter: Record<Role, number>;
  /** The configurations with users on PostgreSQL: its figures per call. */
  readonly database?: DatabaseSample;
}

export interface DatabaseSample {
  readonly server: DatabaseServer;
  /**
   * users' query time per call, ms (db_client_operation_duration_seconds: pool wait included);
   * undefined where users reports none (the hand-wired chains).
   */
  readonly dbMs: number | undefined;
  /** users' queries per call (the readiness probe's left out); undefined likewise. */
  readonly queries: number | undefined;
  /** users' handling time per call, ms (grpc_server_handling_seconds); undefined where users serves no /metrics. */
  readonly usersMs: number | undefined;
  /** CPU-µs of the PostgreSQL processes serving the run, per call; undefined when they cannot be read. */
  readonly postgresCpu: number | undefined;
}

/** A configuration that did not run here, and why. */
export interface Skipped {
  readonly config: string;
  readonly reason: string;
}

export interface Soak {
  readonly calls: number;
  readonly start: Record<Role, { fds: number; rssMb: number }>;
  readonly end: Record<Role, { fds: number; rssMb: number }>;
  readonly curve: ({ at: number } & Record<Role, { fds: number; rssMb: number }>)[];
  readonly peakRssMb: Record<Role, number>;
}

const ROLES: Role[] = ["gateway", "profiles", "users"];

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[mid] ?? 0) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}

interface Row {
  config: string;
  concurrency: number;
  n: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  cpu: Record<Role, number>;
  rssMb: Record<Role, number>;
  fds: Record<Role, [number, number]>;
  database?: {
    server: DatabaseServer;
    meanMs: number;
    dbMs: number | undefined;
    queries: number | undefined;
    usersMs: number | undefined;
    /** dbMs ÷ end-to-end mean latency, per repetition, median. */
    share: number | undefined;
    postgresCpu: number | undefined;
  };
}

function rows(samples: readonly Sample[]): Row[] {
  const groups = new Map<string, Sample[]>();
  for (const s of samples) {
    const key = `${s.config}\t${s.concurrency}`;
    groups.set(key, [...(groups.get(key) ?? []), s]);
  }
  return [...groups.values()].map((group) => {
    const first = group[0] as Sample;
    const per = (f: (s: Sample) => Record<Role, number>) =>
      Object.fromEntries(ROLES.map((r) => [r, median(group.map((s) => f(s)[r]))])) as Record<Role, number>;
    const rss = per((s) => s.peakRss);
    return {
      config: first.config,
      concurrency: first.concurrency,
      n: group.length,
      rps: median(group.map((s) => s.rps)),
      p50Ms: median(group.map((s) => s.p50Ms)),
      p99Ms: median(group.map((s) => s.p99Ms)),
      cpu: per((s) => s.cpuPerRequest),
      rssMb: Object.fromEntries(ROLES.map((r) => [r, rss[r] / 1_048_576])) as Record<Role, number>,
      fds: Object.fromEntries(
        ROLES.map((r) => [r, [median(group.map((s) => s.fdsBefore[r])), median(group.map((s) => s.fdsAfter[r]))]]),
      ) as Record<Role, [number, number]>,
      ...(first.database && { database: databaseRow(group) }),
    };
  });
}

/** The median of the values that are there, or undefined when none is. */
function medianOf(values: readonly (number | undefined)[]): number | undefined {
  const there = values.filter((v): v is number => v !== undefined);
  return there.length > 0 ? median(there) : undefined;
}

function databaseRow(group: readonly Sample[]): NonNullable<Row["database"]> {
  const db = group.map((s) => s.database).filter((d): d is DatabaseSample => d !== undefined);
  return {
    server: (db[0] as DatabaseSample).server,
    meanMs: median(group.map((s) => s.meanMs)),
    dbMs: medianOf(db.map((d) => d.dbMs)),
    queries: medianOf(db.map((d) => d.queries)),
    usersMs: medianOf(db.map((d) => d.usersMs)),
    share: medianOf(group.map((s) => (s.database?.dbMs === undefined ? undefined : s.database.dbMs / s.meanMs))),
    postgresCpu: medianOf(db.map((d) => d.postgresCpu)),
  };
}

/** `n` to `digits` decimals; "–" for a figure not there. */
const fmt = (n: number | undefined, digits = 0) => (n !== undefined && Number.isFinite(n) ? n.toFixed(digits) : "–");

function targets(all: Row[], soak: Soak | undefined, concurrency: number): string[] {
  const at = (config: string, c = concurrency) => all.find((r) => r.config === config && r.concurrency === c);
  const kit = at("rpc-kit");
  const lean = at("rpc-kit-lean");
  const otel = at("grpc-js-otel");
  const bare = at("grpc-js-pg");
  const connect = at("connect-grpc");
  const lines: string[] = [];
  const verdict = (ok: boolean) => (ok ? "met" : "**missed**");
  /** One ratio target: `a ÷ b` against `bound`, at most or at least. */
  const ratio = (what: string, a: number, b: number, bound: number, atMost: boolean, digits = 0) => {
    const r = a / b;
    lines.push(
      `| ${what} | ${atMost ? "≤" : "≥"} ${bound.toFixed(1)}× | ${fmt(a, digits)} ÷ ${fmt(b, digits)} = ${fmt(r, 2)}× | ${verdict(atMost ? r <= bound : r >= bound)} |`,
    );
  };
  // Issue 15: rpc-kit against the same observability wired by hand, and lean against bare.
  if (kit && otel) {
    ratio(`end to end req/s, rpc-kit (full) ÷ grpc-js-otel, c=${concurrency}`, kit.rps, otel.rps, 1, false);
    for (const role of ["profiles", "users"] as const) {
      ratio(
        `${role}: CPU-µs/request, rpc-kit (full) ÷ grpc-js-otel, c=${concurrency}`,
        kit.cpu[role],
        otel.cpu[role],
        1,
        true,
      );
    }
  }
  const kit64 = at("rpc-kit", 64);
  const otel64 = at("grpc-js-otel", 64);
  if (kit64 && otel64) ratio("p99 ms, rpc-kit (full) ÷ grpc-js-otel, c=64", kit64.p99Ms, otel64.p99Ms, 1, true, 1);
  if (lean && bare) {
    ratio(`end to end req/s, rpc-kit-lean ÷ bare (grpc-js-pg), c=${concurrency}`, lean.rps, bare.rps, 0.8, false);
    for (const role of ["profiles", "users"] as const) {
      ratio(
        `${role}: CPU-µs/request, rpc-kit-lean ÷ bare (grpc-js-pg), c=${concurrency}`,
        lean.cpu[role],
        bare.cpu[role],
        1.3,
        true,
      );
    }
  }
  // The earlier targets, "bare" likewise grpc-js-pg now.
  if (kit && bare) {
    for (const role of ["profiles", "users"] as const) {
      ratio(
        `${role}: CPU-µs/request, rpc-kit (full) ÷ bare (grpc-js-pg), c=${concurrency}`,
        kit.cpu[role],
        bare.cpu[role],
        1.3,
        true,
      );
    }
    ratio(`end to end req/s, rpc-kit ÷ bare (grpc-js-pg), c=${concurrency}`, kit.rps, bare.rps, 0.6, false);
  }
  if (kit && connect) {
    ratio(
      `end to end req/s, rpc-kit ÷ bare connect-node (gRPC, users in memory), c=${concurrency}`,
      kit.rps,
      connect.rps,
      2,
      false,
    );
  }
  if (soak) {
    for (const role of ROLES) {
      const drift = soak.end[role].fds - soak.start[role].fds;
      lines.push(
        `| ${role}: open fds across ${soak.calls.toLocaleString("en")} calls | flat ±5 | ${soak.start[role].fds} → ${soak.end[role].fds} | ${verdict(Math.abs(drift) <= 5)} |`,
      );
    }
    for (const role of ROLES) {
      lines.push(
        `| ${role}: peak RSS under load | < 150 MB | ${fmt(soak.peakRssMb[role])} MB | ${verdict(soak.peakRssMb[role] < 150)} |`,
      );
    }
  }
  return lines;
}

function svg(all: Row[], configs: readonly Config[], concurrency: number): string {
  const data = configs
    .map((c) => all.find((r) => r.config === c.name && r.concurrency === concurrency))
    .filter((r): r is Row => r !== undefined);
  const width = 760;
  const barH = 22;
  const top = 40;
  const label = 170;
  const half = (width - label - 40) / 2;
  const maxRps = Math.max(...data.map((d) => d.rps), 1);
  const maxP99 = Math.max(...data.map((d) => d.p99Ms), 1);
  const height = top + data.length * (barH + 8) + 20;
  const bars = data
    .map((d, i) => {
      const y = top + i * (barH + 8);
      const w1 = (d.rps / maxRps) * (half - 60);
      const w2 = (d.p99Ms / maxP99) * (half - 60);
      const x2 = label + half + 20;
      const fill = d.config.startsWith("rpc-kit")
        ? "#2563eb"
        : d.config === "per-request-client"
          ? "#dc2626"
          : "#6b7280";
      return [
        `<text x="${label - 8}" y="${y + 15}" text-anchor="end">${d.config}</text>`,
        `<rect x="${label}" y="${y}" width="${w1.toFixed(1)}" height="${barH}" fill="${fill}"/>`,
        `<text x="${(label + w1 + 4).toFixed(1)}" y="${y + 15}">${fmt(d.rps)}</text>`,
        `<rect x="${x2}" y="${y}" width="${w2.toFixed(1)}" height="${barH}" fill="${fill}" opacity="0.6"/>`,
        `<text x="${(x2 + w2 + 4).toFixed(1)}" y="${y + 15}">${fmt(d.p99Ms, 1)} ms</text>`,
      ].join("");
    })
    .join("\n");
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">
<title>Requests per second and p99 latency per configuration at concurrency ${concurrency}</title>
<rect width="100%" height="100%" fill="white"/>
<text x="${label}" y="20" font-weight="bold">requests/s (c=${concurrency}, median)</text>
<text x="${label + half + 20}" y="20" font-weight="bold">p99 latency (c=${concurrency})</text>
${bars}
</svg>
`;
}

export function writeReport(input: {
  samples: readonly Sample[];
  soak: Soak | undefined;
  machine: string;
  reps: number;
  seconds: number;
  concurrencies: readonly number[];
  configs: readonly Config[];
  skipped: readonly Skipped[];
  write: boolean;
}): string {
  const all = rows(input.samples);
  const order = (r: Row) => input.configs.findIndex((c) => c.name === r.config) * 1000 + r.concurrency;
  all.sort((a, b) => order(a) - order(b));
  const high = Math.max(...input.concurrencies);
  const table = [
    "| configuration | c | req/s | p50 ms | p99 ms | CPU-µs/req gateway | profiles | users | peak RSS MB g / p / u | fds g / p / u (before → after) |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ...all.map(
      (r) =>
        `| ${r.config} | ${r.concurrency} | ${fmt(r.rps)} | ${fmt(r.p50Ms, 2)} | ${fmt(r.p99Ms, 2)} | ${fmt(r.cpu.gateway)} | ${fmt(r.cpu.profiles)} | ${fmt(r.cpu.users)} | ${ROLES.map((x) => fmt(r.rssMb[x])).join(" / ")} | ${ROLES.map((x) => `${r.fds[x][0]}→${r.fds[x][1]}`).join(" / ")} |`,
    ),
  ];
  const goals = targets(all, input.soak, high);
  const skippedWhy = (name: string) => input.skipped.find((s) => s.config === name)?.reason;
  const onDatabase = input.configs.filter((c) => c.database);
  const dbRows = all.filter((r) => r.database);
  const database = onDatabase.length
    ? `
## Database

The configurations with users on PostgreSQL, per GetProfile call (same runs as the table above,
medians). users' database time is the growth of \`db_client_operation_duration_seconds\` (sum and
count; the readiness probe's \`SELECT 1\` left out) on users' /metrics across the row, divided by
the calls users served in it (one GetUser per GetProfile), waiting for a pooled connection
included; its share is that time over the end-to-end mean latency h2load saw. users' handling time
is \`grpc_server_handling_seconds\` of UserService, per call likewise. PostgreSQL CPU is user +
system time from /proc, per request as for the services, of the processes serving the run: the
whole embedded server (it serves this run alone: the postmaster with every child, those that ended
included), or on the real server users' backends (\`pg_stat_activity\`: \`application_name\` users,
the run's database; read every 100 ms, so a connection the pool drops loses at most its last
100 ms; other databases' work is not counted). Chain
CPU adds the three services and PostgreSQL: what one GetProfile costs the machine end to end.
The hand-wired chains' users reports no database time ("–"): \`grpc-js-pg\`'s serves no /metrics
at all, \`grpc-js-otel\`'s only prom-client's grpc_* series (its handling time is read there);
their PostgreSQL CPU is measured as for the rpc-kit chains.

${
  dbRows.length
    ? [
        "| configuration | c | database | req/s | mean ms | users db ms/call | queries/call | db share of latency | users handling ms/call | CPU-µs/req users | PostgreSQL CPU-µs/call | chain CPU-µs/call |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ...dbRows.map((r) => {
          const d = r.database as NonNullable<Row["database"]>;
          const chain = d.postgresCpu === undefined ? Number.NaN : ROLES.reduce((t, x) => t + r.cpu[x], d.postgresCpu);
          const share = d.share === undefined ? "–" : `${fmt(d.share * 100, 1)}%`;
          return `| ${r.config} | ${r.concurrency} | ${d.server} | ${fmt(r.rps)} | ${fmt(d.meanMs, 2)} | ${fmt(d.dbMs, 2)} | ${fmt(d.queries, 2)} | ${share} | ${fmt(d.usersMs, 2)} | ${fmt(r.cpu.users)} | ${fmt(d.postgresCpu)} | ${fmt(chain)} |`;
        }),
      ].join("\n")
    : "No configuration on PostgreSQL ran."
}
${onDatabase
  .map((c) => [c, skippedWhy(c.name)] as const)
  .filter(([, why]) => why !== undefined)
  .map(([c, why]) => `\n\`${c.name}\` was skipped: ${why}.\n`)
  .join("")}`
    : "";
  const md = `# Benchmark results

Generated by \`npm run bench\` on ${new Date().toISOString().slice(0, 10)}: ${input.machine}.

Each configuration is three processes on loopback (gateway → profiles → users). h2load sends
\`GatewayService/GetProfile\` to the gateway over one HTTP/2 connection with *c* streams in
flight (Connect binary for \`connect-connect\`, gRPC otherwise) for ${input.seconds} s per row,
after a warm-up at c=64; ${input.reps} interleaved repetitions, medians shown. CPU-µs/req is
user + system time of each service process per request, from /proc. The load is driven by
h2load (single-threaded, cheap in CPU), not pinned; the two cores are shared by h2load and
the three services (and PostgreSQL). The bare \`grpc-js\` and connect-node chains' users answers
from memory; the rpc-kit apps' users, \`grpc-js-pg\`'s and the hand-wired \`grpc-js-otel\`'s read
PostgreSQL (one query per GetUser, a named statement on a pool of 10), a fresh database per start
(see Database below), so its CPU there includes the database client's. Every service process runs with the image's
\`NODE_OPTIONS="${NODE_OPTIONS}"\` (see the Dockerfile).

${input.configs.map((c) => `- \`${c.name}\`: ${c.description}${c.maxRequests ? ` (${c.maxRequests.toLocaleString("en")} requests per row)` : ""}${skippedWhy(c.name) ? ` — **skipped**: ${skippedWhy(c.name)}` : ""}`).join("\n")}

${table.join("\n")}

![requests/s and p99 per configuration](results.svg)
${database}
## Targets

Issue 15's targets compare rpc-kit with the hand-wired \`grpc-js-otel\` (the same observability,
wired by hand) and \`rpc-kit-lean\` with the bare chain; "bare" here is \`grpc-js-pg\`, the bare
grpc-js chain whose users does the same database work as rpc-kit's (not \`grpc-js\`, whose users
answers from memory). Reported, met or not: a run never fails on them.

| target | wanted | measured | |
| --- | --- | --- | --- |
${goals.join("\n")}
${
  input.soak
    ? `
## Soak

${input.soak.calls.toLocaleString("en")} calls through the rpc-kit chain at c=64. Open fds and RSS per process, sampled every second:

| | ${ROLES.join(" | ")} |
| --- | ${ROLES.map(() => "---").join(" | ")} |
| start | ${ROLES.map((r) => `${input.soak?.start[r].fds} fds, ${fmt(input.soak?.start[r].rssMb ?? 0)} MB`).join(" | ")} |
| end | ${ROLES.map((r) => `${input.soak?.end[r].fds} fds, ${fmt(input.soak?.end[r].rssMb ?? 0)} MB`).join(" | ")} |
| max over the run | ${ROLES.map((r) => `${Math.max(...(input.soak?.curve ?? []).map((c) => c[r].fds), 0)} fds, ${fmt(Math.max(...(input.soak?.curve ?? []).map((c) => c[r].rssMb), 0))} MB`).join(" | ")} |
`
    : ""
}`;
  if (input.write) {
    writeFileSync(join(root, "bench/RESULTS.md"), md);
    writeFileSync(join(root, "bench/results.svg"), svg(all, input.configs, high));
  }
  return md;
}
