/**
 * Helpers for testing handlers without a network: `@demo/rpc-kit/testing`.
 */
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import {
  type Client,
  ConnectError,
  createHandlerContext,
  createRouterTransport,
  type HandlerContext,
  type Interceptor,
  type ServiceImpl,
} from "@connectrpc/connect";
import { errorBoundary } from "../call/error-boundary.ts";
import { markUpstreamError } from "../call/errors.ts";
import { createClientFromTransport } from "../client/client.ts";
import { loadConfig } from "../config/config.ts";
import { createLogger, type Logger } from "../observe/logger.ts";
import { metricsRegistry } from "../observe/metrics.ts";
import { type ServerSettings, serverSettings } from "../serve.ts";
import { service as registration, scopedMethodSpecs } from "../server/service-registration.ts";
import { parsePrometheusText, seriesKey } from "./prometheus-text.ts";

export { freePort } from "./free-port.ts";
export {
  healthCheckStatus,
  type Issued,
  peerSerial,
  type SecretFiles,
  secretFiles,
  type TestCa,
  testCa,
  tlsEnv,
  writeByRename,
  writeLikeKubelet,
} from "./pki.ts";
export {
  createDatabase,
  embeddedServerUrl,
  type OwnDatabase,
  realServerSkipReason,
  realServerUrl,
  type TestServer,
  testDatabase,
  withClient,
} from "./postgres.ts";
export { connectionLocalPorts, cpuMicros, openFds, parentPid, peakRssBytes, rssBytes } from "./proc-stats.ts";
export { parsePrometheusText, seriesKey } from "./prometheus-text.ts";

/** A HandlerContext for calling a handler directly, optionally with a deadline. */
export function createTestContext(
  method: DescMethod,
  init: { timeoutMs?: number; signal?: AbortSignal } = {},
): HandlerContext {
  return createHandlerContext({
    service: method.parent,
    method,
    protocolName: "test",
    requestMethod: "POST",
    url: `/${method.parent.typeName}/${method.name}`,
    ...(init.timeoutMs !== undefined && { timeoutMs: init.timeoutMs }),
    ...(init.signal !== undefined && { requestSignal: init.signal }),
  });
}

/** Client-side: errors from the in-memory server count as upstream errors, as they would from a real hop. */
const markAsUpstream: Interceptor = (next) => async (req) => {
  try {
    return await next(req);
  } catch (err) {
    if (err instanceof ConnectError) {
      markUpstreamError(err, { target: "in-memory", procedure: `${req.service.typeName}/${req.method.name}` });
    }
    throw err;
  }
};

/**
 * A client for `impl` served in memory through the Connect protocol, with
 * rpc-kit's error policy and call record as on a real server: the way to give
 * a handler under test a real upstream without a network. Methods `impl`
 * leaves out answer Unimplemented, as on a server, so a test can script just
 * the upstream methods its handler calls.
 */
export function createInMemoryClient<S extends DescService>(desc: S, impl: Partial<ServiceImpl<S>>): Client<S> {
  const transport = createRouterTransport(
    (router) => {
      for (const spec of scopedMethodSpecs(registration(desc, impl as ServiceImpl<S>))) {
        router.rpc(spec.method, spec.impl as never);
      }
    },
    { router: { interceptors: [errorBoundary] }, transport: { interceptors: [markAsUpstream] } },
  );
  return createClientFromTransport(desc, transport);
}

/** Server settings for tests: the defaults of every setting, any free ports, no drain delay, short shutdown bound. */
export function testServerSettings(overrides: Partial<ServerSettings> = {}): ServerSettings {
  return {
    ...loadConfig(serverSettings({ port: 0, adminPort: 0 }), {}),
    logFormat: "json",
    drainDelayMs: 0,
    shutdownTimeoutMs: 2_000,
    maxConnectionAgeMs: 0,
    ...overrides,
  };
}

/** A logger that keeps every line it writes, parsed, for assertions. */
export function captureLogger(service: string): {
  logger: Logger;
  lines: Record<string, unknown>[];
  text: () => string;
} {
  const raw: string[] = [];
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({
    service,
    level: "debug",
    format: "json",
    destination: {
      write(line: string) {
        raw.push(line);
        lines.push(JSON.parse(line) as Record<string, unknown>);
      },
    },
  });
  return { logger, lines, text: () => raw.join("") };
}

/** Polls `check` every 10 ms until it holds; throws after `ms` (default 2 s). */
export async function waitFor(check: () => boolean, ms = 2_000): Promise<void> {
  await until("condition", () => check() || undefined, ms, 10);
}

/** Polls `find` every `everyMs` until it returns a value, and returns it; throws naming `what` after `ms`. */
export async function until<T>(what: string, find: () => T | undefined, ms = 5_000, everyMs = 25): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const found = find();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** The value of one series in this process's /metrics (0 when absent). */
export async function metricSample(name: string, labels: Record<string, string>): Promise<number> {
  return parsePrometheusText(await metricsRegistry.metrics()).get(seriesKey(name, labels)) ?? 0;
}
