import { Code, ConnectError } from "@connectrpc/connect";

/**
 * What a failed query means for the caller, decided once here from the
 * driver's error: the code of the call, and a message that names no SQL, no
 * driver text, no host and no URL (the error itself is kept as the cause,
 * for the log). Constraint violations are left to the store, which knows
 * what they mean (a taken email is AlreadyExists).
 */

/** SQLSTATE classes and codes read here (PostgreSQL's errcodes). */
const QUERY_CANCELED = "57014";
const UNIQUE_VIOLATION = "23505";
/** Connection exceptions, operator intervention (shutdown), insufficient resources (too many connections). */
const UNAVAILABLE_CLASSES = ["08", "57P", "53"];

/** Node's and the driver's words for a connection that failed or went away. */
const CONNECTION_FAILURES =
  /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN|EPIPE|Connection terminated|connection timeout|Client has encountered a connection error/i;

/** A unique constraint the statement broke, by name: the store decides what it means. */
export class UniqueViolation extends Error {
  override name = "UniqueViolation";
  readonly constraint: string | undefined;

  constructor(constraint: string | undefined, cause: unknown) {
    super(`unique constraint ${constraint ?? "(unnamed)"} violated`, { cause });
    this.constraint = constraint;
  }
}

export const DATABASE_UNAVAILABLE = "the database is unavailable";
export const DATABASE_DEADLINE = "the database did not answer in time";
export const DATABASE_CANCELED = "the call was cancelled";
export const DATABASE_FAILED = "internal error";

/** SQLSTATE of a driver error, if it has one. */
export function sqlState(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === "string" && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/** True for an error that says the database could not be reached or dropped the connection. */
export function isUnavailable(err: unknown): boolean {
  const state = sqlState(err);
  if (state !== undefined) return UNAVAILABLE_CLASSES.some((c) => state.startsWith(c));
  return CONNECTION_FAILURES.test(String((err as Error | undefined)?.message ?? err));
}

/**
 * The error a caller gets for `err`. `cancelled` says why this side cancelled
 * the query, when it did: the deadline, or the caller going away.
 */
export function toQueryError(err: unknown, cancelled: "deadline" | "caller" | undefined): Error {
  const state = sqlState(err);
  if (state === QUERY_CANCELED || cancelled !== undefined) {
    return cancelled === "caller"
      ? new ConnectError(DATABASE_CANCELED, Code.Canceled, undefined, undefined, err)
      : new ConnectError(DATABASE_DEADLINE, Code.DeadlineExceeded, undefined, undefined, err);
  }
  if (state === UNIQUE_VIOLATION) {
    return new UniqueViolation((err as { constraint?: string }).constraint, err);
  }
  if (isUnavailable(err)) return new ConnectError(DATABASE_UNAVAILABLE, Code.Unavailable, undefined, undefined, err);
  return new ConnectError(DATABASE_FAILED, Code.Internal, undefined, undefined, err);
}
