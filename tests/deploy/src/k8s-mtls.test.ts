import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { after, describe, it } from "node:test";
import { envOf, kubectlMissing, type Obj, overlays, render, root } from "./k8s-render.ts";
import { SCHEMAS, schemaProblems } from "./k8s-schema.ts";

/** An overlay as a user writes one: an existing overlay plus the mtls component (kustomize wants relative paths). */
function renderWithMtls(overlay: string, dir: string): Obj[] {
  writeFileSync(
    join(dir, "kustomization.yaml"),
    [
      "apiVersion: kustomize.config.k8s.io/v1beta1",
      "kind: Kustomization",
      "namespace: rpc-chain",
      "resources:",
      `  - ${relative(dir, join(root, "k8s/overlays", overlay))}`,
      "components:",
      `  - ${relative(dir, join(root, "k8s/components/mtls"))}`,
      "",
    ].join("\n"),
  );
  return render(dir);
}

const tmp = mkdtempSync(join(tmpdir(), "k8s-mtls-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

for (const overlay of kubectlMissing ? [] : overlays()) {
  describe(`k8s/overlays/${overlay} with k8s/components/mtls`, () => {
    const dir = join(tmp, overlay);
    mkdirSync(dir, { recursive: true });
    const objects = renderWithMtls(overlay, dir);
    const of = (kind: string) => objects.filter((o) => o.kind === kind);
    const deployments = of("Deployment");
    const container = (d: Obj) => d.spec.template.spec.containers[0];
    /** A Deployment's settings: its ConfigMaps in envFrom order, the later winning. */
    const settingsOf = (d: Obj) => envOf(objects, container(d));

    it("mounts each service's certificate Secret as a directory and points the TLS_* files into it", () => {
      assert.equal(
        deployments.length,
        render(`${root}/k8s/overlays/${overlay}`).filter((o) => o.kind === "Deployment").length,
      );
      // Strictly valid, every object but cert-manager's (no schema here).
      for (const o of objects.filter((x) => SCHEMAS[`${x.apiVersion}/${x.kind}`])) {
        assert.deepEqual(schemaProblems(o), [], `${o.kind}/${o.metadata.name}`);
      }
      for (const d of deployments) {
        const name = d.metadata.name;
        const volume = d.spec.template.spec.volumes.find((v: Obj) => v.name === "tls");
        assert.equal(volume?.secret?.secretName, `${name}-tls`, `${name} mounts its Secret`);
        const mount = container(d).volumeMounts.find((m: Obj) => m.name === "tls");
        assert.equal(mount.mountPath, "/etc/rpc-tls");
        assert.equal(mount.readOnly, true);
        assert.equal(mount.subPath, undefined, `${name}: no subPath, or kubelet never updates the files`);
        assert.equal(d.spec.template.spec.securityContext.fsGroup, 1000, `${name}: the key is readable by the app`);
        // An init container reads the same ConfigMap (TLS_* included): the same files.
        for (const init of d.spec.template.spec.initContainers ?? []) {
          assert.deepEqual(
            init.volumeMounts,
            container(d).volumeMounts,
            `${name}/${init.name} mounts what ${name} does`,
          );
        }
        const data = settingsOf(d);
        assert.equal(data.TLS_CERT_FILE, "/etc/rpc-tls/tls.crt");
        assert.equal(data.TLS_KEY_FILE, "/etc/rpc-tls/tls.key");
        assert.equal(data.TLS_CA_FILE, "/etc/rpc-tls/ca.crt");
      }
    });

    it("probes the backends on the plain admin port, since kubelet's gRPC probe cannot speak TLS", () => {
      for (const d of deployments) {
        for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"]) {
          const p = container(d)[probe];
          if (d.metadata.labels["app.kubernetes.io/component"] === "edge") {
            // The gateway's public port stays plain: its gRPC probes still work.
            if (p.grpc) assert.equal(p.grpc.port, Number(settingsOf(d).PORT));
            continue;
          }
          assert.equal(p.grpc, undefined, `${d.metadata.name} ${probe} is not a gRPC probe`);
          assert.equal(p.httpGet.port, "admin", `${d.metadata.name} ${probe}`);
          const path = probe === "livenessProbe" ? "/healthz" : "/readyz";
          assert.equal(p.httpGet.path, path, `${d.metadata.name} ${probe} path`);
        }
      }
    });

    it("issues each Secret from one CA, with the DNS name every caller dials", () => {
      const certificates = of("Certificate");
      const issuers = of("Issuer");
      for (const o of [...certificates, ...issuers]) {
        assert.equal(o.metadata.namespace, "rpc-chain");
        assert.equal(o.metadata.labels?.["app.kubernetes.io/part-of"], "rpc-chain");
      }
      const ca = certificates.find((c) => c.spec.isCA);
      assert.ok(
        issuers.some((i) => i.spec.ca?.secretName === ca?.spec.secretName),
        "a CA Issuer on the CA's Secret",
      );
      for (const d of deployments) {
        const cert = certificates.find((c) => c.spec.secretName === `${d.metadata.name}-tls`);
        assert.ok(cert, `a Certificate for ${d.metadata.name}`);
        assert.ok(issuers.some((i) => i.metadata.name === cert.spec.issuerRef.name && i.spec.ca));
        assert.ok(cert.spec.usages.includes("client auth"), `${d.metadata.name} can call`);
        // A backend serves on its mTLS port (nobody may call it yet: a new service before its first caller).
        if (d.metadata.labels["app.kubernetes.io/component"] === "backend") {
          assert.ok(cert.spec.usages.includes("server auth"), `${d.metadata.name} can serve`);
        }
      }
      let dialled = 0;
      for (const m of of("ConfigMap")) {
        for (const [key, value] of Object.entries(m.data as Record<string, string>)) {
          if (!key.endsWith("_ADDR")) continue;
          dialled++;
          const host = /^dns:\/\/\/([^:]+):\d+$/.exec(value)?.[1] ?? "";
          const service = host.split(".")[0];
          const cert = certificates.find((c) => c.spec.secretName === `${service}-tls`);
          assert.ok(cert?.spec.dnsNames.includes(host), `${key}=${value}: ${service}'s certificate names ${host}`);
          assert.ok(cert.spec.usages.includes("server auth"), `${service} can serve`);
        }
      }
      assert.ok(dialled >= 2, `${dialled} addresses`);
    });
  });
}
