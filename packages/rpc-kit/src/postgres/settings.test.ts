import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ConfigError, loadConfig } from "../config/config.ts";
import { checkDatabaseUrl, databaseSettings } from "./settings.ts";

const PASSWORD = "pw-Never-Shown-5512";

describe("DATABASE_URL", () => {
  it("accepts postgres:// and postgresql:// URLs that name a host", () => {
    checkDatabaseUrl(`postgres://app:${PASSWORD}@db.internal:5432/users`);
    checkDatabaseUrl(`postgresql://app:${PASSWORD}@10.0.0.7/users`);
    const config = loadConfig(databaseSettings(), { DATABASE_URL: `postgres://app:${PASSWORD}@db:5432/users` });
    assert.equal(config.databaseUrl, `postgres://app:${PASSWORD}@db:5432/users`);
    assert.equal(loadConfig(databaseSettings(), {}).databaseUrl, undefined, "unset: the embedded server");
  });

  for (const raw of [
    `mysql://app:${PASSWORD}@db.internal:3306/users`,
    `https://app:${PASSWORD}@db.internal/users`,
    `app:${PASSWORD}@db.internal:5432/users`,
    `db.internal:5432 ${PASSWORD}`,
    `postgres://app:${PASSWORD}@/users`,
  ]) {
    it(`refuses ${raw.split(PASSWORD).join("…")} without repeating it`, () => {
      assert.throws(
        () => checkDatabaseUrl(raw),
        (err: unknown) => {
          assert.ok(err instanceof Error);
          assert.ok(!err.message.includes(PASSWORD), err.message);
          assert.ok(!err.message.includes("db.internal"), err.message);
          return true;
        },
      );
      assert.throws(
        () => loadConfig(databaseSettings(), { DATABASE_URL: raw }),
        (err: unknown) => {
          assert.ok(err instanceof ConfigError);
          assert.match(err.message, /DATABASE_URL/);
          assert.ok(!err.message.includes(PASSWORD), err.message);
          assert.ok(!err.message.includes("db.internal"), err.message);
          return true;
        },
      );
    });
  }
});
