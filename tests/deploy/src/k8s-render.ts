/** Rendering k8s/ with `kubectl kustomize`, for the static checks of k8s*.test.ts. */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";

// biome-ignore lint/suspicious/noExplicitAny: rendered manifests are checked field by field
export type Obj = any;

export const root = fileURLToPath(new URL("../../../", import.meta.url));

const KUSTOMIZATION_FILES = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/** Every overlay in k8s/overlays/: each directory holding a kustomization file. */
export function overlays(): string[] {
  const dir = join(root, "k8s/overlays");
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory() && KUSTOMIZATION_FILES.some((f) => existsSync(join(dir, e.name, f))))
    .map((e) => e.name)
    .sort();
}

/**
 * Why the k8s checks cannot run here, or false when they can: they need
 * kubectl (with its built-in kustomize). Without it they are skipped with
 * this reason, unless REQUIRE_KUBECTL=1 (CI), where a missing kubectl fails.
 */
export const kubectlMissing: string | false = (() => {
  const probe = spawnSync("kubectl", ["version", "--client"], { encoding: "utf8" });
  if (probe.status === 0) return false;
  const why = "kubectl is not installed: the k8s/ manifests were not checked (install kubectl to check them)";
  if (process.env.REQUIRE_KUBECTL === "1") throw new Error(`${why}; REQUIRE_KUBECTL=1`);
  return why;
})();

/** The objects `kubectl kustomize dir` renders. */
export function render(dir: string): Obj[] {
  const text = execFileSync("kubectl", ["kustomize", dir], { encoding: "utf8" });
  return parseAllDocuments(text)
    .map((d) => d.toJS())
    .filter((o) => o !== null);
}

/** A container's environment among `objects`: its ConfigMaps (envFrom, the later winning), then its own env values. */
export function envOf(objects: Obj[], c: Obj): Record<string, string> {
  const env: Record<string, string> = {};
  for (const from of c.envFrom ?? []) {
    if (!from.configMapRef) continue;
    const m = objects.find((x) => x.kind === "ConfigMap" && x.metadata.name === from.configMapRef.name);
    assert.ok(m, `${c.name}: ConfigMap ${from.configMapRef.name} exists`);
    Object.assign(env, m.data);
  }
  for (const e of c.env ?? []) if (typeof e.value === "string") env[e.name] = e.value;
  return env;
}
