import { createServer } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A page on another origin (another port on 127.0.0.1), for calling the
 * gateway cross-origin from the browser. Records every request it gets.
 */
export async function startOtherOrigin(): Promise<{
  origin: string;
  seen: string[];
  close(): Promise<void>;
}> {
  const seen: string[] = [];
  const server = createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    if (req.method === "GET" && req.url === "/") {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
      res.end("<!doctype html><title>another origin</title><p>another origin</p>");
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    seen,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
