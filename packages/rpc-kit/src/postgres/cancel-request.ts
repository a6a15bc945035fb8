import * as net from "node:net";

/**
 * Asks the server to cancel what the backend `processId` is running: the
 * PostgreSQL protocol's CancelRequest, on a connection of its own (no login
 * needed, the backend's secret key is the credential). What `pg_cancel_backend`
 * does, without taking a pooled connection; node-postgres has no public API
 * for it. Resolves when the request is sent (the server closes the
 * connection without an answer), or after `timeoutMs` in any case.
 */
export function sendCancelRequest(
  target: { host: string; port: number },
  processId: number,
  secretKey: number,
  timeoutMs = 1_000,
): Promise<void> {
  return new Promise((resolve) => {
    const message = Buffer.alloc(16);
    message.writeInt32BE(16, 0);
    message.writeInt32BE(80877102, 4); // the CancelRequest code: 1234 << 16 | 5678
    message.writeInt32BE(processId, 8);
    message.writeInt32BE(secretKey, 12);
    const socket = target.host.startsWith("/")
      ? net.connect(`${target.host}/.s.PGSQL.${target.port}`)
      : net.connect(target.port, target.host);
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve();
    };
    const timer = setTimeout(done, timeoutMs);
    socket.once("connect", () => socket.end(message));
    socket.once("close", done);
    socket.once("error", done);
  });
}
