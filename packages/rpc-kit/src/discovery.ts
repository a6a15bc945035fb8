import { lookup, Resolver } from "node:dns/promises";
import { isIP } from "node:net";

/**
 * Discovery: turns a target into the set of endpoint addresses to balance
 * over, and keeps that set current.
 *
 * - `dns:///name:port` and plain `name:port`: every A and AAAA record of the
 *   name (a headless Service's pods, a compose service's replicas),
 *   re-resolved on a timer and, rate-limited, whenever a connection fails;
 *   cached in between.
 * - `static:///h1:p1,h2:p2`: a fixed list (names are looked up once).
 */

export type TargetSpec =
  | { readonly kind: "dns"; readonly host: string; readonly port: number }
  | { readonly kind: "static"; readonly hostPorts: readonly { host: string; port: number }[] };

/** An endpoint address as grpc-js dials it: `ipv4:10.1.2.3:50051` or `ipv6:[fd00::1]:50051`. */
export type EndpointAddress = string;

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

export function endpointAddress(ip: string, port: number): EndpointAddress {
  return isIP(ip) === 6 ? `ipv6:[${ip}]:${port}` : `ipv4:${ip}:${port}`;
}

export interface ResolveOptions {
  /**
   * DNS servers (`ip` or `ip:port`) to query directly for A/AAAA records,
   * instead of the system resolver. Default: the system resolver
   * (getaddrinfo: /etc/hosts, search domains, what every other program sees).
   */
  readonly dnsServers?: readonly string[];
  /** With `dnsServers`: wait this long for an answer before asking again. Default 1,000 ms. */
  readonly dnsTimeoutMs?: number;
  /** With `dnsServers`: ask this many times before giving up. Default 2. */
  readonly dnsTries?: number;
}

/** Resolves a host name to its distinct IP addresses, IPv4 first. */
export async function resolveHost(host: string, options: ResolveOptions = {}): Promise<string[]> {
  if (isIP(host)) return [host];
  if (options.dnsServers && options.dnsServers.length > 0) {
    const resolver = new Resolver({ timeout: options.dnsTimeoutMs ?? 1_000, tries: options.dnsTries ?? 2 });
    resolver.setServers([...options.dnsServers]);
    const [v4, v6] = await Promise.allSettled([resolver.resolve4(host), resolver.resolve6(host)]);
    const ips = [...(v4.status === "fulfilled" ? v4.value : []), ...(v6.status === "fulfilled" ? v6.value : [])];
    if (ips.length === 0) {
      throw v4.status === "rejected" ? v4.reason : new Error(`${host} has no A or AAAA records`);
    }
    return ips;
  }
  const found = await lookup(host, { all: true, order: "ipv4first" });
  return [...new Set(found.map((a) => a.address))];
}

/** Resolves a target to endpoint addresses. */
export async function resolveTarget(spec: TargetSpec, options: ResolveOptions = {}): Promise<EndpointAddress[]> {
  const hostPorts = spec.kind === "dns" ? [{ host: spec.host, port: spec.port }] : spec.hostPorts;
  const lists = await Promise.all(
    hostPorts.map(async ({ host, port }) => (await resolveHost(host, options)).map((ip) => endpointAddress(ip, port))),
  );
  return [...new Set(lists.flat())];
}
