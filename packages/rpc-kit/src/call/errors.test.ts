import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema } from "@demo/proto/google/rpc/error_details_pb";
import {
  INTERNAL_ERROR_MESSAGE,
  invalidArgument,
  markUpstreamError,
  relayUpstreamError,
  toCallerError,
  upstreamOriginOf,
} from "./errors.ts";

const origin = { target: "dns:///users:50051", procedure: "demo.users.v1.UserService/GetUser" };
function upstream(code: Code, message = "upstream said so"): ConnectError {
  const err = invalidArgument([{ field: "email", description: "bad" }]);
  return markUpstreamError(Object.assign(new ConnectError(message, code), { details: err.details }), origin);
}

describe("toCallerError", () => {
  it("sends a handler's own ConnectError as thrown", () => {
    const own = new ConnectError("user u-9 not found", Code.NotFound);
    assert.equal(toCallerError(own), own);
  });

  it("turns anything else into Internal with a safe message, keeping the cause", () => {
    const cause = new TypeError("cannot read properties of undefined (reading 'secret')");
    const err = toCallerError(cause);
    assert.equal(err.code, Code.Internal);
    assert.equal(err.rawMessage, INTERNAL_ERROR_MESSAGE);
    assert.equal(err.cause, cause);
  });

  it("keeps NotFound and AlreadyExists from upstream with message and details", () => {
    for (const code of [Code.NotFound, Code.AlreadyExists]) {
      const err = toCallerError(upstream(code));
      assert.equal(err.code, code);
      assert.equal(err.rawMessage, "upstream said so");
      assert.equal(err.findDetails(BadRequestSchema).length, 1);
      assert.equal(upstreamOriginOf(err.cause), origin);
    }
  });

  it("keeps DeadlineExceeded and Canceled, and maps Unavailable and ResourceExhausted to Unavailable", () => {
    assert.equal(toCallerError(upstream(Code.DeadlineExceeded)).code, Code.DeadlineExceeded);
    assert.equal(toCallerError(upstream(Code.Canceled)).code, Code.Canceled);
    for (const code of [Code.Unavailable, Code.ResourceExhausted]) {
      const err = toCallerError(upstream(code, "connect ECONNREFUSED 10.0.0.7:50051"));
      assert.equal(err.code, Code.Unavailable);
      assert.doesNotMatch(err.message, /10\.0\.0\.7/);
    }
  });

  it("turns the upstream's InvalidArgument (our bug) and everything else into Internal without its text", () => {
    for (const code of [
      Code.InvalidArgument,
      Code.FailedPrecondition,
      Code.PermissionDenied,
      Code.Unauthenticated,
      Code.Internal,
      Code.Unknown,
      Code.Unimplemented,
      Code.DataLoss,
    ]) {
      const err = toCallerError(upstream(code, "stack trace of users"));
      assert.equal(err.code, Code.Internal, Code[code]);
      assert.equal(err.rawMessage, INTERNAL_ERROR_MESSAGE);
      assert.equal(err.details.length, 0);
    }
  });

  it("decodes standard details received from the wire when passing them on (for Connect JSON's debug)", () => {
    const wire = markUpstreamError(new ConnectError("user u-9 not found", Code.NotFound), origin);
    const sent = invalidArgument([{ field: "id", description: "x" }]).details[0];
    assert.ok(sent && "desc" in sent);
    wire.details = [{ type: "google.rpc.BadRequest", value: toBinary(sent.desc, create(sent.desc, sent.value)) }];
    const passed = toCallerError(wire);
    assert.ok(passed.details[0] && "desc" in passed.details[0]);
    assert.equal(passed.findDetails(BadRequestSchema)[0]?.fieldViolations[0]?.field, "id");
  });

  it("lets a handler relay an upstream error deliberately", () => {
    const relayed = toCallerError(relayUpstreamError(upstream(Code.InvalidArgument)));
    assert.equal(relayed.code, Code.InvalidArgument);
    assert.equal(relayed.findDetails(BadRequestSchema)[0]?.fieldViolations[0]?.field, "email");
  });
});

describe("invalidArgument", () => {
  it("names every field in a google.rpc.BadRequest and in the message", () => {
    const err = invalidArgument([
      { field: "name", description: "must not be empty" },
      { field: "email", description: "must be a valid email address" },
    ]);
    assert.equal(err.code, Code.InvalidArgument);
    assert.equal(err.rawMessage, "name: must not be empty; email: must be a valid email address");
    const [detail] = err.findDetails(BadRequestSchema);
    assert.deepEqual(
      detail?.fieldViolations.map((v) => v.field),
      ["name", "email"],
    );
  });
});

describe("toCallerError with the call's signal", () => {
  it("tells the caller a handler whose wait was aborted ran out of time or was cancelled, not Internal", () => {
    const abortError = new DOMException("This operation was aborted", "AbortError");
    const timedOut = AbortSignal.abort(new ConnectError("the operation timed out", Code.DeadlineExceeded));
    const cancelled = AbortSignal.abort(new ConnectError("client went away", Code.Canceled));
    const a = toCallerError(abortError, timedOut);
    assert.deepEqual([a.code, a.rawMessage, a.cause], [Code.DeadlineExceeded, "deadline exceeded", abortError]);
    assert.equal(toCallerError(abortError, cancelled).code, Code.Canceled);
    assert.equal(toCallerError(abortError, new AbortController().signal).code, Code.Internal, "not aborted: a bug");
  });
});
