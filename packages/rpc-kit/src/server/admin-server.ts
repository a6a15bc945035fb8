import * as http from "node:http";
import type { AddressInfo } from "node:net";
import type { HealthState } from "./health.ts";

/**
 * The plain HTTP/1.1 admin port: what kubelet `httpGet` probes, Prometheus
 * and humans with curl speak (an h2c RPC port refuses HTTP/1.1).
 *
 * - `GET /healthz`: 200 while the process is alive and its event loop turns.
 * - `GET /readyz`: 200 while the process is SERVING, 503 once it drains.
 * - `GET /metrics`, `GET /debug/rpc` and any other routes `serve()` is given.
 */
export interface AdminServer {
  listen(host: string, port: number): Promise<number>;
  close(): Promise<void>;
}

/** Extra admin routes by path (`/metrics`, `/debug/...`), answering GET. */
export type AdminRoutes = Readonly<Record<string, (req: http.IncomingMessage, res: http.ServerResponse) => void>>;

/**
 * Bounds of the admin port (fixed: probes and scrapers are few and quick).
 * It keeps answering /healthz while the RPC port is saturated: that port's
 * connections are capped below the file-descriptor limit, and these bound
 * the admin port's own, so that idle or half-sent connections cannot fill it
 * and fail the liveness probe.
 */
export const ADMIN_LIMITS = Object.freeze({
  maxConnections: 256,
  headersTimeoutMs: 5_000,
  requestTimeoutMs: 10_000,
  // Probes open a connection each time; do not let idle ones hold shutdown.
  keepAliveTimeoutMs: 1_000,
});

export function createAdminServer(health: HealthState, routes: AdminRoutes = {}): AdminServer {
  const options: http.ServerOptions = {
    headersTimeout: ADMIN_LIMITS.headersTimeoutMs,
    requestTimeout: ADMIN_LIMITS.requestTimeoutMs,
    keepAliveTimeout: ADMIN_LIMITS.keepAliveTimeoutMs,
    connectionsCheckingInterval: 1_000,
  };
  const server = http.createServer(options, (req, res) => {
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain" }).end("method not allowed\n");
      return;
    }
    if (path === "/healthz") {
      res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
      return;
    }
    if (path === "/readyz") {
      const ready = health.isServing();
      res.writeHead(ready ? 200 : 503, { "content-type": "text/plain" }).end(ready ? "ready\n" : "not ready\n");
      return;
    }
    const route = routes[path];
    if (route) {
      route(req, res);
      return;
    }
    res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
  });
  server.maxConnections = ADMIN_LIMITS.maxConnections;
  return {
    listen(host, port) {
      return new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen({ host: host === "::" ? undefined : host, port, ipv6Only: false }, () => {
          server.off("error", reject);
          resolve((server.address() as AddressInfo).port);
        });
      });
    },
    close() {
      return new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
