import type { DescService } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import { type ClientOptions, clientOptionsFrom, clientSettings, createClient } from "./client/client.ts";
import { type Config, loadConfigOrExit, type Setting } from "./config/config.ts";
import { createLogger, flushLogger, type Logger } from "./observe/logger.ts";
import { startTelemetry, telemetrySettings } from "./observe/telemetry.ts";
import { authSettings } from "./security/auth.ts";
import { type RunningServer, type ServeOptions, serve, serverSettings } from "./serve.ts";

/**
 * An app, written once: its name, ports and own settings are given here and
 * nowhere else; the kit adds its own settings (telemetry, server, limits,
 * mTLS, auth, clients), starts telemetry, makes the logger, calls `start`
 * for the app's parts (its services, the clients they call, a database),
 * and serves them. A `start` that throws is reported in one line and the
 * process exits 1, as a port in use is.
 */
export interface AppOptions<S extends Record<string, Setting<unknown>>> {
  /** In logs, spans, metrics and errors; the first word of every configuration error. */
  readonly name: string;
  /** The default RPC and admin ports (PORT and ADMIN_PORT override them). */
  readonly ports: { readonly port: number; readonly adminPort: number };
  /** The app's own settings, read with the kit's in one pass: every problem is reported at once. */
  readonly settings?: S;
  /** Default `grpc`, for internal hops; `connect` for the public edge (see `serve()`). */
  readonly engine?: ServeOptions["engine"];
  /** Builds what the app serves, once its configuration is read. */
  start(app: AppContext<S>): AppParts | Promise<AppParts>;
}

export type AppConfig<S extends Record<string, Setting<unknown>>> = Config<KitSettings & S>;

type KitSettings = ReturnType<typeof telemetrySettings> &
  ReturnType<typeof clientSettings> &
  ReturnType<typeof serverSettings> &
  ReturnType<typeof authSettings>;

export interface AppContext<S extends Record<string, Setting<unknown>>> {
  readonly name: string;
  readonly config: AppConfig<S>;
  readonly logger: Logger;
  /**
   * A pooled client of `service` at `target`, with the client settings of
   * the environment (RPC_LB_POLICY, RPC_RETRY_*, mTLS…) and `options` on top.
   */
  client<T extends DescService>(service: T, target: string, options?: ClientOptions): Client<T>;
}

/** What `start` returns: `serve()`'s options that only the app knows. */
export type AppParts = Pick<ServeOptions, "services"> &
  Partial<
    Pick<ServeOptions, "dependencies" | "onShutdown" | "interceptors" | "adminRoutes" | "rateLimit" | "cors" | "site">
  >;

export async function serveApp<S extends Record<string, Setting<unknown>> = Record<never, never>>(
  options: AppOptions<S>,
): Promise<RunningServer> {
  const { name } = options;
  const kitSettings = {
    ...telemetrySettings(),
    ...clientSettings(),
    ...serverSettings(options.ports),
    ...authSettings(),
  };
  const own = options.settings ?? ({} as S);
  const taken = Object.keys(own).filter((key) => key in kitSettings);
  if (taken.length > 0)
    throw new Error(`${name}: settings ${taken.join(", ")} are the kit's own; name yours otherwise`);
  const config = loadConfigOrExit(name, { ...kitSettings, ...own }) as AppConfig<S>;
  // The kit's view of the same object.
  const kit = config as unknown as Config<KitSettings>;
  startTelemetry({ serviceName: name, ...kit });
  const logger = createLogger({ service: name, level: kit.logLevel, format: kit.logFormat });
  const fromEnv = clientOptionsFrom(kit);
  let parts: AppParts;
  try {
    parts = await options.start({
      name,
      config,
      logger,
      client: (service, target, clientOptions = {}) => createClient(service, target, { ...fromEnv, ...clientOptions }),
    });
  } catch (err) {
    return exitCannotStart(logger, name, err);
  }
  return serve({
    name,
    ...(options.engine && { engine: options.engine }),
    settings: kit,
    logger,
    auth: kit,
    ...parts,
  });
}

/**
 * Reports in one line that `name` cannot start, with the error's cause in the
 * line, and exits 1: for a start that failed (a database that never
 * answered), in `serveApp` and in an app's own commands (a migration Job).
 */
export async function exitCannotStart(logger: Logger, name: string, err: unknown): Promise<never> {
  logger.fatal({ err }, `${name} cannot start: ${(err as Error).message}`);
  await flushLogger(logger);
  process.exit(1);
}
