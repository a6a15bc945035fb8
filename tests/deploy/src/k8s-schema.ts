/**
 * Strict validation of rendered Kubernetes objects against the Kubernetes
 * OpenAPI schema, as kubernetes-models compiles it.
 *
 * kubernetes-models ships the schema only as ajv-compiled validators (no JSON
 * schema objects), and those accept fields the schema does not define, as the
 * API server does: a misspelt `readinesProbe` passes, and the pod silently has
 * no readiness probe. `kubectl apply` refuses such a field (strict field
 * validation); so does this check. The compiled validator reads every field
 * its schema defines, at every level, and enumerates the keys of maps (labels,
 * resources, ConfigMap data); it is run over a proxy that records what it
 * reads, and any field of the object that the schema never asked for is an
 * unknown field.
 */
import { validate as deployment } from "kubernetes-models/_schemas/IoK8sApiAppsV1Deployment";
import { validate as statefulSet } from "kubernetes-models/_schemas/IoK8sApiAppsV1StatefulSet";
import { validate as horizontalPodAutoscaler } from "kubernetes-models/_schemas/IoK8sApiAutoscalingV2HorizontalPodAutoscaler";
import { validate as configMap } from "kubernetes-models/_schemas/IoK8sApiCoreV1ConfigMap";
import { validate as namespace } from "kubernetes-models/_schemas/IoK8sApiCoreV1Namespace";
import { validate as secret } from "kubernetes-models/_schemas/IoK8sApiCoreV1Secret";
import { validate as service } from "kubernetes-models/_schemas/IoK8sApiCoreV1Service";
import { validate as serviceAccount } from "kubernetes-models/_schemas/IoK8sApiCoreV1ServiceAccount";
import { validate as networkPolicy } from "kubernetes-models/_schemas/IoK8sApiNetworkingV1NetworkPolicy";
import { validate as podDisruptionBudget } from "kubernetes-models/_schemas/IoK8sApiPolicyV1PodDisruptionBudget";
import type { Obj } from "./k8s-render.ts";

interface AjvError {
  instancePath: string;
  keyword: string;
  params: Record<string, unknown>;
  message?: string;
}
type Validator = ((data: unknown) => boolean) & { errors?: AjvError[] | null };

/** The schema of each apiVersion/kind the overlays render. */
export const SCHEMAS: Record<string, Validator> = {
  "v1/Namespace": namespace,
  "v1/ServiceAccount": serviceAccount,
  "v1/ConfigMap": configMap,
  "v1/Secret": secret,
  "v1/Service": service,
  "apps/v1/Deployment": deployment,
  "apps/v1/StatefulSet": statefulSet,
  "networking.k8s.io/v1/NetworkPolicy": networkPolicy,
  "autoscaling/v2/HorizontalPodAutoscaler": horizontalPodAutoscaler,
  "policy/v1/PodDisruptionBudget": podDisruptionBudget,
};

/**
 * What is wrong with `o` by its kind's schema: every schema violation, and
 * every field the schema does not define (with its path). Empty when valid.
 */
export function schemaProblems(object: Obj): string[] {
  const o = unwrapSecretData(object);
  const validate = SCHEMAS[`${o?.apiVersion}/${o?.kind}`];
  if (validate === undefined) return [`no schema for ${o?.apiVersion} ${o?.kind}`];
  const read = new Map<object, Set<string>>();
  const enumerated = new Set<object>();
  const proxies = new WeakMap<object, object>();
  const watch = (value: unknown): unknown => {
    if (value === null || typeof value !== "object") return value;
    const known = proxies.get(value);
    if (known) return known;
    read.set(value, new Set());
    const proxy = new Proxy(value, {
      get(target, key, receiver) {
        if (typeof key === "string") read.get(target)?.add(key);
        return watch(Reflect.get(target, key, receiver));
      },
      has(target, key) {
        if (typeof key === "string") read.get(target)?.add(key);
        return Reflect.has(target, key);
      },
      ownKeys(target) {
        // A map (additionalProperties): the validator checks each value itself.
        enumerated.add(target);
        return Reflect.ownKeys(target);
      },
    });
    proxies.set(value, proxy);
    return proxy;
  };
  const problems: string[] = [];
  if (!validate(watch(o))) {
    for (const e of validate.errors ?? []) {
      problems.push(`${e.instancePath || "/"}: ${e.message ?? e.keyword} ${JSON.stringify(e.params)}`);
    }
  }
  const walk = (value: unknown, path: string) => {
    if (value === null || typeof value !== "object") return;
    const asked = read.get(value);
    for (const [key, child] of Object.entries(value)) {
      const at = `${path}/${key}`;
      if (!Array.isArray(value) && !enumerated.has(value) && !asked?.has(key)) {
        problems.push(`${at}: not a field of ${o.apiVersion} ${o.kind}`);
        continue;
      }
      walk(child, at);
    }
  };
  walk(o, "");
  return problems;
}

/**
 * A Secret as the API server decodes it: kustomize writes a long value's
 * base64 in lines of 76 characters, and the server's base64 decoding skips
 * line breaks, while the schema's `byte` format allows none. Anything else
 * that is not base64 still fails.
 */
function unwrapSecretData(o: Obj): Obj {
  if (o?.apiVersion !== "v1" || o?.kind !== "Secret" || typeof o.data !== "object" || o.data === null) return o;
  const data = Object.fromEntries(
    Object.entries(o.data).map(([k, v]) => [k, typeof v === "string" ? v.replace(/\r?\n/g, "") : v]),
  );
  return { ...o, data };
}
