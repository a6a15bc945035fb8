import { lookup, Resolver } from "node:dns/promises";
import { isIP } from "node:net";
import type { TargetSpec } from "../config/target.ts";

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

/** An endpoint address as grpc-js dials it: `ipv4:10.1.2.3:50051` or `ipv6:[fd00::1]:50051`. */
export type EndpointAddress = string;

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
