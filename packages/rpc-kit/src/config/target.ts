/**
 * Targets, as USERS_ADDR and every `createClient` name them: `name:port`,
 * `dns:///name:port` (every A/AAAA record, re-resolved) or
 * `static:///h1:p1,h2:p2` (a fixed list). Parsing only; client/discovery.ts
 * resolves them.
 */

export type TargetSpec =
  | { readonly kind: "dns"; readonly host: string; readonly port: number }
  | { readonly kind: "static"; readonly hostPorts: readonly { host: string; port: number }[] };

function hostPort(text: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d+)$/.exec(text);
  if (m === null) throw new Error(`"${text}" must be host:port`);
  const port = Number(m[2]);
  if (port < 1 || port > 65535) throw new Error(`"${text}": port must be from 1 to 65535`);
  return { host: (m[1] ?? "").replace(/^\[|\]$/g, ""), port };
}

/** Parses a target; throws with a message saying what is wrong. */
export function parseTargetSpec(target: string): TargetSpec {
  if (target.startsWith("static:///")) {
    const list = target.slice("static:///".length).split(",").filter(Boolean);
    if (list.length === 0) throw new Error("static:/// needs at least one host:port");
    return { kind: "static", hostPorts: list.map(hostPort) };
  }
  const rest = target.startsWith("dns:///") ? target.slice("dns:///".length) : target;
  if (rest.includes("/")) throw new Error("must be host:port, dns:///host:port or static:///h1:p1,h2:p2");
  return { kind: "dns", ...hostPort(rest) };
}

/**
 * `server.address` and `server.port` of a target, worked out once per client:
 * `dns:///users:50051` → users, 50051; a static list's first entry
 * (`static:///10.0.0.1:50051,10.0.0.2:50051` → 10.0.0.1, 50051), because
 * which endpoint a call lands on is decided below the interceptors.
 */
export function serverAddressOf(target: string): { address: string; port: number } {
  const spec = parseTargetSpec(target);
  const first = spec.kind === "dns" ? spec : spec.hostPorts[0];
  return { address: first?.host ?? "", port: first?.port ?? 0 };
}
