import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { collectRuntimeMetrics, metricsRegistry, registerRpcMetrics } from "@demo/rpc-kit/observe";
import { parse } from "yaml";

const root = fileURLToPath(new URL("../../../", import.meta.url));
// merge: docker-compose.yml shares env blocks with YAML merge keys (<<), as Compose reads them.
const load = (path: string) => parse(readFileSync(`${root}/${path}`, "utf8"), { merge: true });

interface ComposeService {
  image?: string;
  environment?: Record<string, string>;
  ports?: string[];
  volumes?: string[];
  healthcheck?: { test: string[] };
  depends_on?: Record<string, { condition: string }> | string[];
  build?: { context: string; args?: Record<string, string> };
}
const compose = load("docker-compose.yml") as {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
};
const services = compose.services;

/** A value with Compose's `${VAR:-default}` interpolations replaced by their defaults (what runs when VAR is unset). */
const withDefaults = (value: string) => value.replace(/\$\{\w+:-([^}]*)\}/g, "$1");

/** host:port → the compose service of that name, if it listens there (from its env, or the stack's known ports). */
function envPort(service: ComposeService | undefined, variable: string): string | undefined {
  return service?.environment?.[variable];
}

const PROMQL_KEYWORDS = new Set(["and", "or", "unless", "bool", "offset"]);

/** Strings emptied, so that nothing inside a label value is read as a name. */
const withoutStrings = (expr: string) => expr.replace(/"(?:[^"\\]|\\.)*"/g, '""');

/** The metric names a PromQL expression selects: identifiers that are not functions, labels or keywords. */
function metricNamesIn(expr: string): string[] {
  const bare = withoutStrings(expr)
    .replace(/\{[^}]*\}/g, " ")
    .replace(/\[[^\]]*\]/g, " ")
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ");
  return [...bare.matchAll(/\b([a-zA-Z_:][\w:]*)\b(?!\s*\()/g)]
    .map((m) => m[1] ?? "")
    .filter((name) => !PROMQL_KEYWORDS.has(name));
}

/** Label names an expression uses: in selectors (`metric{label="…"}`, per metric) and in grouping clauses. */
function labelsIn(expr: string): { selectors: { metric: string; labels: string[] }[]; grouping: string[] } {
  const bare = withoutStrings(expr);
  const selectors = [...bare.matchAll(/([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}/g)].map((m) => ({
    metric: m[1] ?? "",
    labels: [...(m[2] ?? "").matchAll(/([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)/g)].map((l) => l[1] ?? ""),
  }));
  const grouping = [...bare.matchAll(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g)].flatMap(
    (m) =>
      (m[1] ?? "")
        .split(",")
        .map((l) => l.trim())
        .filter(Boolean),
  );
  return { selectors, grouping };
}

/**
 * Every series name Prometheus will have from the services, with its label
 * names: each metric in rpc-kit's registry (histograms as their `_bucket`,
 * `_sum` and `_count` series only, never the bare name; `_bucket` adds `le`),
 * plus the labels the scrape itself adds.
 */
async function exportedSeries(scrapeLabels: readonly string[]): Promise<Map<string, Set<string>>> {
  // What a running service registers with its server and clients, and Node's runtime series.
  registerRpcMetrics();
  collectRuntimeMetrics();
  const series = new Map<string, Set<string>>();
  for (const m of await metricsRegistry.getMetricsAsJSON()) {
    const declared = (metricsRegistry.getSingleMetric(m.name) as { labelNames?: readonly string[] } | undefined)
      ?.labelNames;
    assert.ok(declared, `${m.name} declares its label names`);
    const labels = [...declared, ...scrapeLabels];
    if (String(m.type) === "histogram") {
      series.set(`${m.name}_bucket`, new Set([...labels, "le"]));
      series.set(`${m.name}_sum`, new Set(labels));
      series.set(`${m.name}_count`, new Set(labels));
    } else {
      series.set(m.name, new Set(labels));
    }
  }
  return series;
}

/** What is wrong with a dashboard query: unknown metrics, and labels that its metrics do not have. */
function queryProblems(expr: string, legend: string, exported: Map<string, Set<string>>): string[] {
  const problems: string[] = [];
  const metrics = metricNamesIn(expr);
  if (metrics.length === 0) problems.push("selects no metric");
  for (const metric of metrics) if (!exported.has(metric)) problems.push(`${metric} is not exported`);
  const { selectors, grouping } = labelsIn(expr);
  for (const { metric, labels } of selectors) {
    const known = exported.get(metric);
    for (const label of labels) if (known && !known.has(label)) problems.push(`${metric} has no label ${label}`);
  }
  // A grouping or legend label must exist on at least one metric of the query.
  const anywhere = new Set(metrics.flatMap((m) => [...(exported.get(m) ?? [])]));
  for (const label of grouping) if (!anywhere.has(label)) problems.push(`no metric of the query has label ${label}`);
  for (const [, label] of legend.matchAll(/\{\{\s*(\w+)\s*\}\}/g)) {
    if (label && !anywhere.has(label)) problems.push(`the legend names ${label}, which no metric of the query has`);
  }
  return problems;
}

interface PrometheusConfig {
  scrape_configs: {
    metrics_path?: string;
    static_configs: { targets: string[]; labels?: Record<string, string> }[];
  }[];
}

/** Labels every scraped series gets: `job`, `instance`, and the static configs' own (`service`). */
function scrapeLabels(config: PrometheusConfig): string[] {
  const labels = new Set(["job", "instance"]);
  for (const job of config.scrape_configs) {
    for (const group of job.static_configs) for (const label of Object.keys(group.labels ?? {})) labels.add(label);
  }
  return [...labels];
}

describe("docker-compose.yml", () => {
  it("runs the three services, their database and the observability stack, every image pinned", () => {
    for (const name of [
      "users",
      "profiles",
      "gateway",
      "postgres",
      "otel-collector",
      "jaeger",
      "prometheus",
      "grafana",
    ]) {
      assert.ok(services[name], `service ${name}`);
      const image = withDefaults(services[name]?.image ?? "");
      assert.match(image, /^[\w./-]+:[\w.-]+$/, `${name} image has a tag`);
      assert.doesNotMatch(image, /:latest$/, `${name} image is not :latest`);
    }
  });

  it("builds each app from the one Dockerfile, checks its health on its own admin port, starts in chain order", () => {
    for (const [name, dependency] of [
      ["users", undefined],
      ["profiles", "users"],
      ["gateway", "profiles"],
    ] as const) {
      const service = services[name];
      assert.equal(service?.build?.args?.APP, name, `${name} builds APP=${name}`);
      const probe = service?.healthcheck?.test.join(" ") ?? "";
      const url = /http:\/\/127\.0\.0\.1:(\d+)(\/\w+)/.exec(probe);
      assert.ok(url, `${name} has an HTTP health check`);
      assert.equal(url[1], envPort(service, "ADMIN_PORT"), `${name} health check uses ADMIN_PORT`);
      assert.equal(url[2], "/readyz");
      if (dependency) {
        const dependsOn = (service?.depends_on ?? {}) as Record<string, { condition: string }>;
        assert.deepEqual(dependsOn[dependency], {
          condition: "service_healthy",
        });
      }
    }
    // The README's curl examples use the admin ports too (/readyz, /debug/rpc): published, on loopback only.
    for (const name of ["users", "profiles", "gateway"]) {
      const admin = envPort(services[name], "ADMIN_PORT");
      assert.ok(
        (services[name]?.ports ?? []).some((p) =>
          new RegExp(`^127\\.0\\.0\\.1:\\$\\{[A-Z_]+:-${admin}\\}:${admin}$`).test(p),
        ),
        `${name} publishes its admin port ${admin} on 127.0.0.1`,
      );
    }
    const published = services.gateway?.ports?.[0] ?? "";
    assert.match(published, /^(\$\{GATEWAY_PORT:-8080\}|8080):(\d+)$/);
    assert.equal(published.split(":").at(-1), envPort(services.gateway, "PORT"), "the gateway publishes its PORT");
  });

  it("runs users' PostgreSQL from the official image, tag pinned but overridable, on a named volume, never published", () => {
    const postgres = services.postgres as ComposeService;
    const tag = /^postgres:\$\{POSTGRES_TAG:-([^}]+)\}$/.exec(postgres.image ?? "")?.[1];
    assert.ok(tag, `${postgres.image}: the official image, tag overridable with POSTGRES_TAG`);
    assert.match(tag, /^\d+\.\d+-\w+$/, "an exact minor version and Debian release, e.g. 17.6-bookworm");
    assert.equal(postgres.build, undefined, "never built here: the official image");
    assert.equal(postgres.ports, undefined, "no host port: only the compose network reaches it");
    const env = postgres.environment ?? {};
    assert.deepEqual(Object.keys(env).sort(), ["POSTGRES_DB", "POSTGRES_PASSWORD", "POSTGRES_USER"]);
    assert.equal(env.POSTGRES_USER, "users");
    assert.equal(env.POSTGRES_DB, "users");
    assert.match(env.POSTGRES_PASSWORD ?? "", /demo-only-NOT-A-SECRET/, "an obviously fake password");
    // The image keeps its data in /var/lib/postgresql/data (PGDATA, unset here: the image's default).
    const [volume, path, ...rest] = (postgres.volumes ?? [""])[0]?.split(":") ?? [];
    assert.equal(postgres.volumes?.length, 1);
    assert.equal(path, "/var/lib/postgresql/data");
    assert.deepEqual(rest, [], "read-write");
    assert.ok(
      volume && compose.volumes && volume in compose.volumes,
      `${volume} is a named volume (top-level volumes)`,
    );

    // Healthy once the server accepts TCP connections for that user and database.
    const probe = postgres.healthcheck?.test ?? [];
    assert.deepEqual(probe.slice(0, 2), ["CMD", "pg_isready"]);
    const option = (flag: string) => probe[probe.indexOf(flag) + 1];
    assert.equal(option("-h"), "127.0.0.1", "over TCP: the first start's temporary server listens on the socket only");
    assert.equal(option("-p"), "5432");
    assert.equal(option("-U"), env.POSTGRES_USER);
    assert.equal(option("-d"), env.POSTGRES_DB);
  });

  it("gives users, and only users, a DATABASE_URL that names the postgres service, its user, password and database, and waits for it", () => {
    const env = services.postgres?.environment ?? {};
    const raw = envPort(services.users, "DATABASE_URL") ?? "";
    const url = new URL(raw);
    assert.equal(url.protocol, "postgres:");
    assert.equal(url.hostname, "postgres", "the compose service");
    assert.equal(url.port, "5432", "the port PostgreSQL listens on (PGPORT unset)");
    assert.equal(decodeURIComponent(url.username), env.POSTGRES_USER);
    assert.equal(decodeURIComponent(url.password), env.POSTGRES_PASSWORD);
    assert.equal(url.pathname, `/${env.POSTGRES_DB}`);
    assert.equal(url.search, "");
    assert.deepEqual(((services.users?.depends_on ?? {}) as Record<string, unknown>).postgres, {
      condition: "service_healthy",
    });
    for (const [name, service] of Object.entries(services)) {
      if (name === "users" || name === "postgres") continue;
      for (const [key, value] of Object.entries(service.environment ?? {})) {
        assert.notEqual(key, "DATABASE_URL", `${name} has no database`);
        assert.ok(!String(value).includes(env.POSTGRES_PASSWORD as string), `${name} ${key}: no database password`);
      }
    }
  });

  it("the Docker test's override swaps only the postgres image, for the stand-in it builds", () => {
    const override = load("tests/deploy/docker/compose.postgres-standin.yml") as {
      services: Record<string, ComposeService>;
    };
    assert.deepEqual(Object.keys(override), ["services"]);
    assert.deepEqual(Object.keys(override.services), ["postgres"]);
    assert.deepEqual(Object.keys(override.services.postgres ?? {}), ["image"]);
    const image = override.services.postgres?.image ?? "";
    const run = readFileSync(`${root}/tests/deploy/docker/run.sh`, "utf8");
    assert.ok(run.includes(`docker build -t ${image} `), `run.sh builds ${image}`);
  });

  it("is accepted by docker-compose config, where docker-compose is installed", (t) => {
    try {
      execFileSync("docker-compose", ["version"], { stdio: "ignore" });
    } catch {
      t.skip("docker-compose is not installed here");
      return;
    }
    execFileSync("docker-compose", ["-f", `${root}/docker-compose.yml`, "config", "-q"], { stdio: "pipe" });
    const withStandIn = [
      "-f",
      `${root}/docker-compose.yml`,
      "-f",
      `${root}/tests/deploy/docker/compose.postgres-standin.yml`,
    ];
    execFileSync("docker-compose", [...withStandIn, "config", "-q"], { stdio: "pipe" });
  });

  it("points the services at each other and at the collector by DNS name", () => {
    assert.equal(envPort(services.profiles, "USERS_ADDR"), `dns:///users:${envPort(services.users, "PORT")}`);
    assert.equal(envPort(services.gateway, "PROFILES_ADDR"), `dns:///profiles:${envPort(services.profiles, "PORT")}`);
    for (const name of ["users", "profiles", "gateway"]) {
      assert.equal(services[name]?.environment?.OTEL_EXPORTER_OTLP_ENDPOINT, "http://otel-collector:4318");
    }
  });
});

describe("observability configs", () => {
  it("Prometheus scrapes every service's admin port, and only those", () => {
    const config = load("observability/prometheus.yml") as PrometheusConfig;
    const scraped = new Set<string>();
    for (const job of config.scrape_configs) {
      assert.equal(job.metrics_path ?? "/metrics", "/metrics");
      for (const group of job.static_configs) {
        for (const target of group.targets) {
          const [host, port] = target.split(":");
          assert.ok(host && services[host], `${target} names a compose service`);
          assert.equal(port, envPort(services[host], "ADMIN_PORT"), `${target} is ${host}'s ADMIN_PORT`);
          assert.equal(group.labels?.service, host, `${target} is labelled service=${host}`);
          scraped.add(host);
        }
      }
    }
    // Every service built from an app (the three of the demo, and any `npm run new-service` adds).
    const apps = Object.entries(services).filter(([, s]) => s.build?.args?.APP);
    assert.deepEqual([...scraped].sort(), apps.map(([name]) => name).sort());
    for (const name of ["gateway", "profiles", "users"]) assert.ok(scraped.has(name), name);
  });

  it("the collector receives OTLP/HTTP on 4318 and sends traces to Jaeger", () => {
    const config = load("observability/otel-collector.yaml") as {
      receivers: { otlp: { protocols: { http: { endpoint: string } } } };
      processors: Record<string, unknown>;
      exporters: Record<string, { endpoint: string }>;
      service: { pipelines: Record<string, { receivers: string[]; processors: string[]; exporters: string[] }> };
    };
    assert.match(config.receivers.otlp.protocols.http.endpoint, /:4318$/);
    const traces = config.service.pipelines.traces;
    assert.ok(traces, "a traces pipeline");
    for (const r of traces.receivers) assert.ok(r in config.receivers, `receiver ${r} is defined`);
    for (const p of traces.processors) assert.ok(p in config.processors, `processor ${p} is defined`);
    for (const e of traces.exporters) {
      const exporter = config.exporters[e];
      assert.ok(exporter, `exporter ${e} is defined`);
      const host = exporter.endpoint.replace(/^\w+:\/\//, "").split(":")[0] ?? "";
      assert.ok(services[host], `exporter ${e} sends to compose service ${host}`);
    }
    const volumes = services["otel-collector"]?.volumes ?? [];
    assert.ok(
      volumes.some((v) => v.startsWith("./observability/otel-collector.yaml:")),
      "the config is mounted",
    );
  });

  it("Grafana provisions the Prometheus datasource and the dashboard", () => {
    const datasources = load("observability/grafana/provisioning/datasources/prometheus.yaml") as {
      datasources: { uid: string; type: string; url: string }[];
    };
    const prometheus = datasources.datasources.find((d) => d.type === "prometheus");
    assert.ok(prometheus);
    const url = new URL(prometheus.url);
    assert.ok(services[url.hostname], "the datasource URL names a compose service");
    assert.ok((services[url.hostname]?.ports ?? []).some((p) => p.endsWith(`:${url.port}`)));

    const providers = load("observability/grafana/provisioning/dashboards/rpc-chain.yaml") as {
      providers: { options: { path: string } }[];
    };
    const mounted = services.grafana?.volumes ?? [];
    for (const p of providers.providers) {
      assert.ok(
        mounted.some((v) => v.split(":")[1] === p.options.path),
        `${p.options.path} is mounted`,
      );
    }
  });

  it("every dashboard query names only series and labels the services export, through the provisioned datasource", async () => {
    const dashboard = JSON.parse(readFileSync(`${root}/observability/grafana/dashboards/rpc-chain.json`, "utf8")) as {
      panels: {
        type: string;
        title: string;
        datasource?: { type: string; uid: string };
        targets?: { expr: string; legendFormat?: string; datasource?: { type: string; uid: string } }[];
      }[];
    };
    const { datasources } = load("observability/grafana/provisioning/datasources/prometheus.yaml") as {
      datasources: { uid: string; type: string }[];
    };
    const prometheus = datasources.find((d) => d.type === "prometheus");
    assert.ok(prometheus?.uid, "the Prometheus datasource has a uid");
    const exported = await exportedSeries(scrapeLabels(load("observability/prometheus.yml") as PrometheusConfig));
    const panels = dashboard.panels.filter((p) => p.type !== "row");
    assert.ok(panels.length >= 6);
    for (const panel of panels) {
      assert.deepEqual(panel.datasource, { type: "prometheus", uid: prometheus.uid }, `${panel.title}: datasource`);
      assert.ok(panel.targets && panel.targets.length > 0, `${panel.title}: has queries`);
      for (const target of panel.targets) {
        if (target.datasource) assert.equal(target.datasource.uid, prometheus.uid, `${panel.title}: query datasource`);
        assert.deepEqual(
          queryProblems(target.expr, target.legendFormat ?? "", exported),
          [],
          `${panel.title}: ${target.expr}`,
        );
      }
    }
  });

  it("shows p50, p95 and p99 latency per method, server side and for each hop (client side)", () => {
    const dashboard = JSON.parse(readFileSync(`${root}/observability/grafana/dashboards/rpc-chain.json`, "utf8")) as {
      panels: { targets?: { expr: string }[] }[];
    };
    const exprs = dashboard.panels.flatMap((p) => p.targets ?? []).map((t) => t.expr.replace(/\s+/g, ""));
    for (const side of ["server", "client"]) {
      for (const q of ["0.5", "0.95", "0.99"]) {
        assert.ok(
          exprs.some(
            (e) =>
              e.startsWith(`histogram_quantile(${q},`) &&
              e.includes(`grpc_${side}_handling_seconds_bucket`) &&
              /by\([^)]*\ble\b[^)]*\bgrpc_method\b/.test(e),
          ),
          `p${Number(q) * 100} of grpc_${side}_handling_seconds per method`,
        );
      }
    }
  });

  it("the query check catches a histogram's bare name, an unknown metric, and a mistyped label", async () => {
    const exported = await exportedSeries(["job", "instance", "service"]);
    const check = (expr: string, legend = "") => queryProblems(expr, legend, exported);
    assert.deepEqual(check("sum by (service, grpc_code) (rate(grpc_server_handled_total[1m]))", "{{service}}"), []);
    assert.deepEqual(check("rate(grpc_server_handling_seconds[1m])"), ["grpc_server_handling_seconds is not exported"]);
    assert.deepEqual(check("rate(grpc_server_handled[1m])"), ["grpc_server_handled is not exported"]);
    assert.deepEqual(check('sum(rate(grpc_server_handled_total{grpc_cde!="OK"}[1m]))'), [
      "grpc_server_handled_total has no label grpc_cde",
    ]);
    assert.deepEqual(check("sum by (servce) (rate(grpc_server_handled_total[1m]))"), [
      "no metric of the query has label servce",
    ]);
    assert.deepEqual(check("sum by (le) (rate(grpc_server_handling_seconds_count[1m]))"), [
      "no metric of the query has label le",
    ]);
    assert.deepEqual(check("sum by (service) (rpc_kit_client_in_flight_calls)", "{{service}} {{grpc_method}}"), [
      "the legend names grpc_method, which no metric of the query has",
    ]);
  });
});
