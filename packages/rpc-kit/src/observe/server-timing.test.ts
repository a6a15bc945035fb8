import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { outcomeCode } from "../call/codes.ts";
import { type CallTimings, formatServerTiming, type HopTiming, parseServerTiming } from "./server-timing.ts";

const TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

function hop(init: Partial<HopTiming> & Pick<HopTiming, "service">): HopTiming {
  return { method: "demo.users.v1.UserService/GetUser", durationMs: 1, code: "ok", byCaller: false, ...init };
}

describe("server-timing: format and parse", () => {
  it("round-trips a call's hops in order, with the traceparent entry first", () => {
    const timings: CallTimings = {
      traceparent: TRACEPARENT,
      hops: [
        hop({ service: "gateway", method: "demo.gateway.v1.GatewayService/GetProfile", durationMs: 12.4 }),
        hop({ service: "profiles", method: "demo.profiles.v1.ProfileService/GetProfile", durationMs: 8.1 }),
        hop({ service: "users", method: "demo.users.v1.UserService/GetUser", durationMs: 0.9, code: "not_found" }),
      ],
    };
    const header = formatServerTiming(timings);
    assert.match(header, /^traceparent;desc=/);
    assert.equal(header.split(", ").length, 4);
    assert.deepEqual(parseServerTiming(header), timings);
  });

  it("writes the standard syntax: name;dur=…;desc=…;code=…", () => {
    assert.equal(
      formatServerTiming({ hops: [hop({ service: "users", durationMs: 0.9 })] }),
      'users;dur=0.9;desc="demo.users.v1.UserService/GetUser";code=ok',
    );
  });

  it("rounds durations to 0.01 ms", () => {
    const header = formatServerTiming({
      hops: [
        hop({ service: "a", durationMs: 12.345678 }),
        hop({ service: "b", durationMs: 0.004 }),
        hop({ service: "c", durationMs: 7 }),
      ],
    });
    assert.match(header, /^a;dur=12\.35;/);
    assert.deepEqual(
      parseServerTiming(header).hops.map((h) => h.durationMs),
      [12.35, 0, 7],
    );
  });

  it("marks a hop the caller timed with by=caller, and only that one", () => {
    const header = formatServerTiming({
      hops: [
        hop({ service: "gateway", durationMs: 3000 }),
        hop({ service: "profiles", durationMs: 2999.5, code: "deadline_exceeded", byCaller: true }),
      ],
    });
    assert.match(header, /profiles;dur=2999\.5;desc="[^"]+";code=deadline_exceeded;by=caller$/);
    assert.equal(header.match(/by=caller/g)?.length, 1);
    const { hops } = parseServerTiming(header);
    assert.deepEqual(
      hops.map((h) => [h.service, h.code, h.byCaller]),
      [
        ["gateway", "ok", false],
        ["profiles", "deadline_exceeded", true],
      ],
    );
  });

  it("has no traceparent when the call was not traced", () => {
    const header = formatServerTiming({ hops: [hop({ service: "users" })] });
    assert.doesNotMatch(header, /traceparent/);
    const parsed = parseServerTiming(header);
    assert.equal(parsed.traceparent, undefined);
    assert.ok(!("traceparent" in parsed));
    assert.equal(formatServerTiming({ hops: [] }), "");
    assert.equal(formatServerTiming({ traceparent: TRACEPARENT, hops: [] }), `traceparent;desc=${TRACEPARENT}`);
  });

  it("turns a name that is no token (an address) into one, so the entry still parses", () => {
    const header = formatServerTiming({
      hops: [hop({ service: "[::1]:50051", code: "unavailable", byCaller: true }), hop({ service: "users" })],
    });
    // The address became a token: the entry starts name;dur= with nothing unparseable in between.
    assert.match(header, /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+;dur=1;/);
    const [first, second] = parseServerTiming(header).hops;
    assert.ok(first && second);
    assert.match(first.service, /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/);
    assert.match(first.service, /1_+50051$/);
    assert.doesNotMatch(first.service, /[[\]:]/);
    assert.equal(first.code, "unavailable");
    assert.equal(first.byCaller, true);
    assert.equal(second.service, "users");
    // An empty name still makes a well-formed entry.
    assert.equal(parseServerTiming(formatServerTiming({ hops: [hop({ service: "" })] })).hops.length, 1);
  });

  it("keeps descriptions with quotes, commas, semicolons, backslashes and spaces intact", () => {
    const methods = [
      'say "hi", then leave',
      "C:\\path\\to\\thing",
      "trailing backslash \\",
      'a;dur=5, b;desc="x"',
      "= = =",
      "plain",
    ];
    const timings: CallTimings = {
      hops: methods.map((method, i) => hop({ service: `s${i}`, method, durationMs: i })),
    };
    assert.deepEqual(parseServerTiming(formatServerTiming(timings)), timings);
  });

  it("ignores entries that are no hops: a proxy's cache;desc=hit, a total;dur=3 without desc", () => {
    const ours = formatServerTiming({ traceparent: TRACEPARENT, hops: [hop({ service: "users", durationMs: 2 })] });
    const parsed = parseServerTiming(`cache;desc=hit, ${ours}, total;dur=3, db;dur=abc;desc=x, miss`);
    assert.equal(parsed.traceparent, TRACEPARENT);
    assert.deepEqual(parsed.hops, [hop({ service: "users", durationMs: 2 })]);
  });

  it("takes no hop whose duration is missing, empty or not a plain decimal", () => {
    assert.deepEqual(
      parseServerTiming('a;dur;desc="x/Y", b;dur=;desc="x/Y", c;dur=0x10;desc="x/Y", d;dur=-1;desc="x/Y"').hops,
      [],
    );
  });

  it("writes a duration that is not a number as 0, and never names a hop traceparent", () => {
    const value = formatServerTiming({ hops: [hop({ service: "traceparent", durationMs: Number.NaN })] });
    assert.match(value, /^traceparent_;dur=0;/);
    assert.equal(parseServerTiming(value).traceparent, undefined);
  });

  it("reads a hop without a code as code unknown", () => {
    assert.deepEqual(parseServerTiming('edge;dur=4;desc="a/B"').hops, [
      { service: "edge", method: "a/B", durationMs: 4, code: "unknown", byCaller: false },
    ]);
  });

  it("reads parameter names case-insensitively and tolerates spaces around separators", () => {
    assert.deepEqual(parseServerTiming(' users ; DUR=5 ; Desc="a/B" ; code=ok ,  x;dur=1').hops, [
      { service: "users", method: "a/B", durationMs: 5, code: "ok", byCaller: false },
    ]);
  });

  it("lets the first occurrence of a repeated parameter win", () => {
    const [h] = parseServerTiming('users;dur=5;dur=9;desc="first/A";desc="second/B";code=ok;code=internal').hops;
    assert.deepEqual(h, { service: "users", method: "first/A", durationMs: 5, code: "ok", byCaller: false });
    assert.equal(
      parseServerTiming(`traceparent;desc=${TRACEPARENT};desc=other`).traceparent,
      TRACEPARENT,
      "the traceparent's desc too",
    );
  });

  it("yields no hops for empty, missing or malformed input, and never throws", () => {
    const inputs: (string | null | undefined)[] = [
      "",
      null,
      undefined,
      ";;,,=",
      ",,,",
      "   ",
      "=;=;=",
      '"',
      'a;desc="unterminated',
      'a;desc="x\\',
      ";dur=1;desc=x",
      "\u0000\uffff",
      "a;dur=1e400;desc=x",
    ];
    for (const input of inputs) {
      let parsed: CallTimings | undefined;
      assert.doesNotThrow(
        () => {
          parsed = parseServerTiming(input);
        },
        `input ${JSON.stringify(input)}`,
      );
      assert.deepEqual(parsed, { hops: [] }, `input ${JSON.stringify(input)}`);
    }
  });

  it("recovers the next entry after a malformed one", () => {
    const parsed = parseServerTiming('junk junk "x, y";;=, users;dur=2;desc="a/B";code=ok');
    assert.deepEqual(
      parsed.hops.map((h) => h.service),
      ["users"],
    );
  });
});

describe("outcomeCode", () => {
  it("is ok without an error, and the error's Connect code name otherwise", () => {
    assert.equal(outcomeCode(undefined), "ok");
    assert.equal(outcomeCode(new ConnectError("gone", Code.NotFound)), "not_found");
    assert.equal(outcomeCode(new ConnectError("late", Code.DeadlineExceeded)), "deadline_exceeded");
    // Anything that is not a ConnectError is an unknown failure, not a success.
    assert.equal(outcomeCode(new Error("boom")), "unknown");
  });
});
