/** What no log line of any service may contain, whatever the test did to it. */
import type { ServiceProcess } from "./processes.ts";

/** The seeded users' emails (a `debug_redact` field). */
export const SEEDED_EMAILS = ["ada@example.com", "grace@example.com", "alan@example.com"];

/** A JWT: three base64url parts, the first a JSON header ("eyJ" is `{"`). */
const JWT = /eyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]{8,}/;

/** Every database password of this repository's demos and tests ends so. */
const DEMO_PASSWORD = /NOT-A-SECRET/;

/**
 * The forbidden things `service` wrote to stdout or stderr: seeded emails,
 * bearer tokens, its database's password.
 */
export function leaksOf(service: Pick<ServiceProcess, "output" | "databaseUrl">): string[] {
  const output = service.output();
  const found = SEEDED_EMAILS.filter((email) => output.includes(email));
  const password = service.databaseUrl === undefined ? "" : decodeURIComponent(new URL(service.databaseUrl).password);
  if ((password !== "" && output.includes(password)) || DEMO_PASSWORD.test(output)) found.push("a database password");
  const token = JWT.exec(output)?.[0];
  if (token !== undefined) found.push(`a token (${token.slice(0, 12)}…)`);
  if (/bearer\s+\S/i.test(output)) found.push("an authorization header");
  return found;
}
