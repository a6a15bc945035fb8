import type { DescField, DescMessage, DescService } from "@bufbuild/protobuf";
import {
  isReflectList,
  isReflectMap,
  isReflectMessage,
  type ReflectMessage,
  reflect,
} from "@bufbuild/protobuf/reflect";
import { timestampDate } from "@bufbuild/protobuf/wkt";

/**
 * Log-safe views of protobuf messages. Fields marked `[debug_redact = true]`
 * in the .proto (the email of a user) are replaced by {@link REDACTED}; a
 * message whose schema is unknown is not shown at all (fail closed).
 */

export const REDACTED = "[REDACTED]";

const schemas = new Map<string, DescMessage>();

/** Makes the messages of a service (and every message they contain) known to {@link redactForLog}. */
export function registerServiceSchemas(service: DescService): void {
  for (const method of service.methods) {
    registerMessageSchema(method.input);
    registerMessageSchema(method.output);
  }
}

function registerMessageSchema(desc: DescMessage): void {
  if (schemas.has(desc.typeName)) return;
  schemas.set(desc.typeName, desc);
  for (const field of desc.fields) {
    if (field.message) registerMessageSchema(field.message);
  }
}

function isRedacted(field: DescField): boolean {
  return field.proto.options?.debugRedact === true;
}

/**
 * A plain-JSON view of a message for logs and traces, with redacted fields
 * masked. Only set fields appear.
 */
export function redactMessage(desc: DescMessage, message: unknown): Record<string, unknown> {
  return viewOf(reflect(desc, message as never));
}

function viewOf(r: ReflectMessage): Record<string, unknown> {
  if (r.desc.typeName === "google.protobuf.Timestamp") {
    return { iso: timestampDate(r.message as never).toISOString() };
  }
  const out: Record<string, unknown> = {};
  for (const field of r.fields) {
    if (!r.isSet(field)) continue;
    out[field.jsonName] = isRedacted(field) ? REDACTED : viewOfValue(field, r.get(field));
  }
  return out;
}

function viewOfValue(field: DescField, value: unknown): unknown {
  if (isReflectMessage(value)) return viewOf(value);
  if (isReflectList(value)) return [...value].map((v) => viewOfValue(field, v));
  if (isReflectMap(value)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of value) out[String(k)] = viewOfValue(field, v);
    return out;
  }
  if (typeof value === "bigint") return value.toString();
  if (value instanceof Uint8Array) return `<${value.byteLength} bytes>`;
  if (typeof value === "number" && field.enum) {
    return field.enum.values.find((v) => v.number === value)?.name ?? value;
  }
  return value;
}

/** Keys whose values are credentials, censored wherever a handler logs them (two levels deep). */
const CREDENTIAL_KEYS = new Set(["authorization", "cookie", "set-cookie", "password", "token", "secret"]);

/**
 * A log-safe version of any value: protobuf messages (found by `$typeName`,
 * at the top or one level down in plain objects and arrays) become redacted
 * views, credential-named keys are censored; everything else is returned as is.
 */
export function redactForLog(value: unknown, depth = 0): unknown {
  if (value === null || typeof value !== "object") return value;
  const typeName = (value as { $typeName?: unknown }).$typeName;
  if (typeof typeName === "string") {
    const desc = schemas.get(typeName);
    return desc
      ? { $type: typeName, ...redactMessage(desc, value) }
      : { $type: typeName, fields: "[unknown schema, not shown]" };
  }
  if (depth >= 2 || value instanceof Error) return value;
  if (Array.isArray(value)) return value.some(isMessageLike) ? value.map((v) => redactForLog(v, depth + 1)) : value;
  if (Object.getPrototypeOf(value) !== Object.prototype) return value;
  let copy: Record<string, unknown> | undefined;
  for (const [k, v] of Object.entries(value)) {
    if (CREDENTIAL_KEYS.has(k.toLowerCase())) {
      copy ??= { ...(value as Record<string, unknown>) };
      copy[k] = REDACTED;
    } else if (v !== null && typeof v === "object") {
      const safe = redactForLog(v, depth + 1);
      if (safe !== v) {
        copy ??= { ...(value as Record<string, unknown>) };
        copy[k] = safe;
      }
    }
  }
  return copy ?? value;
}

function isMessageLike(v: unknown): boolean {
  return v !== null && typeof v === "object" && typeof (v as { $typeName?: unknown }).$typeName === "string";
}
