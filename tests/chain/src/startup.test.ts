import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import * as net from "node:net";
import { describe, it } from "node:test";
import { testDatabase } from "@demo/rpc-kit/testing";
import { repoRoot, spawnService } from "./processes.ts";

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

  it("refuses a DATABASE_URL that is not PostgreSQL's without repeating it (it holds a password)", async () => {
    const { code, lines } = await run({ DATABASE_URL: "mysql://admin:hunter2-pw@db.internal:3306/users" });
    assert.equal(code, 1);
    const text = lines.join("\n");
    assert.match(text, /DATABASE_URL: must start with postgres:\/\/ or postgresql:\/\//);
    assert.doesNotMatch(text, /hunter2|db\.internal|admin/);
  });

  it("says in one line which port is taken and which variable sets it", async () => {
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, r));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      const database = await testDatabase();
      const { code, lines } = await run({ PORT: String(port), ADMIN_PORT: "0", DATABASE_URL: database.url });
      await database.drop();
      assert.equal(code, 1);
      // The database opens first (its info lines); the failure itself is one line.
      const problems = lines
        .map((l) => JSON.parse(l) as { level: string; msg: string })
        .filter((l) => l.level !== "info");
      assert.equal(problems.length, 1, lines.join("\n"));
      const line = problems[0] ?? { level: "", msg: "" };
      assert.equal(line.level, "fatal");
      assert.equal(line.msg, `users cannot start: port ${port} is already in use (set PORT to a free port)`);
    } finally {
      blocker.close();
    }
  });

  it("migrates a database on its own (users' migrate command, an init container's), once, and refuses without DATABASE_URL", async () => {
    const database = await testDatabase();
    try {
      const migrate = async (env: Record<string, string>) => {
        const child = spawn(process.execPath, ["apps/users/dist/migrate.js"], {
          cwd: repoRoot,
          env: { PATH: process.env.PATH ?? "", LOG_FORMAT: "json", ...env },
          stdio: ["ignore", "pipe", "pipe"],
        });
        let out = "";
        child.stdout.setEncoding("utf8").on("data", (s: string) => (out += s));
        child.stderr.setEncoding("utf8").on("data", (s: string) => (out += s));
        const [code] = (await once(child, "exit")) as [number | null];
        return {
          code,
          lines: out
            .trim()
            .split("\n")
            .map((l) => JSON.parse(l) as Record<string, unknown>),
        };
      };
      const first = await migrate({ DATABASE_URL: database.url });
      assert.equal(first.code, 0);
      assert.deepEqual(
        first.lines.filter((l) => l.msg === "migration applied").map((l) => l.migration),
        ["0001_users", "0002_seed"],
      );
      const again = await migrate({ DATABASE_URL: database.url });
      assert.equal(again.code, 0);
      assert.equal(again.lines.find((l) => l.msg === "database schema is current")?.applied, 0);
      assert.doesNotMatch(JSON.stringify([...first.lines, ...again.lines]), /NOT-A-SECRET/);

      const unset = await migrate({});
      assert.equal(unset.code, 1);
      assert.match(String(unset.lines.at(-1)?.msg), /^users migrate cannot start: DATABASE_URL is not set/);
    } finally {
      await database.drop();
    }
  });
});
