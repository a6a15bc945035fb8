/**
 * The address a per-client bound keys on: the connection's remote address,
 * with IPv4-mapped IPv6 (`::ffff:10.0.0.7`, how a dual-stack listener sees an
 * IPv4 peer) written as the IPv4 address. Never a header: headers are the
 * client's to forge.
 */
export function clientAddress(remoteAddress: string | undefined): string {
  if (remoteAddress === undefined) return "unknown";
  return remoteAddress.startsWith("::ffff:") && remoteAddress.includes(".") ? remoteAddress.slice(7) : remoteAddress;
}
