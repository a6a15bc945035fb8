import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { collectRuntimeMetrics, metricsRegistry } from "@demo/rpc-kit";
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
const compose = load("docker-compose.yml") as { services: Record<string, ComposeService> };
const services = compose.services;

/** host:port → the compose service of that name, if it listens there (from its env, or the stack's known ports). */
function envPort(service: ComposeService | undefined, variable: string): string | undefined {
  return service?.environment?.[variable];
}

const PROMQL_KEYWORDS = new Set(["and", "or", "unless", "bool", "offset"]);

/** The metric names a PromQL expression selects: identifiers that are not functions, labels or keywords. */
function metricNamesIn(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, " ")
    .replace(/\[[^\]]*\]/g, " ")
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ");
  return [...bare.matchAll(/\b([a-zA-Z_:][\w:]*)\b(?!\s*\()/g)]
    .map((m) => m[1] ?? "")
    .filter((name) => !PROMQL_KEYWORDS.has(name));
}

/** Every metric name the services export, from rpc-kit's own registry, with histogram series. */
async function exportedMetricNames(): Promise<Set<string>> {
  collectRuntimeMetrics();
  const names = new Set<string>();
  for (const m of await metricsRegistry.getMetricsAsJSON()) {
    names.add(m.name);
    if (String(m.type) === "histogram") for (const s of ["_bucket", "_sum", "_count"]) names.add(m.name + s);
  }
  return names;
}

describe("docker-compose.yml", () => {
  it("runs the three services and the observability stack, every image pinned", () => {
    for (const name of ["users", "profiles", "gateway", "otel-collector", "jaeger", "prometheus", "grafana"]) {
      assert.ok(services[name], `service ${name}`);
      const image = services[name]?.image ?? "";
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
    const published = services.gateway?.ports?.[0] ?? "";
    assert.match(published, /^(\$\{GATEWAY_PORT:-8080\}|8080):(\d+)$/);
    assert.equal(published.split(":").at(-1), envPort(services.gateway, "PORT"), "the gateway publishes its PORT");
  });

  it("is accepted by docker-compose config, where docker-compose is installed", (t) => {
    try {
      execFileSync("docker-compose", ["version"], { stdio: "ignore" });
    } catch {
      t.skip("docker-compose is not installed here");
      return;
    }
    execFileSync("docker-compose", ["-f", `${root}/docker-compose.yml`, "config", "-q"], { stdio: "pipe" });
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
    const config = load("observability/prometheus.yml") as {
      scrape_configs: {
        metrics_path?: string;
        static_configs: { targets: string[]; labels?: Record<string, string> }[];
      }[];
    };
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
    assert.deepEqual([...scraped].sort(), ["gateway", "profiles", "users"]);
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

  it("every dashboard query names only metrics the services export, through the provisioned datasource", async () => {
    const dashboard = JSON.parse(readFileSync(`${root}/observability/grafana/dashboards/rpc-chain.json`, "utf8")) as {
      panels: { type: string; title: string; datasource?: { uid: string }; targets?: { expr: string }[] }[];
    };
    const exported = await exportedMetricNames();
    const panels = dashboard.panels.filter((p) => p.type !== "row");
    assert.ok(panels.length >= 6);
    for (const panel of panels) {
      assert.equal(panel.datasource?.uid, "prometheus", `${panel.title}: datasource`);
      assert.ok(panel.targets && panel.targets.length > 0, `${panel.title}: has queries`);
      for (const { expr } of panel.targets) {
        const metrics = metricNamesIn(expr);
        assert.ok(metrics.length > 0, `${panel.title}: ${expr} selects a metric`);
        for (const metric of metrics) assert.ok(exported.has(metric), `${panel.title}: ${metric} is exported`);
      }
    }
  });
});
