import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { UserService } from "@demo/proto/demo/users/v1/users_pb";
import { NO_RETRY_PUSHBACK } from "../grpc/grpc-metadata.ts";
import { createPicker } from "./balancing.ts";
import { RetryBudget } from "./retry-budget.ts";
import { backoffMs, DEFAULT_RETRY, isRetryable, markFinal, markNeverSent, retryPushback } from "./retry-policy.ts";

const getUser = UserService.method.getUser;
const createUser = UserService.method.createUser;
const listUsers = UserService.method.listUsers;

describe("isRetryable", () => {
  it("retries Unavailable on methods the proto marks idempotent", () => {
    assert.ok(isRetryable(new ConnectError("down", Code.Unavailable), getUser));
    assert.ok(isRetryable(new ConnectError("down", Code.Unavailable), listUsers));
  });

  it("never retries a call that may have been processed by a non-idempotent method", () => {
    assert.ok(!isRetryable(new ConnectError("connection dropped", Code.Unavailable), createUser));
  });

  it("retries any method when the request was never sent", () => {
    assert.ok(isRetryable(markNeverSent(new ConnectError("no endpoint", Code.Unavailable)), createUser));
  });

  it("never retries what a hop passes on from its upstream (one retry layer), nor a call that spent its connect wait", () => {
    const relayed = markNeverSent(new ConnectError("a dependency is unavailable", Code.Unavailable, NO_RETRY_PUSHBACK));
    assert.ok(!isRetryable(relayed, getUser));
    assert.ok(!isRetryable(markFinal(markNeverSent(new ConnectError("no ready endpoint", Code.Unavailable))), getUser));
  });

  it("reads the server's pushback as gRPC A6 does", () => {
    const withPushback = (v: string) => new ConnectError("x", Code.Unavailable, { "grpc-retry-pushback-ms": v });
    assert.equal(retryPushback(new ConnectError("x", Code.Unavailable)), undefined);
    assert.equal(retryPushback(withPushback("250")), 250);
    assert.equal(retryPushback(withPushback("-1")), "never");
    assert.equal(retryPushback(withPushback("soon")), "never");
    assert.ok(isRetryable(withPushback("250"), getUser));
  });

  it("retries no other code", () => {
    for (const code of [Code.DeadlineExceeded, Code.Internal, Code.ResourceExhausted, Code.Aborted, Code.Unknown]) {
      assert.ok(!isRetryable(new ConnectError("x", code), getUser), Code[code]);
    }
  });
});

describe("backoffMs", () => {
  it("is full jitter: from 0 up to the exponential ceiling, capped", () => {
    assert.equal(
      backoffMs(1, DEFAULT_RETRY, () => 0),
      0,
    );
    assert.equal(
      backoffMs(1, DEFAULT_RETRY, () => 0.999),
      49,
    );
    assert.equal(
      backoffMs(2, DEFAULT_RETRY, () => 0.999),
      99,
    );
    assert.equal(
      backoffMs(10, DEFAULT_RETRY, () => 0.999),
      999,
    );
  });
});

describe("RetryBudget", () => {
  it("starts full, allows one retry per token, and refills by the ratio per call", () => {
    const budget = new RetryBudget({ ratio: 0.1, initialTokens: 2, maxTokens: 2 });
    assert.ok(budget.withdraw());
    assert.ok(budget.withdraw());
    assert.ok(!budget.withdraw());
    for (let i = 0; i < 9; i++) budget.deposit();
    assert.ok(!budget.withdraw(), "0.9 tokens are not a retry");
    budget.deposit();
    assert.ok(budget.withdraw());
  });

  it("caps saved-up tokens at maxTokens", () => {
    const budget = new RetryBudget({ ratio: 1, initialTokens: 0, maxTokens: 3 });
    for (let i = 0; i < 10; i++) budget.deposit();
    assert.equal(budget.tokens, 3);
  });

  it("bounds retries to ratio × calls + the initial tokens, which are the bucket's size", () => {
    const budget = new RetryBudget();
    assert.equal(budget.tokens, budget.maxTokens, "starts full");
    let retries = 0;
    for (let call = 0; call < 1_000; call++) {
      budget.deposit();
      while (budget.withdraw()) retries++;
    }
    assert.ok(retries <= 0.1 * 1_000 + budget.maxTokens, `${retries} retries`);
    assert.ok(retries >= 0.1 * 1_000 + budget.maxTokens - 1);
  });
});

describe("balancing", () => {
  const endpoints = () => [{ inFlight: 0 }, { inFlight: 0 }, { inFlight: 0 }];

  it("round robin takes each endpoint in turn", () => {
    const list = endpoints();
    const picker = createPicker<(typeof list)[number]>("round_robin");
    const counts = new Map(list.map((e) => [e, 0]));
    for (let i = 0; i < 300; i++) {
      const e = picker.pick(list);
      counts.set(e, (counts.get(e) ?? 0) + 1);
    }
    assert.deepEqual([...counts.values()], [100, 100, 100]);
  });

  it("least loaded steers away from the busy endpoint", () => {
    const list = endpoints();
    (list[0] as { inFlight: number }).inFlight = 50;
    const picker = createPicker<(typeof list)[number]>("least_loaded");
    let busy = 0;
    for (let i = 0; i < 1_000; i++) if (picker.pick(list) === list[0]) busy++;
    assert.equal(busy, 0, "the busiest of two choices is never taken");
  });
});
