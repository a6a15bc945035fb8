import * as net from "node:net";

/** A TCP port free on `host` now (on loopback, free on the other 127.x addresses too). */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, host, r));
  const { port } = probe.address() as net.AddressInfo;
  await new Promise((r) => probe.close(r));
  return port;
}
