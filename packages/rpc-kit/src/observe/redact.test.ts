import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { GetProfileResponseSchema, ProfileService } from "@demo/proto/demo/profiles/v1/profiles_pb";
import { captureLogger } from "../testing/index.ts";
import { REDACTED, redactForLog, redactMessage, registerServiceSchemas } from "./redact.ts";

const response = create(GetProfileResponseSchema, {
  profile: {
    user: { id: "u-1", name: "Ada Lovelace", email: "ada@example.com", createdAt: timestampFromDate(new Date(0)) },
    displayName: "Ada L.",
    initials: "AL",
  },
});

describe("redactMessage", () => {
  it("masks debug_redact fields at any depth and keeps the rest", () => {
    assert.deepEqual(redactMessage(GetProfileResponseSchema, response), {
      profile: {
        user: { id: "u-1", name: "Ada Lovelace", email: REDACTED, createdAt: { iso: "1970-01-01T00:00:00.000Z" } },
        displayName: "Ada L.",
        initials: "AL",
      },
    });
  });
});

describe("redactForLog", () => {
  it("does not show messages of unknown schema at all", () => {
    const view = JSON.stringify(redactForLog({ res: response }));
    assert.doesNotMatch(view, /ada@example\.com/);
    assert.doesNotMatch(view, /Ada Lovelace/);
  });

  it("redacts known messages found in log objects", () => {
    registerServiceSchemas(ProfileService);
    const view = JSON.stringify(redactForLog({ res: response, list: [response] }));
    assert.doesNotMatch(view, /ada@example\.com/);
    assert.match(view, /Ada Lovelace/);
  });
});

describe("logger", () => {
  it("never writes a debug_redact field, however a message is logged", () => {
    registerServiceSchemas(ProfileService);
    const { logger, text } = captureLogger("test");
    logger.info({ response }, "as a field");
    logger.info({ nested: { response } }, "nested");
    logger.info({ responses: [response] }, "in an array");
    logger.info(response as unknown as Record<string, unknown>, "as the object");
    assert.equal(text().split("\n").filter(Boolean).length, 4);
    assert.doesNotMatch(text(), /ada@example\.com/);
    assert.match(text(), /\[REDACTED\]/);
  });

  it("censors credentials a handler might log", () => {
    const { logger, text } = captureLogger("test");
    logger.info({ headers: { authorization: "Bearer s3cret" }, token: "t0ken" }, "oops");
    assert.doesNotMatch(text(), /s3cret|t0ken/);
  });
});
