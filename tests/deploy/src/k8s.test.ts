import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { parse } from "yaml";
import { envOf as containerEnv, kubectlMissing, type Obj, overlays, render, root } from "./k8s-render.ts";
import { schemaProblems } from "./k8s-schema.ts";

const NAMESPACE = "rpc-chain";

/**
 * What the call graph derived from the manifests (each *_ADDR: the Deployment
 * that reads it → the Deployment behind the Service it names) must be.
 */
const CHAIN = ["gateway→profiles", "profiles→users"];
/** The one Deployment nobody in the cluster calls: the public edge. */
const EDGE = "gateway";
/** Cluster DNS: CoreDNS pods keep kube-dns's label, in kube-system. */
const DNS_PEER = "ns{kubernetes.io/metadata.name=kube-system} pods{k8s-app=kube-dns}";
/** The one Deployment with a database (DATABASE_URL, always from a Secret). */
const DATABASE_CLIENT = "users";
/**
 * Where DATABASE_URL comes from when the overlay renders no such Secret: the
 * one the operator creates for a managed database outside the cluster
 * (overlays/production), reached on PostgreSQL's port at an address the
 * operator narrows the egress to (until then: any, IPv4 and IPv6; a fork
 * that narrows database-egress.yaml narrows MANAGED_DATABASE_PEERS with it).
 */
const OPERATOR_DATABASE_SECRET = { name: "users-database", key: "url" };
const MANAGED_DATABASE_PEERS = ["ip{0.0.0.0/0}", "ip{::/0}"];
const MANAGED_DATABASE_PORT = 5432;
/** The volume types the restricted Pod Security Standard allows. */
const RESTRICTED_VOLUMES = [
  "configMap",
  "csi",
  "downwardAPI",
  "emptyDir",
  "ephemeral",
  "persistentVolumeClaim",
  "projected",
  "secret",
];

/** docker-compose.yml's PostgreSQL image (`postgres:${POSTGRES_TAG:-<tag>}`) with its default tag: the cluster runs the same. */
const COMPOSE_POSTGRES_IMAGE = (() => {
  const compose = parse(readFileSync(`${root}/docker-compose.yml`, "utf8"), { merge: true });
  return String(compose.services.postgres.image).replace(/\$\{\w+:-([^}]*)\}/g, "$1");
})();

const overlayNames = kubectlMissing ? [] : overlays();

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

describe("k8s/overlays", { skip: kubectlMissing }, () => {
  it("finds every overlay with a kustomization", () => {
    assert.ok(overlayNames.includes("local") && overlayNames.includes("production"), overlayNames.join());
  });

  it("refuses fields the Kubernetes schema does not define (a check of the check)", () => {
    const deployment = render(`${root}/k8s/overlays/${overlayNames[0]}`).find((o) => o.kind === "Deployment");
    assert.deepEqual(schemaProblems(deployment), []);
    const typo = structuredClone(deployment);
    const c = typo.spec.template.spec.containers[0];
    c.readinesProbe = c.readinessProbe;
    delete c.readinessProbe;
    typo.spec.revisionHistoryLimt = 5;
    typo.spec.template.spec.securityContext.runAsNonroot = true;
    assert.deepEqual(schemaProblems(typo).sort(), [
      "/spec/revisionHistoryLimt: not a field of apps/v1 Deployment",
      "/spec/template/spec/containers/0/readinesProbe: not a field of apps/v1 Deployment",
      "/spec/template/spec/securityContext/runAsNonroot: not a field of apps/v1 Deployment",
    ]);
    const wrongType = structuredClone(deployment);
    wrongType.spec.replicas = "three";
    assert.ok(schemaProblems(wrongType).some((p) => p.startsWith("/spec/replicas")));
    // Secret data: base64, in lines as kustomize writes long values, but base64.
    const secret = (value: string) => ({
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "s" },
      data: { k: value },
    });
    const long = Buffer.from("x".repeat(100)).toString("base64");
    assert.deepEqual(schemaProblems(secret(`${long.slice(0, 76)}\n${long.slice(76)}\n`)), []);
    assert.deepEqual(schemaProblems(secret("not base64!")), ['/data/k: format {"format":"byte"}']);
  });
});

for (const overlay of overlayNames) {
  describe(`k8s/overlays/${overlay}`, () => {
    const objects = render(`${root}/k8s/overlays/${overlay}`);
    const of = (kind: string) => objects.filter((o) => o.kind === kind);
    const deployments = of("Deployment");
    const statefulSets = of("StatefulSet");
    /** Everything that runs pods: the services (Deployments) and the database (StatefulSet, where the overlay runs one). */
    const workloads = [...deployments, ...statefulSets];
    const services = of("Service");
    const configMaps = of("ConfigMap");
    const secrets = of("Secret");
    const podOf = (d: Obj) => d.spec.template;
    const nameOf = (d: Obj): string => d.metadata.name;
    const initContainers = (d: Obj): Obj[] => podOf(d).spec.initContainers ?? [];
    const containers = (d: Obj): Obj[] => podOf(d).spec.containers;
    /** The app's own container: named after its Deployment. */
    const main = (d: Obj): Obj => {
      const c = containers(d).find((x) => x.name === nameOf(d));
      assert.ok(c, `${nameOf(d)} has a container named ${nameOf(d)}`);
      return c;
    };
    const envOf = (c: Obj) => containerEnv(objects, c);
    /** A container port by number or by name (undefined when the container has no such port). */
    const portOf = (c: Obj, port: string | number): number | undefined =>
      (c.ports ?? []).find((p: Obj) => p.containerPort === port || p.name === port)?.containerPort;
    const deploymentsSelectedBy = (selector: Record<string, string>) =>
      deployments.filter((d) => matches(selector, podOf(d).metadata.labels));
    const workloadsSelectedBy = (selector: Record<string, string>) =>
      workloads.filter((d) => matches(selector, podOf(d).metadata.labels));
    /** Every container of a pod template, init containers first. */
    const allContainers = (d: Obj): Obj[] => [...initContainers(d), ...containers(d)];
    const decode = (value: string) => Buffer.from(value, "base64").toString();
    /**
     * An env var a container reads from a Secret: the reference, the Secret
     * when the overlay renders it, and then the value.
     */
    const fromSecret = (c: Obj, name: string) => {
      const ref = (c.env ?? []).find((e: Obj) => e.name === name)?.valueFrom?.secretKeyRef;
      if (!ref) return undefined;
      const secret: Obj | undefined = secrets.find((s) => s.metadata.name === ref.name);
      const data: string | undefined = secret?.data?.[ref.key];
      return { ref, secret, value: data === undefined ? undefined : decode(data) };
    };
    /**
     * Where users' database is: in the cluster (the StatefulSet behind the
     * Service that DATABASE_URL names, on the port it names) or, when the URL
     * is the operator's, outside it.
     */
    const database = () => {
      const clients = deployments.filter((d) => fromSecret(main(d), "DATABASE_URL"));
      assert.deepEqual(clients.map(nameOf), [DATABASE_CLIENT], "the Deployments with a database");
      const source = fromSecret(main(clients[0]), "DATABASE_URL");
      assert.ok(source);
      if (source.secret === undefined) {
        assert.deepEqual(
          { name: source.ref.name, key: source.ref.key },
          OPERATOR_DATABASE_SECRET,
          "DATABASE_URL from a Secret the overlay does not render: the operator's",
        );
        return { inCluster: false as const };
      }
      assert.ok(source.value, `Secret ${source.ref.name} has the key ${source.ref.key}`);
      const url = new URL(source.value);
      const what = `DATABASE_URL (Secret ${source.ref.name} ${source.ref.key})`;
      assert.equal(url.protocol, "postgres:", `${what}: a postgres:// URL`);
      const host = /^([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local$/.exec(url.hostname);
      assert.ok(host, `${what} names a Service by its cluster DNS name`);
      const [, name, namespace] = host;
      assert.equal(namespace, NAMESPACE, `${what}: the namespace`);
      const service = services.find((s) => s.metadata.name === name);
      assert.ok(service, `${what}: Service ${name} exists`);
      assert.equal(service.spec.clusterIP, "None", `${what}: Service ${name} is headless`);
      const servicePort = service.spec.ports.find((p: Obj) => p.port === Number(url.port));
      assert.ok(servicePort, `${what}: ${url.port} is a port of Service ${name}`);
      assert.equal(servicePort.name, "postgres", `${what}: ${url.port} is Service ${name}'s postgres port`);
      const selected = workloadsSelectedBy(service.spec.selector);
      assert.equal(selected.length, 1, `${what}: Service ${name} selects one workload`);
      const server = selected[0] as Obj;
      assert.equal(server.kind, "StatefulSet", `${what}: the database is a StatefulSet`);
      assert.equal(server.spec.serviceName, name, `${what}: Service ${name} governs StatefulSet ${nameOf(server)}`);
      const port = portOf(main(server), servicePort.targetPort);
      assert.equal(port, portOf(main(server), "postgres"), `${what}: ${name}:${url.port} → the postgres containerPort`);
      return { inCluster: true as const, client: nameOf(clients[0]), server, url, port: port as number };
    };

    /**
     * The calls the manifests make: each *_ADDR of a Deployment's containers,
     * tied to the Service of the same name (USERS_ADDR → users), to its grpc
     * port, and through it to the rpc containerPort of the Deployment it selects.
     */
    const callGraph = () => {
      const calls: { from: string; to: string; port: number }[] = [];
      for (const d of deployments) {
        for (const c of [...initContainers(d), ...containers(d)]) {
          for (const [key, value] of Object.entries(envOf(c))) {
            if (!key.endsWith("_ADDR")) continue;
            const what = `${nameOf(d)}/${c.name} ${key}=${value}`;
            const match = /^dns:\/\/\/([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local:(\d+)$/.exec(value);
            assert.ok(match, `${what} is a cluster DNS name (dns:///<service>.<namespace>.svc.cluster.local:<port>)`);
            const [, service, namespace, port] = match;
            assert.equal(namespace, NAMESPACE, `${what}: the namespace`);
            const named = key.slice(0, -"_ADDR".length).toLowerCase().replaceAll("_", "-");
            assert.equal(service, named, `${what}: ${key} names Service ${named}`);
            const target = services.find((s) => s.metadata.name === service);
            assert.ok(target, `${what}: Service ${service} exists`);
            const servicePort = target.spec.ports.find((p: Obj) => p.port === Number(port));
            assert.ok(servicePort, `${what}: ${port} is a port of Service ${service}`);
            assert.equal(servicePort.name, "grpc", `${what}: ${port} is Service ${service}'s grpc port`);
            const callees = deploymentsSelectedBy(target.spec.selector);
            assert.equal(callees.length, 1, `${what}: Service ${service} selects one Deployment`);
            const callee = callees[0] as Obj;
            assert.notEqual(nameOf(callee), nameOf(d), `${what}: no Deployment calls itself`);
            const podPort = portOf(main(callee), servicePort.targetPort);
            assert.equal(
              podPort,
              portOf(main(callee), "rpc"),
              `${what}: ${service}:${port} → ${nameOf(callee)}'s rpc port`,
            );
            assert.equal(podPort, Number(envOf(main(callee)).PORT), `${what}: ${nameOf(callee)} listens there (PORT)`);
            calls.push({ from: nameOf(d), to: nameOf(callee), port: podPort as number });
          }
        }
      }
      return calls;
    };

    it("renders objects that validate strictly against the Kubernetes schema, all in the namespace", () => {
      assert.ok(objects.length >= 20, `${objects.length} objects`);
      for (const o of objects) {
        assert.deepEqual(schemaProblems(o), [], `${o.kind}/${o.metadata?.name}`);
        if (o.kind === "Namespace") assert.equal(o.metadata.name, NAMESPACE);
        else assert.equal(o.metadata.namespace, NAMESPACE, `${o.kind}/${o.metadata.name}`);
      }
      assert.equal(of("Namespace").length, 1, "the overlay creates its namespace");
    });

    it("labels everything app.kubernetes.io/*, Namespaces included, and pins every image to the version's tag", () => {
      for (const o of objects) {
        const what = `${o.kind}/${o.metadata.name}`;
        assert.equal(o.metadata.labels?.["app.kubernetes.io/part-of"], "rpc-chain", what);
        assert.equal(o.metadata.labels?.["app.kubernetes.io/managed-by"], "kustomize", what);
      }
      const [ns] = of("Namespace");
      assert.equal(ns.metadata.labels["pod-security.kubernetes.io/enforce"], "restricted", "restricted pods only");
      for (const d of deployments) {
        const labels = podOf(d).metadata.labels;
        assert.equal(d.metadata.labels["app.kubernetes.io/name"], nameOf(d));
        assert.equal(labels["app.kubernetes.io/name"], nameOf(d));
        assert.match(labels["app.kubernetes.io/version"] ?? "", /^[0-9]+\.[0-9]+\.[0-9]+$/, `${nameOf(d)} version`);
        for (const c of [...initContainers(d), ...containers(d)]) {
          const image: string = c.image;
          assert.match(
            image,
            /^[a-z0-9.-]+(?::[0-9]+)?(?:\/[a-z0-9._-]+)+:[0-9]+\.[0-9]+\.[0-9]+$/,
            `${nameOf(d)}/${c.name}`,
          );
          assert.ok(
            image.endsWith(`:${labels["app.kubernetes.io/version"]}`),
            `${nameOf(d)}/${c.name}: ${image} is version ${labels["app.kubernetes.io/version"]}`,
          );
        }
        assert.match(main(d).image, new RegExp(`(^|/)rpc-chain/${nameOf(d)}:`), `${nameOf(d)} runs its own image`);
      }
      // Third-party images (the database): an exact version and variant, the version label that version.
      for (const s of statefulSets) {
        const labels = podOf(s).metadata.labels;
        assert.equal(s.metadata.labels["app.kubernetes.io/name"], nameOf(s));
        assert.equal(labels["app.kubernetes.io/name"], nameOf(s));
        for (const c of allContainers(s)) {
          const version = /^[a-z0-9][a-z0-9./-]*:(\d+\.\d+(?:\.\d+)?)(?:-[a-z0-9]+)?$/.exec(c.image)?.[1];
          assert.ok(version, `${nameOf(s)}/${c.name}: ${c.image} is pinned to a version`);
          assert.equal(labels["app.kubernetes.io/version"], version, `${nameOf(s)}/${c.name}: the version label`);
        }
      }
    });

    it("selects the pods of exactly one Deployment or StatefulSet with each Service, on ports the pods open", () => {
      for (const s of services) {
        const selected = workloadsSelectedBy(s.spec.selector);
        assert.equal(selected.length, 1, `Service ${s.metadata.name} selects one workload`);
        const d = selected[0] as Obj;
        const ports: Obj[] = containers(d).flatMap((c) => c.ports ?? []);
        for (const p of s.spec.ports) {
          assert.ok(p.name, `Service ${s.metadata.name} port ${p.port} is named`);
          const target = ports.find((c) => c.name === p.targetPort || c.containerPort === p.targetPort);
          assert.ok(target, `Service ${s.metadata.name} targetPort ${p.targetPort} is a containerPort`);
          assert.equal(target.containerPort, p.port, `Service ${s.metadata.name} port ${p.port} = containerPort`);
          assert.equal(p.protocol, target.protocol ?? "TCP", `Service ${s.metadata.name} port ${p.port} protocol`);
          // Outside the cluster: the public port only, never the admin port (metrics, /debug).
          if (s.spec.type === "NodePort" || s.spec.type === "LoadBalancer") {
            assert.equal(nameOf(d), EDGE, `Service ${s.metadata.name}: only the edge is exposed`);
            assert.equal(target.name, "rpc", `Service ${s.metadata.name} exposes ${p.name} (${target.name}) outside`);
          } else {
            assert.equal(p.nodePort, undefined, `Service ${s.metadata.name} port ${p.name}: no nodePort`);
          }
        }
      }
      for (const d of workloads.filter((x) => nameOf(x) !== EDGE)) {
        const s = services.find((x) => x.metadata.name === nameOf(d));
        assert.equal(s?.spec.clusterIP, "None", `${nameOf(d)} is headless`);
      }
      // A StatefulSet's governing Service: the one of its name, selecting it.
      for (const d of statefulSets) assert.equal(d.spec.serviceName, nameOf(d), `${nameOf(d)}: serviceName`);
    });

    it("gives every container its probes, resources and restricted securityContext, every pod a graceful stop", () => {
      for (const d of workloads) {
        const pod = podOf(d).spec;
        const name = nameOf(d);
        assert.equal(pod.securityContext?.runAsNonRoot, true, `${name}: pod runAsNonRoot`);
        assert.ok(pod.securityContext?.runAsUser > 0, `${name}: a non-root uid, so that runAsNonRoot can be checked`);
        assert.equal(pod.securityContext?.seccompProfile?.type, "RuntimeDefault", `${name}: seccomp`);
        assert.equal(pod.automountServiceAccountToken, false, `${name} mounts no token`);
        for (const host of ["hostNetwork", "hostPID", "hostIPC"]) assert.notEqual(pod[host], true, `${name}: ${host}`);
        for (const v of pod.volumes ?? []) {
          const types = Object.keys(v).filter((k) => k !== "name");
          assert.equal(types.length, 1, `${name} volume ${v.name}: one type`);
          assert.ok(
            RESTRICTED_VOLUMES.includes(types[0] as string),
            `${name} volume ${v.name}: ${types[0]} is restricted-safe`,
          );
        }
        for (const c of allContainers(d)) {
          const who = `${name}/${c.name}`;
          assert.ok(c.resources?.requests?.cpu && c.resources.requests.memory, `${who} requests`);
          assert.ok(c.resources?.limits?.cpu && c.resources.limits.memory, `${who} limits`);
          const sc = c.securityContext ?? {};
          assert.equal(sc.runAsNonRoot ?? pod.securityContext.runAsNonRoot, true, `${who} runAsNonRoot`);
          assert.equal(sc.readOnlyRootFilesystem, true, `${who} readOnlyRootFilesystem`);
          assert.equal(sc.allowPrivilegeEscalation, false, `${who} allowPrivilegeEscalation`);
          assert.notEqual(sc.privileged, true, `${who} privileged`);
          assert.deepEqual(sc.capabilities?.drop, ["ALL"], `${who} drops ALL capabilities`);
          assert.equal(sc.capabilities?.add, undefined, `${who} adds no capability`);
          assert.equal(sc.seccompProfile?.type ?? "RuntimeDefault", "RuntimeDefault", `${who} seccomp`);
          assert.ok(sc.runAsUser === undefined || sc.runAsUser > 0, `${who} runAsUser`);
          for (const p of c.ports ?? []) assert.equal(p.hostPort, undefined, `${who} port ${p.name}: no hostPort`);
          // A plain init container runs to completion: no probes, no ports, no stop.
          if (initContainers(d).includes(c) && c.restartPolicy !== "Always") continue;
          for (const kind of ["startupProbe", "readinessProbe", "livenessProbe"]) {
            assert.ok(c[kind], `${who} ${kind}`);
            const handlers = ["grpc", "httpGet", "tcpSocket", "exec"].filter((h) => c[kind][h]);
            assert.equal(handlers.length, 1, `${who} ${kind}: one handler`);
          }
          // The database's probes and stop are its own: checked with it, below.
          if (d.kind !== "Deployment") continue;

          const env = envOf(c);
          const rpc = portOf(c, "rpc");
          const admin = portOf(c, "admin");
          assert.equal(rpc, Number(env.PORT), `${who}: containerPort rpc = PORT`);
          assert.equal(admin, Number(env.ADMIN_PORT), `${who}: containerPort admin = ADMIN_PORT`);
          for (const kind of ["startupProbe", "readinessProbe", "livenessProbe"]) {
            const p = c[kind];
            assert.ok(p, `${who} ${kind}`);
            const handlers = ["grpc", "httpGet", "tcpSocket", "exec"].filter((h) => p[h]);
            assert.equal(handlers.length, 1, `${who} ${kind}: one handler`);
            if (kind === "livenessProbe") {
              // Alive while the event loop answers, draining or not: never the gRPC health (NOT_SERVING while draining).
              assert.ok(p.httpGet, `${who} ${kind}: httpGet`);
              assert.equal(p.httpGet.path, "/healthz", `${who} ${kind} path`);
            } else if (p.grpc) {
              assert.equal(p.grpc.port, rpc, `${who} ${kind}: the gRPC probe dials the gRPC port (rpc, ${rpc})`);
              assert.ok(!p.grpc.service, `${who} ${kind}: the server's overall health`);
              continue;
            } else {
              assert.ok(p.httpGet, `${who} ${kind}: grpc or httpGet`);
              assert.equal(p.httpGet.path, "/readyz", `${who} ${kind} path`);
            }
            assert.equal(portOf(c, p.httpGet.port), admin, `${who} ${kind}: HTTP probes go to the admin port`);
            assert.equal(p.httpGet.scheme ?? "HTTP", "HTTP", `${who} ${kind}: plain HTTP`);
          }
          const preStop = c.lifecycle?.preStop?.exec?.command;
          assert.deepEqual(preStop?.slice(0, 1), ["sleep"], `${who}: a preStop delay`);
          const preStopSeconds = Number(preStop[1]);
          assert.ok(preStopSeconds >= 1, `${who}: preStop ${preStop[1]} s`);
          const drainMs = Number(env.SHUTDOWN_DRAIN_DELAY_MS) + Number(env.SHUTDOWN_TIMEOUT_MS);
          assert.ok(drainMs > 0, `${who}: drain settings`);
          assert.ok(
            pod.terminationGracePeriodSeconds * 1000 > preStopSeconds * 1000 + drainMs,
            `${who}: grace ${pod.terminationGracePeriodSeconds}s > preStop ${preStopSeconds}s + drain ${drainMs} ms`,
          );
        }
      }
    });

    it("caps Node's heap so that each service stays inside its container's memory limit", () => {
      const image = /^ENV NODE_OPTIONS="([^"]*)"$/m.exec(readFileSync(`${root}/Dockerfile`, "utf8"))?.[1];
      assert.ok(image, "the Dockerfile sets NODE_OPTIONS");
      // Every container that runs the app's image (the migrate init container too: the same Node flags).
      for (const d of deployments) {
        for (const c of allContainers(d).filter((x) => x.image === main(d).image)) {
          const who = `${nameOf(d)}/${c.name}`;
          const options: string = c.env?.find((e: Obj) => e.name === "NODE_OPTIONS")?.value ?? image;
          const flag = (name: string) => Number(new RegExp(`--${name}=(\\d+)`).exec(options)?.[1]);
          const oldSpace = flag("max-old-space-size");
          const semiSpace = flag("max-semi-space-size");
          assert.ok(oldSpace > 0 && semiSpace > 0, `${who}: both heap caps in "${options}"`);
          // Old space at most 75% of the limit; with the young generation (two semi-spaces) at most 90%,
          // leaving the rest for code, buffers and native memory.
          const limit = mebibytes(c.resources.limits.memory);
          assert.ok(oldSpace <= 0.75 * limit, `${who}: old space ${oldSpace} MB, limit ${limit} MiB`);
          assert.ok(
            oldSpace + 2 * semiSpace <= 0.9 * limit,
            `${who}: heap ${oldSpace + 2 * semiSpace} MB, limit ${limit} MiB`,
          );
        }
      }
    });

    it("ties every *_ADDR to its own Service's grpc port and to the Deployment that reads it: the chain", () => {
      const calls = callGraph();
      assert.deepEqual(calls.map((c) => `${c.from}→${c.to}`).sort(), [...CHAIN].sort());
      // No address is left in a ConfigMap that no pod reads.
      const read = new Set(deployments.flatMap((d) => containers(d).flatMap((c) => Object.keys(envOf(c)))));
      for (const m of configMaps) {
        for (const key of Object.keys(m.data ?? {}).filter((k) => k.endsWith("_ADDR"))) {
          assert.ok(read.has(key), `${m.metadata.name} ${key} is read by a pod`);
        }
      }
    });

    it("mounts the auth-keys Secret in every pod, points every service at one key file in it, keeps no real secret", () => {
      const secrets = of("Secret");
      for (const d of deployments) {
        const name = nameOf(d);
        const volume = podOf(d).spec.volumes.find((v: Obj) => v.name === "auth-keys");
        assert.equal(volume?.secret?.optional, true, `${name}: auth-keys volume`);
        const mount = main(d).volumeMounts.find((m: Obj) => m.name === "auth-keys");
        assert.equal(mount?.readOnly, true, `${name}: auth-keys mounted read-only`);
        const env = envOf(main(d));
        const files = ["AUTH_JWT_SECRET_FILE", "AUTH_JWKS_FILE"].filter((k) => env[k]);
        assert.equal(files.length, 1, `${name}: one key file`);
        assert.ok(env[files[0] as string]?.startsWith(`${mount.mountPath}/`), `${name}: key file in the mount`);
        assert.ok(env.AUTH_ISSUER && env.AUTH_AUDIENCE, `${name}: issuer and audience`);
        if (secrets.length > 0) {
          assert.ok(
            secrets.some((s) => s.metadata.name === volume.secret.secretName),
            `${name}: mounts the generated Secret`,
          );
        }
      }
      if (overlay === "production") {
        assert.equal(secrets.length, 0, "production keys come from the cluster, never from the repo");
      }
      for (const s of secrets) {
        for (const [key, value] of Object.entries(s.data as Record<string, string>)) {
          assert.match(Buffer.from(value, "base64").toString(), /demo-only-NOT-A-SECRET/, `${s.metadata.name} ${key}`);
        }
      }
    });

    it("reads DATABASE_URL from a Secret, and migrates first in an init container with users' image, env, files and securityContext", () => {
      const readers = workloads.flatMap((d) =>
        allContainers(d)
          .filter((c) => (c.env ?? []).some((e: Obj) => e.name === "DATABASE_URL"))
          .map((c) => `${nameOf(d)}/${c.name}`),
      );
      assert.deepEqual(readers.sort(), [`${DATABASE_CLIENT}/migrate`, `${DATABASE_CLIENT}/${DATABASE_CLIENT}`]);
      const users = deployments.find((d) => nameOf(d) === DATABASE_CLIENT);
      const app = main(users);
      const source = fromSecret(app, "DATABASE_URL");
      assert.ok(source, "DATABASE_URL from a secretKeyRef");
      assert.notEqual(source.ref.optional, true, "users does not start without it");
      if (overlay === "production") {
        assert.deepEqual({ name: source.ref.name, key: source.ref.key }, OPERATOR_DATABASE_SECRET);
        assert.equal(source.secret, undefined, "the operator creates it, never the repo");
      } else {
        assert.ok(source.secret, `Secret ${source.ref.name} is rendered`);
        assert.ok(source.value, `Secret ${source.ref.name} has the key ${source.ref.key}`);
      }

      // Before users starts, in every pod: a plain init container (runs to completion, or the pod never serves).
      assert.deepEqual(
        initContainers(users).map((c) => c.name),
        ["migrate"],
      );
      const migrate = initContainers(users)[0];
      assert.deepEqual(migrate.command, ["node", "dist/migrate.js"]);
      assert.equal(migrate.args, undefined);
      assert.equal(migrate.restartPolicy, undefined, "not a sidecar");
      for (const field of ["image", "imagePullPolicy", "envFrom", "env", "securityContext", "volumeMounts"]) {
        assert.deepEqual(migrate[field], app[field], `migrate's ${field} is users'`);
      }
      assert.ok(migrate.resources?.limits?.memory, "migrate's resources");
      for (const probe of ["startupProbe", "readinessProbe", "livenessProbe", "lifecycle", "ports"]) {
        assert.equal(migrate[probe], undefined, `migrate has no ${probe}`);
      }
    });

    it("refers only to Secrets and keys that exist (or to the operator's), and keeps every password out of ConfigMaps and plain env", () => {
      for (const d of workloads) {
        for (const c of allContainers(d)) {
          for (const e of c.env ?? []) {
            const who = `${nameOf(d)}/${c.name} ${e.name}`;
            const ref = e.valueFrom?.secretKeyRef;
            if (/PASSWORD|DATABASE_URL/.test(e.name)) assert.ok(ref, `${who}: from a Secret`);
            if (!ref) continue;
            const secret = secrets.find((x) => x.metadata.name === ref.name);
            if (secret) {
              assert.ok(ref.key in (secret.data ?? {}), `${who}: Secret ${ref.name} has the key ${ref.key}`);
            } else {
              assert.equal(overlay, "production", `${who}: Secret ${ref.name} is rendered`);
              assert.deepEqual({ name: ref.name, key: ref.key }, OPERATOR_DATABASE_SECRET, `${who}: the operator's`);
            }
          }
          for (const from of c.envFrom ?? [])
            assert.equal(from.secretRef, undefined, `${nameOf(d)}/${c.name}: no envFrom Secret`);
        }
      }
      // Every value of every Secret (and the password inside any URL there) stays out of ConfigMaps and plain env values.
      const secretValues = secrets.flatMap((x) =>
        Object.values((x.data ?? {}) as Record<string, string>).flatMap((v) => {
          const value = decode(v);
          const url = URL.canParse(value) ? new URL(value) : undefined;
          return url?.password ? [value, decodeURIComponent(url.password)] : [value];
        }),
      );
      const plain: [string, string][] = [
        ...configMaps.flatMap((m) =>
          Object.entries((m.data ?? {}) as Record<string, string>).map(
            ([k, v]) => [`ConfigMap ${m.metadata.name} ${k}`, `${k}=${v}`] as [string, string],
          ),
        ),
        ...workloads.flatMap((d) =>
          allContainers(d).flatMap((c) =>
            (c.env ?? [])
              .filter((e: Obj) => typeof e.value === "string")
              .map((e: Obj) => [`${nameOf(d)}/${c.name} env ${e.name}`, `${e.name}=${e.value}`] as [string, string]),
          ),
        ),
      ];
      for (const [where, text] of plain) {
        assert.doesNotMatch(text, /^[^=]*(PASSWORD|DATABASE_URL)[^=]*=/, `${where}: a Secret's business`);
        assert.doesNotMatch(text, /:\/\/[^/\s:@]*:[^/\s@]+@/, `${where}: no URL with a password`);
        for (const secret of secretValues) assert.ok(!text.includes(secret), `${where}: no Secret's value`);
      }
    });

    if (overlay === "production") {
      it("runs no database in the cluster: users' is the operator's, outside", () => {
        assert.deepEqual(statefulSets.map(nameOf), []);
        assert.equal(database().inCluster, false);
      });
    } else {
      it("runs users' PostgreSQL: a StatefulSet on a claimed volume behind the headless Service DATABASE_URL names", () => {
        const db = database();
        assert.ok(db.inCluster, "the database in the cluster");
        const { server, url, port } = db;
        const c = main(server);
        const pod = podOf(server).spec;
        assert.equal(server.spec.replicas, 1, "one server: no replication here");
        assert.equal(c.image, COMPOSE_POSTGRES_IMAGE, "the image and tag docker-compose.yml runs");
        assert.equal(port, 5432, "PostgreSQL's port (PGPORT unset)");
        const env = envOf(c);
        assert.equal(env.PGPORT, undefined);
        assert.deepEqual(
          containers(server).map((x) => x.name),
          [nameOf(server)],
        );
        assert.deepEqual(initContainers(server), []);

        // The URL's user, password and database are the ones the image creates on the first start.
        assert.equal(decodeURIComponent(url.username), env.POSTGRES_USER, "DATABASE_URL's user");
        assert.equal(url.pathname, `/${env.POSTGRES_DB}`, "DATABASE_URL's database");
        const password = fromSecret(c, "POSTGRES_PASSWORD");
        assert.ok(password?.value, "POSTGRES_PASSWORD from a rendered Secret");
        assert.equal(decodeURIComponent(url.password), password.value, "DATABASE_URL's password");
        assert.match(password.value, /demo-only-NOT-A-SECRET/, "an obviously fake password");

        // The image's postgres user (uid/gid 999) owns the claimed volume.
        assert.equal(pod.securityContext.runAsUser, 999);
        assert.equal(pod.securityContext.runAsGroup, 999);
        assert.equal(pod.securityContext.fsGroup, 999);
        const claims: Obj[] = server.spec.volumeClaimTemplates ?? [];
        assert.equal(claims.length, 1, "one claim per replica");
        const claim = claims[0];
        assert.deepEqual(claim.spec.accessModes, ["ReadWriteOnce"]);
        assert.ok(claim.spec.resources.requests.storage, "a size");
        const mounts: Obj[] = c.volumeMounts ?? [];
        const data = mounts.find((m) => m.name === claim.metadata.name);
        assert.ok(data, `the claim ${claim.metadata.name} is mounted`);
        assert.equal(data.readOnly, undefined);
        assert.equal(data.subPath, undefined);
        assert.ok(
          env.PGDATA?.startsWith(`${data.mountPath}/`),
          `PGDATA ${env.PGDATA} is a directory inside the volume`,
        );
        // Everything else it writes goes to emptyDirs: the root filesystem is read-only.
        const volumes: Obj[] = pod.volumes ?? [];
        for (const m of mounts.filter((x) => x !== data)) {
          assert.ok(volumes.find((v) => v.name === m.name)?.emptyDir, `${m.mountPath}: an emptyDir`);
        }
        assert.deepEqual(
          mounts
            .filter((x) => x !== data)
            .map((m) => m.mountPath)
            .sort(),
          ["/tmp", "/var/run/postgresql"],
          "the socket directory and /tmp",
        );

        // Ready, alive and started: the server accepts connections over TCP on its port.
        const isReady = [
          "pg_isready",
          "-h",
          "127.0.0.1",
          "-p",
          String(port),
          "-U",
          env.POSTGRES_USER,
          "-d",
          env.POSTGRES_DB,
        ];
        for (const kind of ["startupProbe", "readinessProbe", "livenessProbe"]) {
          assert.deepEqual(c[kind].exec?.command, isReady, `${kind}`);
          assert.ok(c[kind].timeoutSeconds >= 3, `${kind}: time for pg_isready's own timeout`);
        }
        assert.deepEqual(c.lifecycle?.preStop?.exec?.command, ["pg_ctl", "stop", "--mode=fast", "--wait"]);
        assert.ok(pod.terminationGracePeriodSeconds >= 30, "time for the shutdown checkpoint");
        assert.equal(c.imagePullPolicy, "IfNotPresent", "the official image, pulled once");
      });
    }

    it("denies by default and allows exactly the calls of the chain, users' database, the edge, DNS and OTLP", () => {
      const policies = of("NetworkPolicy");
      const deny = policies.filter(
        (p) => Object.keys(p.spec.podSelector).length === 0 && !p.spec.ingress && !p.spec.egress,
      );
      assert.equal(deny.length, 1, "one default deny");
      assert.deepEqual(deny[0].spec.policyTypes, ["Ingress", "Egress"], "the default deny covers both directions");

      const selector = (s: Obj, what: string): string => {
        assert.ok(s, `${what}: a selector`);
        assert.equal(s.matchExpressions, undefined, `${what}: matchLabels only`);
        const labels = Object.entries(s.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`);
        return `{${labels.sort().join(",")}}`;
      };
      /**
       * A peer: pods of this namespace, or pods of the namespaces a namespaceSelector picks;
       * an address block only where the expected list has one (a managed database outside the cluster).
       */
      const peer = (p: Obj, what: string): string => {
        if (p.ipBlock) {
          assert.ok(!p.podSelector && !p.namespaceSelector, `${what}: an ipBlock alone`);
          assert.equal(p.ipBlock.except, undefined, `${what}: no except`);
          return `ip{${p.ipBlock.cidr}}`;
        }
        assert.ok(p.podSelector || p.namespaceSelector, `${what}: an empty peer`);
        const pods = `pods${p.podSelector ? selector(p.podSelector, what) : "{}"}`;
        return p.namespaceSelector ? `ns${selector(p.namespaceSelector, what)} ${pods}` : pods;
      };
      const portsOf = (rule: Obj, what: string): string[] => {
        assert.ok(rule.ports?.length, `${what}: names its ports (none means every port)`);
        return rule.ports.map((p: Obj) => {
          assert.ok(p.protocol === "TCP" || p.protocol === "UDP", `${what}: port ${p.port} states its protocol`);
          assert.equal(typeof p.port, "number", `${what}: port ${p.port} by number`);
          assert.equal(p.endPort, undefined, `${what}: no port ranges`);
          return `${p.protocol}/${p.port}`;
        });
      };

      const allowed: string[] = [];
      for (const p of policies) {
        const name = `NetworkPolicy ${p.metadata.name}`;
        const subject = `pods${selector(p.spec.podSelector, name)}`;
        const types: string[] = p.spec.policyTypes ?? [];
        if (p.spec.ingress) assert.ok(types.includes("Ingress"), `${name}: policyTypes has Ingress`);
        if (p.spec.egress) assert.ok(types.includes("Egress"), `${name}: policyTypes has Egress`);
        const labels = p.spec.podSelector.matchLabels ?? {};
        assert.ok(workloadsSelectedBy(labels).length > 0, `${name} applies to pods of a Deployment or StatefulSet`);
        (p.spec.egress ?? []).forEach((rule: Obj, i: number) => {
          const what = `${name} egress[${i}]`;
          assert.ok(rule.to?.length, `${what}: no peers (to) allows every destination`);
          for (const to of rule.to)
            for (const port of portsOf(rule, what)) allowed.push(`egress ${subject} → ${peer(to, what)} ${port}`);
        });
        (p.spec.ingress ?? []).forEach((rule: Obj, i: number) => {
          const what = `${name} ingress[${i}]`;
          // No peers (from) allows every source: only the edge's public port may, checked below.
          const sources = rule.from?.length ? rule.from.map((f: Obj) => peer(f, what)) : ["anyone"];
          for (const from of sources)
            for (const port of portsOf(rule, what)) allowed.push(`ingress ${subject} ← ${from} ${port}`);
        });
      }

      const app = (name: string) => `pods{app.kubernetes.io/name=${name}}`;
      const calls = callGraph();
      const called = new Set(calls.map((c) => c.to));
      // Nobody in the cluster calls the edge. A backend nobody calls yet (a new service before its
      // first caller) is reachable by no one: the rules expected below give it no ingress at all.
      const edges = deployments.filter((d) => nameOf(d) === EDGE);
      assert.equal(edges.length, 1, `one Deployment ${EDGE}`);
      assert.ok(!called.has(EDGE), "nobody in the cluster calls the edge");
      for (const d of deployments.filter((x) => !called.has(nameOf(x)) && nameOf(x) !== EDGE)) {
        assert.equal(podOf(d).metadata.labels["app.kubernetes.io/component"], "backend", `${nameOf(d)} is a backend`);
      }
      const endpoints = new Set(deployments.map((d) => envOf(main(d)).OTEL_EXPORTER_OTLP_ENDPOINT));
      assert.deepEqual([...endpoints], ["http://otel-collector.observability.svc.cluster.local:4318"], "OTLP endpoint");
      const otlp = /^http:\/\/([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local:(\d+)$/.exec([...endpoints][0] ?? "");
      assert.ok(otlp);
      const [, collector, collectorNamespace, collectorPort] = otlp;
      // users → its database: the StatefulSet DATABASE_URL leads to, on its port, both ways; or, outside
      // the cluster, the managed database's port at the addresses the operator narrows.
      const db = database();
      const databaseRules = db.inCluster
        ? [
            `egress ${app(db.client)} → ${app(nameOf(db.server))} TCP/${db.port}`,
            `ingress ${app(nameOf(db.server))} ← ${app(db.client)} TCP/${db.port}`,
          ]
        : MANAGED_DATABASE_PEERS.map((to) => `egress ${app(DATABASE_CLIENT)} → ${to} TCP/${MANAGED_DATABASE_PORT}`);
      const expected = [
        ...databaseRules,
        ...calls.flatMap((c) => [
          `egress ${app(c.from)} → ${app(c.to)} TCP/${c.port}`,
          `ingress ${app(c.to)} ← ${app(c.from)} TCP/${c.port}`,
        ]),
        `ingress ${app(EDGE)} ← anyone TCP/${portOf(main(edges[0]), "rpc")}`,
        `egress pods{} → ${DNS_PEER} UDP/53`,
        `egress pods{} → ${DNS_PEER} TCP/53`,
        `egress pods{} → ns{kubernetes.io/metadata.name=${collectorNamespace}} ${app(collector as string)} TCP/${collectorPort}`,
      ];
      assert.deepEqual(allowed.sort(), expected.sort());
    });

    if (overlay === "production") {
      it("runs at least three replicas of each, spread, autoscaled and disruption-budgeted", () => {
        for (const d of deployments) {
          const name = nameOf(d);
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
    }
    if (overlay === "local") {
      it("runs one replica of each, from local images, with only the gateway's public port on a NodePort", () => {
        for (const d of deployments) {
          assert.equal(d.spec.replicas, 1);
          for (const c of allContainers(d)) assert.equal(c.imagePullPolicy, "Never", `${nameOf(d)}/${c.name}`);
        }
        for (const d of statefulSets) assert.equal(d.spec.replicas, 1);
        const gateway = services.find((s) => s.metadata.name === "gateway");
        assert.equal(gateway.spec.type, "NodePort");
        assert.deepEqual(
          gateway.spec.ports.map((p: Obj) => `${p.name} ${p.port}→${p.targetPort} node ${p.nodePort}`),
          ["http 8080→rpc node 30080"],
          "the admin port (9080) stays inside the cluster: kubectl port-forward",
        );
        assert.deepEqual(
          services.filter((s) => s.spec.type === "NodePort").map((s) => s.metadata.name),
          ["gateway"],
        );
      });
    }
  });
}
