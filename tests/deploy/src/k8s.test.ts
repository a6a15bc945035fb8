import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { Deployment } from "kubernetes-models/apps/v1";
import { HorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2";
import { NetworkPolicy } from "kubernetes-models/networking.k8s.io/v1";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1";
import { ConfigMap, Namespace, Secret, Service, ServiceAccount } from "kubernetes-models/v1";
import { parseAllDocuments } from "yaml";

const root = fileURLToPath(new URL("../../../", import.meta.url));
const OVERLAYS = ["local", "production"] as const;

/** The calls of the chain: who calls whom, on which port. */
const CHAIN = [
  { from: "gateway", to: "profiles", port: 50052 },
  { from: "profiles", to: "users", port: 50051 },
];

// biome-ignore lint/suspicious/noExplicitAny: rendered manifests are checked field by field below
type Obj = any;

const models: Record<string, new (o: Obj) => { validate(): void }> = {
  "v1/Namespace": Namespace,
  "v1/ServiceAccount": ServiceAccount,
  "v1/ConfigMap": ConfigMap,
  "v1/Secret": Secret,
  "v1/Service": Service,
  "apps/v1/Deployment": Deployment,
  "networking.k8s.io/v1/NetworkPolicy": NetworkPolicy,
  "autoscaling/v2/HorizontalPodAutoscaler": HorizontalPodAutoscaler,
  "policy/v1/PodDisruptionBudget": PodDisruptionBudget,
};

function render(overlay: string): Obj[] {
  const text = execFileSync("kubectl", ["kustomize", `${root}/k8s/overlays/${overlay}`], { encoding: "utf8" });
  return parseAllDocuments(text).map((d) => d.toJS());
}

/** A Kubernetes memory quantity in MiB. */
function mebibytes(quantity: string): number {
  const m = /^(\d+)(Mi|Gi|M|G)?$/.exec(quantity);
  assert.ok(m, `unsupported memory quantity ${quantity}`);
  const n = Number(m[1]);
  const unit = { Mi: 1, Gi: 1024, M: 1e6 / 2 ** 20, G: 1e9 / 2 ** 20 }[m[2] as "Mi"] ?? 1 / 2 ** 20;
  return n * unit;
}

const matches = (selector: Record<string, string>, labels: Record<string, string> = {}) =>
  Object.entries(selector).every(([k, v]) => labels[k] === v);

for (const overlay of OVERLAYS) {
  describe(`k8s/overlays/${overlay}`, () => {
    const objects = render(overlay);
    const of = (kind: string) => objects.filter((o) => o.kind === kind);
    const deployments = of("Deployment");
    const services = of("Service");
    const configMaps = of("ConfigMap");
    const podOf = (d: Obj) => d.spec.template;
    const container = (d: Obj) => podOf(d).spec.containers[0];

    it("renders objects that validate against the Kubernetes schema", () => {
      assert.ok(objects.length >= 20, `${objects.length} objects`);
      for (const o of objects) {
        const Model = models[`${o.apiVersion}/${o.kind}`];
        assert.ok(Model, `a schema for ${o.apiVersion} ${o.kind}`);
        assert.doesNotThrow(() => new Model(o).validate(), `${o.kind}/${o.metadata?.name}`);
        if (o.kind !== "Namespace") assert.equal(o.metadata.namespace, "rpc-chain", `${o.kind}/${o.metadata.name}`);
      }
    });

    it("labels everything app.kubernetes.io/* and pins every image to a tag", () => {
      for (const o of objects.filter((x) => x.kind !== "Namespace")) {
        assert.equal(o.metadata.labels?.["app.kubernetes.io/part-of"], "rpc-chain", `${o.kind}/${o.metadata.name}`);
        assert.equal(o.metadata.labels?.["app.kubernetes.io/managed-by"], "kustomize");
      }
      for (const d of deployments) {
        assert.equal(podOf(d).metadata.labels["app.kubernetes.io/name"], d.metadata.name);
        assert.match(container(d).image, /:[0-9]+\.[0-9]+\.[0-9]+$/, `${d.metadata.name} image tag`);
      }
    });

    it("selects the pods of exactly one Deployment with each Service, on ports the pods open", () => {
      for (const s of services) {
        const selected = deployments.filter((d) => matches(s.spec.selector, podOf(d).metadata.labels));
        assert.equal(selected.length, 1, `Service ${s.metadata.name} selects one Deployment`);
        const ports = container(selected[0]).ports as { name: string; containerPort: number }[];
        for (const p of s.spec.ports) {
          assert.ok(p.name, `Service ${s.metadata.name} port ${p.port} is named`);
          const target = ports.find((c) => c.name === p.targetPort || c.containerPort === p.targetPort);
          assert.ok(target, `Service ${s.metadata.name} targetPort ${p.targetPort} is a containerPort`);
          assert.equal(target.containerPort, p.port, `Service ${s.metadata.name} port ${p.port} = containerPort`);
        }
      }
      for (const name of ["users", "profiles"]) {
        assert.equal(services.find((s) => s.metadata.name === name)?.spec.clusterIP, "None", `${name} is headless`);
      }
    });

    it("gives every pod its probes, resources, restricted securityContext and a graceful stop", () => {
      for (const d of deployments) {
        const pod = podOf(d).spec;
        const c = container(d);
        const name = d.metadata.name;
        const config = configMaps.find((m) => m.metadata.name === c.envFrom?.[0]?.configMapRef?.name);
        assert.ok(config, `${name} reads its ConfigMap`);
        const portOf = (v: string | number) =>
          typeof v === "number" ? v : c.ports.find((p: Obj) => p.name === v)?.containerPort;
        assert.equal(portOf("rpc"), Number(config.data.PORT), `${name}: containerPort rpc = PORT`);
        assert.equal(portOf("admin"), Number(config.data.ADMIN_PORT), `${name}: containerPort admin = ADMIN_PORT`);
        for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"]) {
          const p = c[probe];
          assert.ok(p, `${name} ${probe}`);
          const port = p.grpc?.port ?? portOf(p.httpGet?.port);
          assert.ok(
            c.ports.some((x: Obj) => x.containerPort === port),
            `${name} ${probe} port ${port} is a containerPort`,
          );
          if (p.httpGet) assert.equal(port, portOf("admin"), `${name} ${probe}: HTTP probes go to the admin port`);
        }
        assert.ok(c.resources.requests.cpu && c.resources.requests.memory, `${name} requests`);
        assert.ok(c.resources.limits.cpu && c.resources.limits.memory, `${name} limits`);
        assert.equal(pod.securityContext.runAsNonRoot, true);
        assert.equal(pod.securityContext.seccompProfile.type, "RuntimeDefault");
        assert.equal(pod.automountServiceAccountToken, false, `${name} mounts no token`);
        assert.equal(c.securityContext.readOnlyRootFilesystem, true);
        assert.equal(c.securityContext.allowPrivilegeEscalation, false);
        assert.deepEqual(c.securityContext.capabilities.drop, ["ALL"]);
        const preStopSeconds = Number(c.lifecycle.preStop.exec.command[1]);
        const drainMs = Number(config.data.SHUTDOWN_DRAIN_DELAY_MS) + Number(config.data.SHUTDOWN_TIMEOUT_MS);
        assert.ok(
          pod.terminationGracePeriodSeconds * 1000 > preStopSeconds * 1000 + drainMs,
          `${name}: grace ${pod.terminationGracePeriodSeconds}s > preStop ${preStopSeconds}s + drain ${drainMs} ms`,
        );
      }
    });

    it("caps Node's heap so that each service stays inside its container's memory limit", () => {
      const image = /^ENV NODE_OPTIONS="([^"]*)"$/m.exec(readFileSync(`${root}/Dockerfile`, "utf8"))?.[1];
      assert.ok(image, "the Dockerfile sets NODE_OPTIONS");
      for (const d of deployments) {
        const c = container(d);
        const options: string = c.env?.find((e: Obj) => e.name === "NODE_OPTIONS")?.value ?? image;
        const flag = (name: string) => Number(new RegExp(`--${name}=(\\d+)`).exec(options)?.[1]);
        const oldSpace = flag("max-old-space-size");
        const semiSpace = flag("max-semi-space-size");
        assert.ok(oldSpace > 0 && semiSpace > 0, `${d.metadata.name}: both heap caps in "${options}"`);
        // Old space at most 75% of the limit; with the young generation (two semi-spaces) at most 90%,
        // leaving the rest for code, buffers and native memory.
        const limit = mebibytes(c.resources.limits.memory);
        assert.ok(oldSpace <= 0.75 * limit, `${d.metadata.name}: old space ${oldSpace} MB, limit ${limit} MiB`);
        assert.ok(
          oldSpace + 2 * semiSpace <= 0.9 * limit,
          `${d.metadata.name}: heap ${oldSpace + 2 * semiSpace} MB, limit ${limit} MiB`,
        );
      }
    });

    it("points every *_ADDR at an existing Service's DNS name and port", () => {
      let seen = 0;
      for (const m of configMaps) {
        for (const [key, value] of Object.entries(m.data as Record<string, string>)) {
          if (!key.endsWith("_ADDR")) continue;
          seen++;
          const match = /^dns:\/\/\/([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local:(\d+)$/.exec(value);
          assert.ok(match, `${m.metadata.name} ${key}=${value} is a cluster DNS name, not an IP`);
          const [, service, namespace, port] = match;
          assert.equal(namespace, "rpc-chain");
          const target = services.find((s) => s.metadata.name === service);
          assert.ok(target, `${key} names Service ${service}`);
          assert.ok(
            target.spec.ports.some((p: Obj) => p.port === Number(port)),
            `${key} port ${port} is on ${service}`,
          );
        }
      }
      assert.equal(seen, 2, "USERS_ADDR and PROFILES_ADDR");
    });

    it("mounts the auth-keys Secret in every pod, points every service at one key file in it, keeps no real secret", () => {
      for (const d of deployments) {
        const name = d.metadata.name;
        const volume = podOf(d).spec.volumes.find((v: Obj) => v.name === "auth-keys");
        assert.equal(volume?.secret?.optional, true, `${name}: auth-keys volume`);
        const mount = container(d).volumeMounts.find((m: Obj) => m.name === "auth-keys");
        assert.equal(mount?.readOnly, true, `${name}: auth-keys mounted read-only`);
        const config = configMaps.find((m) => m.metadata.name === container(d).envFrom[0].configMapRef.name);
        const files = ["AUTH_JWT_SECRET_FILE", "AUTH_JWKS_FILE"].filter((k) => config.data[k]);
        assert.equal(files.length, 1, `${name}: one key file`);
        assert.ok(config.data[files[0] as string].startsWith(`${mount.mountPath}/`), `${name}: key file in the mount`);
        assert.ok(config.data.AUTH_ISSUER && config.data.AUTH_AUDIENCE, `${name}: issuer and audience`);
      }
      const secrets = of("Secret");
      if (overlay === "production") {
        assert.equal(secrets.length, 0, "production keys come from the cluster, never from the repo");
      } else {
        const value = Buffer.from(secrets[0].data["jwt-secret"], "base64").toString();
        assert.match(value, /demo-only-NOT-A-SECRET/);
        assert.equal(
          podOf(deployments[0]).spec.volumes.find((v: Obj) => v.name === "auth-keys").secret.secretName,
          secrets[0].metadata.name,
        );
      }
    });

    it("denies by default and allows exactly the chain, DNS and OTLP", () => {
      const policies = of("NetworkPolicy");
      const deny = policies.find(
        (p) => Object.keys(p.spec.podSelector).length === 0 && !p.spec.ingress && !p.spec.egress,
      );
      assert.deepEqual(deny?.spec.policyTypes, ["Ingress", "Egress"], "a default deny");
      const appOf = (selector: Obj) => selector?.matchLabels?.["app.kubernetes.io/name"];
      const egress = new Set<string>();
      const ingress = new Set<string>();
      for (const p of policies) {
        for (const rule of p.spec.egress ?? []) {
          for (const to of rule.to ?? []) {
            if (to.namespaceSelector) continue; // DNS and OTLP, checked below
            for (const port of rule.ports)
              egress.add(`${appOf(p.spec.podSelector)}→${appOf(to.podSelector)}:${port.port}`);
          }
        }
        for (const rule of p.spec.ingress ?? []) {
          for (const port of rule.ports) {
            const from = rule.from?.map((f: Obj) => appOf(f.podSelector)).join() ?? "anyone";
            ingress.add(`${from}→${appOf(p.spec.podSelector)}:${port.port}`);
          }
        }
      }
      const chain = CHAIN.map((e) => `${e.from}→${e.to}:${e.port}`);
      assert.deepEqual([...egress].sort(), [...chain].sort(), "egress: exactly the chain");
      assert.deepEqual(
        [...ingress].sort(),
        [...chain, "anyone→gateway:8080"].sort(),
        "ingress: the chain and the edge",
      );
      const namespaced = policies.flatMap((p) =>
        (p.spec.egress ?? []).flatMap((r: Obj) =>
          (r.to ?? [])
            .filter((t: Obj) => t.namespaceSelector)
            .map(
              (t: Obj) =>
                `${t.namespaceSelector.matchLabels["kubernetes.io/metadata.name"]}:${r.ports.map((x: Obj) => `${x.protocol}/${x.port}`).join(",")}`,
            ),
        ),
      );
      assert.deepEqual(namespaced.sort(), ["kube-system:UDP/53,TCP/53", "observability:TCP/4318"]);
      for (const c of configMaps) {
        assert.equal(c.data.OTEL_EXPORTER_OTLP_ENDPOINT, "http://otel-collector.observability.svc.cluster.local:4318");
      }
      // Every chain edge's ports are the callee's RPC port.
      for (const edge of CHAIN) {
        const callee = deployments.find((d) => d.metadata.name === edge.to);
        assert.equal(container(callee).ports.find((p: Obj) => p.name === "rpc").containerPort, edge.port);
      }
    });

    if (overlay === "production") {
      it("runs at least three replicas of each, spread, autoscaled and disruption-budgeted", () => {
        for (const d of deployments) {
          const name = d.metadata.name;
          assert.equal(d.spec.replicas, undefined, `${name}: the HPA owns replicas`);
          const hpa = of("HorizontalPodAutoscaler").find((h) => h.spec.scaleTargetRef.name === name);
          assert.equal(hpa?.spec.minReplicas, 3, `${name} HPA`);
          const pdb = of("PodDisruptionBudget").find((p) =>
            matches(p.spec.selector.matchLabels, podOf(d).metadata.labels),
          );
          assert.ok(pdb, `${name} PDB`);
          const keys = podOf(d).spec.topologySpreadConstraints.map((t: Obj) => t.topologyKey);
          assert.deepEqual(keys, ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]);
        }
      });
    } else {
      it("runs one replica of each, from local images, with the gateway on a NodePort", () => {
        for (const d of deployments) {
          assert.equal(d.spec.replicas, 1);
          assert.equal(container(d).imagePullPolicy, "Never");
        }
        const gateway = services.find((s) => s.metadata.name === "gateway");
        assert.equal(gateway.spec.type, "NodePort");
        assert.equal(gateway.spec.ports[0].nodePort, 30080);
      });
    }
  });
}
