import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ConfigError, loadConfig, parseTarget, setting } from "./config.ts";

const spec = {
  port: setting.port("PORT", 50051, "RPC port"),
  level: setting.oneOf("LOG_LEVEL", ["info", "debug"], "info", "log level"),
  upstream: setting.target("USERS_ADDR", undefined, "users address"),
  faults: setting.bool("FAULTS", false, "fault injection"),
};

describe("loadConfig", () => {
  it("applies defaults and parses set values", () => {
    const config = loadConfig(spec, { USERS_ADDR: "users:50051", LOG_LEVEL: "DEBUG", FAULTS: "on" });
    assert.deepEqual(config, { port: 50051, level: "debug", upstream: "dns:///users:50051", faults: true });
    assert.ok(Object.isFrozen(config));
  });

  it("reports every problem at once, naming each variable and value", () => {
    let err: ConfigError | undefined;
    try {
      loadConfig(spec, { PORT: "80a", LOG_LEVEL: "loud", FAULTS: "maybe" });
    } catch (e) {
      err = e as ConfigError;
    }
    assert.ok(err instanceof ConfigError);
    assert.equal(err.problems.length, 4);
    assert.match(err.message, /PORT="80a": must be an integer from 0 to 65535/);
    assert.match(err.message, /LOG_LEVEL="loud": must be one of info, debug/);
    assert.match(err.message, /USERS_ADDR: is required \(users address\)/);
    assert.match(err.message, /FAULTS="maybe": must be on or off/);
  });

  it("treats an empty variable as unset", () => {
    assert.equal(loadConfig(spec, { PORT: "", USERS_ADDR: "users:1" }).port, 50051);
  });

  it("rejects out-of-range ports", () => {
    assert.throws(() => loadConfig(spec, { PORT: "70000", USERS_ADDR: "users:1" }), /PORT="70000"/);
  });
});

describe("parseTarget", () => {
  it("normalizes DNS names to dns:///", () => {
    assert.equal(parseTarget("users:50051"), "dns:///users:50051");
    assert.equal(parseTarget("dns:///users.demo.svc.cluster.local:50051"), "dns:///users.demo.svc.cluster.local:50051");
    assert.equal(parseTarget("[::1]:50051"), "dns:///[::1]:50051");
  });

  it("rejects what grpc-js would misread", () => {
    for (const bad of ["users", "http://users:50051", "users:0", "users:99999", "dns://users:1", "users:50051/x"]) {
      assert.throws(() => parseTarget(bad), Error, bad);
    }
  });
});
