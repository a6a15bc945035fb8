import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseTarget } from "../config/config.ts";
import { parseTargetSpec } from "../config/target.ts";
import { endpointAddress, resolveTarget } from "./discovery.ts";

describe("targets", () => {
  it("reads dns, plain and static targets", () => {
    assert.deepEqual(parseTargetSpec("users:50051"), { kind: "dns", host: "users", port: 50051 });
    assert.deepEqual(parseTargetSpec("dns:///users.demo.svc.cluster.local:50051"), {
      kind: "dns",
      host: "users.demo.svc.cluster.local",
      port: 50051,
    });
    assert.deepEqual(parseTargetSpec("static:///10.0.0.1:1,[::1]:2"), {
      kind: "static",
      hostPorts: [
        { host: "10.0.0.1", port: 1 },
        { host: "::1", port: 2 },
      ],
    });
    assert.equal(parseTarget("static:///a:1,b:2"), "static:///a:1,b:2");
  });

  it("names endpoint addresses as grpc-js dials them", () => {
    assert.equal(endpointAddress("10.0.0.7", 50051), "ipv4:10.0.0.7:50051");
    assert.equal(endpointAddress("fd00::7", 50051), "ipv6:[fd00::7]:50051");
  });

  it("resolves every address of a name, through the system resolver", async () => {
    const addresses = await resolveTarget(parseTargetSpec("localhost:7"));
    assert.ok(addresses.includes("ipv4:127.0.0.1:7"), addresses.join());
    assert.deepEqual(await resolveTarget(parseTargetSpec("static:///127.0.0.2:1,127.0.0.3:1")), [
      "ipv4:127.0.0.2:1",
      "ipv4:127.0.0.3:1",
    ]);
  });
});
