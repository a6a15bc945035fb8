import { create, createRegistry, fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  BadRequest_FieldViolationSchema,
  BadRequestSchema,
  file_google_rpc_error_details,
} from "@demo/proto/google/rpc/error_details_pb";
import { NO_RETRY_PUSHBACK } from "../grpc/grpc-metadata.ts";

/**
 * The error policy of every hop, in one place.
 *
 * - A handler's own ConnectError goes to the caller as thrown: code, message, details.
 * - An error that came from an upstream call and escaped the handler is
 *   translated (Google API guidance, "translate, don't relay"): NotFound and
 *   AlreadyExists keep their code, message and details; Unavailable and
 *   ResourceExhausted become Unavailable, marked "do not retry" for the
 *   caller (retry-policy.ts: one retry layer); DeadlineExceeded and Canceled keep
 *   their code, with a message of our own (grpc-js writes the upstream's
 *   address into its own, which must not reach a public caller); anything else (the upstream's InvalidArgument is our bug)
 *   becomes Internal. A handler that means to pass another code on says so
 *   with {@link relayUpstreamError}.
 * - Anything that is not a ConnectError becomes Internal with a safe message,
 *   unless the call's signal was aborted: then DeadlineExceeded or Canceled.
 *
 * The original error always stays in `cause`, for the log line, never for the wire.
 */

/** Where an upstream error came from, for logs. */
export interface UpstreamOrigin {
  readonly target: string;
  /** `package.Service/Method` */
  readonly procedure: string;
}

const upstreamOrigins = new WeakMap<ConnectError, UpstreamOrigin>();

/** Marks an error as received from an upstream call (done by the client transport). */
export function markUpstreamError(err: ConnectError, origin: UpstreamOrigin): ConnectError {
  upstreamOrigins.set(err, origin);
  return err;
}

/** The upstream call an error came from, or undefined for a local error. */
export function upstreamOriginOf(err: unknown): UpstreamOrigin | undefined {
  return err instanceof ConnectError ? upstreamOrigins.get(err) : undefined;
}

/** Codes an upstream error keeps, with its message and details, when it escapes a handler. */
const KEPT_UPSTREAM_CODES: ReadonlySet<Code> = new Set([Code.NotFound, Code.AlreadyExists]);

/** Upstream codes passed on with these messages instead of the upstream's. */
const OWN_MESSAGES: ReadonlyMap<Code, string> = new Map([
  [Code.DeadlineExceeded, "deadline exceeded"],
  [Code.Canceled, "the call was cancelled"],
]);

/** The message sent for Internal errors, which never carry a cause's text. */
export const INTERNAL_ERROR_MESSAGE = "internal error";

/**
 * Turns whatever a handler threw into the error its caller receives. The
 * returned error's `cause` holds the original for logging.
 */
export function toCallerError(thrown: unknown, signal?: AbortSignal): ConnectError {
  if (!(thrown instanceof ConnectError)) {
    // A handler that rethrows what its aborted signal made a wait throw (an AbortError from
    // sleep or fetch) was cancelled, or ran out of time: that is what the caller is told.
    if (signal?.aborted) {
      const code =
        ConnectError.from(signal.reason).code === Code.DeadlineExceeded ? Code.DeadlineExceeded : Code.Canceled;
      return new ConnectError(OWN_MESSAGES.get(code) ?? "", code, undefined, undefined, thrown);
    }
    return new ConnectError(INTERNAL_ERROR_MESSAGE, Code.Internal, undefined, undefined, thrown);
  }
  if (!upstreamOrigins.has(thrown)) {
    return thrown;
  }
  return translateUpstreamError(thrown);
}

/** Applies the translation policy above to an error received from an upstream call. */
export function translateUpstreamError(err: ConnectError): ConnectError {
  if (err.code === Code.ResourceExhausted || err.code === Code.Unavailable) {
    // This hop's client already retried it (within its budget): its callers must not retry again.
    return new ConnectError("a dependency is unavailable", Code.Unavailable, NO_RETRY_PUSHBACK, undefined, err);
  }
  const ownMessage = OWN_MESSAGES.get(err.code);
  if (ownMessage !== undefined) {
    return new ConnectError(ownMessage, err.code, undefined, undefined, err);
  }
  if (KEPT_UPSTREAM_CODES.has(err.code)) {
    return passOn(err);
  }
  return new ConnectError(INTERNAL_ERROR_MESSAGE, Code.Internal, undefined, undefined, err);
}

/**
 * Passes an upstream error on unchanged (code, message and details) when the
 * handler knows the caller should see it, e.g. the owner's InvalidArgument
 * about input that the handler forwarded verbatim.
 */
export function relayUpstreamError(err: ConnectError): ConnectError {
  return passOn(err);
}

/** The standard google.rpc error details, decoded when passed on so that Connect JSON shows them in `debug`. */
const errorDetailTypes = createRegistry(file_google_rpc_error_details);

/** A local copy of an upstream error: same code, message and details; the original as cause. */
function passOn(err: ConnectError): ConnectError {
  const copy = new ConnectError(err.rawMessage, err.code, undefined, undefined, err);
  copy.details = err.details.map((d) => {
    if ("desc" in d) return d;
    const desc = errorDetailTypes.getMessage(d.type);
    if (desc === undefined) return d;
    try {
      return { desc, value: fromBinary(desc, d.value) };
    } catch {
      return d;
    }
  });
  return copy;
}

/** One field-level problem of a request. */
export interface FieldViolation {
  /** The field's path in the request, as in the .proto (e.g. `email`). */
  readonly field: string;
  /** What is wrong, for the caller. Never echo the value of a redacted field. */
  readonly description: string;
}

/**
 * An InvalidArgument error carrying a google.rpc.BadRequest that names each
 * offending field. The message lists the fields too, for humans with curl.
 */
export function invalidArgument(violations: readonly FieldViolation[]): ConnectError {
  const message = violations.map((v) => `${v.field}: ${v.description}`).join("; ");
  return new ConnectError(message, Code.InvalidArgument, undefined, [
    {
      desc: BadRequestSchema,
      value: {
        fieldViolations: violations.map((v) =>
          create(BadRequest_FieldViolationSchema, { field: v.field, description: v.description }),
        ),
      },
    },
  ]);
}
