import assert from "node:assert/strict";
import { once } from "node:events";
import * as net from "node:net";
import { describe, it } from "node:test";
import { spawnService } from "./processes.ts";

async function run(env: Record<string, string>) {
  const { child, output } = spawnService("users", env);
  const [code] = (await once(child, "exit")) as [number | null];
  return { code, lines: output().trim().split("\n") };
}

describe("starting a service", () => {
  it("reports every bad variable in one message and exits 1", async () => {
    const { code, lines } = await run({ PORT: "http", ADMIN_PORT: "99999", LOG_LEVEL: "chatty" });
    assert.equal(code, 1);
    const text = lines.join("\n");
    assert.match(lines[0] ?? "", /^users: invalid environment:$/);
    assert.match(text, /PORT="http": must be an integer/);
    assert.match(text, /ADMIN_PORT="99999": must be an integer from 0 to 65535/);
    assert.match(text, /LOG_LEVEL="chatty": must be one of/);
    assert.doesNotMatch(text, /\n\s+at /, "no stack trace");
  });

  it("says in one line which port is taken and which variable sets it", async () => {
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, r));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      const { code, lines } = await run({ PORT: String(port), ADMIN_PORT: "0" });
      assert.equal(code, 1);
      assert.equal(lines.length, 1, lines.join("\n"));
      const line = JSON.parse(lines[0] ?? "{}") as { level: string; msg: string };
      assert.equal(line.level, "fatal");
      assert.equal(line.msg, `users cannot start: port ${port} is already in use (set PORT to a free port)`);
    } finally {
      blocker.close();
    }
  });
});
