/**
 * A TCP relay: what connects to `host`:<port> is piped to `target`. Lets a
 * service in a network namespace of the test's own reach a server that
 * listens on this host's 127.0.0.1 (the test's PostgreSQL) across the link
 * the drill cuts.
 */
import * as net from "node:net";

export interface TcpForward {
  readonly port: number;
  close(): Promise<void>;
}

export async function tcpForward(host: string, target: { host: string; port: number }): Promise<TcpForward> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((inbound) => {
    const outbound = net.connect(target.port, target.host);
    for (const s of [inbound, outbound]) {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
      s.on("error", () => {
        inbound.destroy();
        outbound.destroy();
      });
    }
    inbound.pipe(outbound).pipe(inbound);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, host, resolve);
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
