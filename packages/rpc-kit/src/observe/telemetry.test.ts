import assert from "node:assert/strict";
import * as net from "node:net";
import { describe, it } from "node:test";
import { trace } from "@opentelemetry/api";
import { shutdownTelemetry, startTelemetry } from "./telemetry.ts";

describe("shutdownTelemetry", () => {
  it("gives up on a collector that never answers within its bound, instead of holding the process", async () => {
    const sockets = new Set<net.Socket>();
    const blackHole = net.createServer((s) => sockets.add(s));
    await new Promise<void>((r) => blackHole.listen(0, "127.0.0.1", r));
    const { port } = blackHole.address() as net.AddressInfo;
    try {
      startTelemetry({ serviceName: "test", otlpEndpoint: `http://127.0.0.1:${port}`, otlpTracesEndpoint: undefined });
      trace.getTracer("test").startSpan("buffered").end();
      const started = Date.now();
      await assert.rejects(shutdownTelemetry(300), /not flushed within 300 ms/);
      const took = Date.now() - started;
      assert.ok(took >= 290 && took < 1_000, `took ${took} ms`);
    } finally {
      for (const s of sockets) s.destroy();
      blackHole.close();
    }
  });
});
