import { parseTargetSpec } from "./target.ts";

/**
 * Typed settings from the environment, parsed once at start.
 *
 * Every problem is collected and reported together, so that a misconfigured
 * deployment is fixed in one round trip instead of one variable at a time.
 * No other module reads `process.env`.
 */

/** One environment variable: its name, what it is for, and how to parse it. */
export interface Setting<T> {
  readonly env: string;
  /** One line for humans: shown in errors and in the README's env table. */
  readonly doc: string;
  /** The default as a user would write it, or undefined when required. */
  readonly defaultText: string | undefined;
  /**
   * Parses the raw value (undefined when unset); throws an Error whose message says what is wrong.
   * `env` is the whole environment, for a setting that must agree with others (the TLS files: all or none).
   */
  parse(raw: string | undefined, env?: Readonly<Record<string, string | undefined>>): T;
  /** A secret (a URL with a password): its value is never shown in an error. */
  readonly secret?: boolean;
}

/** The parsed value type of a Setting. */
export type SettingValue<S> = S extends Setting<infer T> ? T : never;

/** The frozen result of {@link loadConfig} for a spec. */
export type Config<S extends Record<string, Setting<unknown>>> = {
  readonly [K in keyof S]: SettingValue<S[K]>;
};

/** Thrown by {@link loadConfig}: lists every invalid or missing variable. */
export class ConfigError extends Error {
  override name = "ConfigError";
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(`invalid environment:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.problems = problems;
  }
}

/**
 * Parses `env` against `spec` and returns a frozen object with one property
 * per key of the spec. Throws a {@link ConfigError} naming every problem.
 */
export function loadConfig<S extends Record<string, Setting<unknown>>>(
  spec: S,
  env: Readonly<Record<string, string | undefined>>,
): Config<S> {
  const result: Record<string, unknown> = {};
  const problems: string[] = [];
  for (const [key, setting] of Object.entries(spec)) {
    const raw = env[setting.env];
    try {
      result[key] = setting.parse(raw === "" ? undefined : raw, env);
    } catch (err) {
      const shown = raw === undefined || raw === "" || setting.secret ? "" : `=${JSON.stringify(raw)}`;
      problems.push(`${setting.env}${shown}: ${(err as Error).message} (${setting.doc})`);
    }
  }
  if (problems.length > 0) {
    throw new ConfigError(problems);
  }
  return Object.freeze(result) as Config<S>;
}

/**
 * {@link loadConfig} for a process entry point: on error, prints one message
 * naming the service and every problem to stderr and exits with status 1.
 */
export function loadConfigOrExit<S extends Record<string, Setting<unknown>>>(
  service: string,
  spec: S,
  env: Readonly<Record<string, string | undefined>> = process.env,
): Config<S> {
  try {
    return loadConfig(spec, env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${service}: ${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
}

function define<T>(
  env: string,
  doc: string,
  defaultValue: T | undefined,
  defaultText: string | undefined,
  parseSet: (raw: string) => T,
): Setting<T> {
  return {
    env,
    doc,
    defaultText,
    parse(raw) {
      if (raw === undefined) {
        if (defaultValue === undefined) throw new Error("is required");
        return defaultValue;
      }
      return parseSet(raw.trim());
    },
  };
}

function parseInteger(raw: string, min: number, max: number): number {
  if (!/^-?\d+$/.test(raw)) throw new Error(`must be an integer from ${min} to ${max}`);
  const n = Number(raw);
  if (n < min || n > max) throw new Error(`must be an integer from ${min} to ${max}`);
  return n;
}

/** Constructors for settings. Each takes the variable name, its default (omit for required) and a doc line. */
export const setting = {
  /** A TCP port, 0 to 65535 (0 asks the OS for a free one). */
  port(env: string, defaultValue: number | undefined, doc: string): Setting<number> {
    return define(env, doc, defaultValue, defaultValue?.toString(), (raw) => parseInteger(raw, 0, 65535));
  },
  /** An integer within bounds. */
  int(
    env: string,
    defaultValue: number | undefined,
    doc: string,
    bounds: { min?: number; max?: number } = {},
  ): Setting<number> {
    const min = bounds.min ?? 0;
    const max = bounds.max ?? Number.MAX_SAFE_INTEGER;
    return define(env, doc, defaultValue, defaultValue?.toString(), (raw) => parseInteger(raw, min, max));
  },
  /** One of a fixed set of words, compared case-insensitively. */
  oneOf<const T extends string>(
    env: string,
    values: readonly T[],
    defaultValue: T | undefined,
    doc: string,
  ): Setting<T> {
    return define(env, doc, defaultValue, defaultValue, (raw) => {
      const v = raw.toLowerCase() as T;
      if (!values.includes(v)) throw new Error(`must be one of ${values.join(", ")}`);
      return v;
    });
  },
  /** A switch: on/off, true/false, 1/0, yes/no. */
  bool(env: string, defaultValue: boolean, doc: string): Setting<boolean> {
    return define(env, doc, defaultValue, defaultValue ? "on" : "off", (raw) => {
      const v = raw.toLowerCase();
      if (["on", "true", "1", "yes"].includes(v)) return true;
      if (["off", "false", "0", "no"].includes(v)) return false;
      throw new Error("must be on or off");
    });
  },
  /** A comma-separated list that may be left unset (empty items dropped). */
  list(env: string, doc: string): Setting<string[] | undefined> {
    return {
      env,
      doc,
      defaultText: undefined,
      parse: (raw) =>
        raw
          ?.split(",")
          .map((s) => s.trim())
          .filter(Boolean),
    };
  },
  /**
   * A secret that may be left unset (a URL with a password), checked by
   * `check`, whose message must not repeat the value: it is never shown.
   */
  secret(env: string, doc: string, check: (raw: string) => void): Setting<string | undefined> {
    return {
      env,
      doc,
      defaultText: undefined,
      secret: true,
      parse: (raw) => {
        if (raw === undefined) return undefined;
        check(raw.trim());
        return raw.trim();
      },
    };
  },
  /** Free text that may be left unset. */
  optional(env: string, doc: string): Setting<string | undefined> {
    return { env, doc, defaultText: undefined, parse: (raw) => raw?.trim() };
  },
  /** Free text. */
  string(env: string, defaultValue: string | undefined, doc: string): Setting<string> {
    return define(env, doc, defaultValue, defaultValue, (raw) => raw);
  },
  /**
   * The address of an upstream service, checked with {@link parseTarget}:
   * `name:port`, `dns:///name:port` or `static:///h1:p1,h2:p2`. Use DNS names
   * (compose service names, Kubernetes Service names), never IP addresses
   * baked into config.
   */
  target(env: string, defaultValue: string | undefined, doc: string): Setting<string> {
    return define(
      env,
      doc,
      defaultValue === undefined ? undefined : parseTarget(defaultValue),
      defaultValue,
      parseTarget,
    );
  },
};

/**
 * Normalizes an upstream address: `host:port` and `dns:///host:port` become
 * `dns:///host:port`; `static:///h1:p1,h2:p2` stays as it is. Throws with a
 * message saying what is wrong otherwise.
 */
export function parseTarget(raw: string): string {
  const spec = parseTargetSpec(raw.trim());
  if (spec.kind === "static") return `static:///${spec.hostPorts.map(formatHostPort).join(",")}`;
  return `dns:///${formatHostPort(spec)}`;
}

function formatHostPort({ host, port }: { host: string; port: number }): string {
  return `${host.includes(":") ? `[${host}]` : host}:${port}`;
}
