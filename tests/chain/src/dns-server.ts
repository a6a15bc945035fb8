/**
 * A real DNS server for tests, on UDP 127.0.0.1: answers A and AAAA queries
 * from tables the test changes while it runs (records added and removed),
 * with a short TTL. Built on dns-packet; anything else gets NXDOMAIN.
 */
import * as dgram from "node:dgram";
import dnsPacket from "dns-packet";

export interface DnsServer {
  /** `127.0.0.1:<port>`, for RPC_DNS_SERVERS / the `dnsServers` option. */
  readonly address: string;
  /** Replaces the A records of `name`. */
  setA(name: string, ips: string[]): void;
  /** Replaces the AAAA records of `name`. */
  setAAAA(name: string, ips: string[]): void;
  /** A queries answered so far, per name. */
  readonly queries: Map<string, number>;
  close(): Promise<void>;
}

export async function startDnsServer(
  records: Record<string, string[]> = {},
  aaaaRecords: Record<string, string[]> = {},
): Promise<DnsServer> {
  const table = new Map(Object.entries(records));
  const aaaa = new Map(Object.entries(aaaaRecords));
  const queries = new Map<string, number>();
  const socket = dgram.createSocket("udp4");
  socket.on("message", (message, peer) => {
    let query: dnsPacket.Packet;
    try {
      query = dnsPacket.decode(message);
    } catch {
      return;
    }
    const question = query.questions?.[0];
    if (!question) return;
    const name = question.name.toLowerCase();
    const known = table.has(name) || aaaa.has(name);
    if (question.type === "A") queries.set(name, (queries.get(name) ?? 0) + 1);
    const type = question.type === "A" || question.type === "AAAA" ? question.type : undefined;
    const ips = type === "A" ? table.get(name) : type === "AAAA" ? aaaa.get(name) : undefined;
    const answers: dnsPacket.Answer[] =
      type && ips ? ips.map((ip) => ({ type, name: question.name, class: "IN", ttl: 1, data: ip })) : [];
    const response = dnsPacket.encode({
      type: "response",
      id: query.id ?? 0,
      flags: dnsPacket.AUTHORITATIVE_ANSWER | (known ? 0 : 3), // rcode 3: NXDOMAIN
      questions: [question],
      answers,
    });
    socket.send(response, peer.port, peer.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
  return {
    address: `127.0.0.1:${socket.address().port}`,
    setA: (name, ips) => table.set(name.toLowerCase(), [...ips]),
    setAAAA: (name, ips) => aaaa.set(name.toLowerCase(), [...ips]),
    queries,
    close: () => new Promise((resolve) => socket.close(() => resolve())),
  };
}
