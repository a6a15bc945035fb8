/**
 * The demo as users run it: images built from the Dockerfile, the three
 * services started by docker-compose, calls from the host through the whole
 * chain, a graceful stop of profiles under load, and a teardown that leaves
 * nothing behind. Fails with the compose logs when anything is wrong.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { freePort } from "@demo/rpc-kit/testing";

const root = fileURLToPath(new URL("../../../", import.meta.url));
const project = `rpcchaintest${process.pid}`;
const SERVICES = ["users", "profiles", "gateway"];
let gatewayPort = 0;

function compose(args: string[], timeoutMs = 120_000): string {
  return execFileSync("docker-compose", ["-p", project, "-f", `${root}/docker-compose.yml`, ...args], {
    cwd: root,
    encoding: "utf8",
    timeout: timeoutMs,
    env: { ...process.env, GATEWAY_PORT: String(gatewayPort) },
    stdio: ["ignore", "pipe", "pipe"],
  });
}

function docker(args: string[]): string {
  return execFileSync("docker", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
}

function containerOf(service: string): string {
  return compose(["ps", "-q", service]).trim();
}

/** Runs `body`; on failure prints the compose logs before failing. */
async function withLogs(body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (err) {
    try {
      process.stderr.write(
        `\n---- docker-compose logs (${project}) ----\n${compose(["logs", "--no-color", "--tail=200"])}\n`,
      );
    } catch (logErr) {
      process.stderr.write(`(no compose logs: ${String(logErr)})\n`);
    }
    throw err;
  }
}

const call = (method: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(`http://127.0.0.1:${gatewayPort}/demo.gateway.v1.GatewayService/${method}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });

describe("docker-compose: the three services in containers", () => {
  before(async () => {
    gatewayPort = await freePort();
    await withLogs(async () => {
      const started = Date.now();
      compose(["build", "--force-rm", ...SERVICES], 1_200_000);
      process.stderr.write(`images built in ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
      for (const s of SERVICES) {
        process.stderr.write(
          `image rpc-chain/${s}:0.1.0 ${docker(["image", "inspect", "-f", "{{.Size}}", `rpc-chain/${s}:0.1.0`])} bytes\n`,
        );
      }
      compose(["up", "-d", ...SERVICES]);
      const deadline = Date.now() + 120_000;
      for (const s of SERVICES) {
        for (;;) {
          const health = docker(["inspect", "-f", "{{.State.Health.Status}}", containerOf(s)]);
          if (health === "healthy") break;
          assert.ok(Date.now() < deadline, `${s} healthy within 120 s (is ${health})`);
          await new Promise((r) => setTimeout(r, 500));
        }
      }
    });
  });

  after(() => {
    compose(["down", "--volumes", "--remove-orphans", "--timeout", "20"]);
    const label = `label=com.docker.compose.project=${project}`;
    assert.equal(docker(["ps", "-a", "-q", "--filter", label]), "", "no containers left");
    assert.equal(docker(["network", "ls", "-q", "--filter", label]), "", "no networks left");
    assert.equal(docker(["volume", "ls", "-q", "--filter", label]), "", "no volumes left");
  });

  it("runs every container as a non-root user, Node as PID 1", () =>
    withLogs(async () => {
      for (const s of SERVICES) {
        const id = containerOf(s);
        assert.equal(docker(["exec", id, "id", "-u"]), "1000", `${s} runs as uid 1000`);
        assert.match(docker(["exec", id, "cat", "/proc/1/cmdline"]).replace(/\0/g, " "), /^node .*dist\/main\.js/);
      }
    }));

  it("answers through the whole chain from the host: a profile, a NotFound, the stream", () =>
    withLogs(async () => {
      const ok = await call("GetProfile", { userId: "u-1" });
      assert.equal(ok.status, 200);
      assert.equal(((await ok.json()) as { profile: { user: { name: string } } }).profile.user.name, "Ada Lovelace");
      const missing = await call("GetProfile", { userId: "nobody" });
      assert.equal(missing.status, 404);
      assert.equal(((await missing.json()) as { code: string }).code, "not_found");
      const stream = await fetch(`http://127.0.0.1:${gatewayPort}/demo.gateway.v1.GatewayService/ListProfiles`, {
        method: "POST",
        headers: { "content-type": "application/connect+json" },
        body: new Uint8Array(0),
      });
      assert.equal(stream.status, 200);
      const text = await stream.text();
      for (const id of ["u-1", "u-2", "u-3"]) assert.ok(text.includes(`"id":"${id}"`), `stream has ${id}`);
    }));

  it("serves the demo page from the gateway's image, and every hop of a call by its compose name", () =>
    withLogs(async () => {
      const page = await fetch(`http://127.0.0.1:${gatewayPort}/`);
      assert.equal(page.status, 200);
      assert.equal(page.headers.get("content-type"), "text/html; charset=utf-8");
      assert.match(page.headers.get("content-security-policy") ?? "", /script-src 'self'/);
      const script = /src="(\/assets\/main-[A-Z0-9]{8}\.js)"/.exec(await page.text())?.[1];
      assert.ok(script, "the page links its script");
      const js = await fetch(`http://127.0.0.1:${gatewayPort}${script}`);
      assert.equal(js.status, 200);
      assert.equal(js.headers.get("cache-control"), "public, max-age=31536000, immutable");
      await js.arrayBuffer();

      const res = await call("GetProfile", { userId: "u-1" }, { "x-server-timing": "on" });
      await res.arrayBuffer();
      const hops = [...(res.headers.get("trailer-server-timing") ?? "").matchAll(/(?:^|, )([\w.-]+);dur=/g)].map(
        (m) => m[1],
      );
      assert.deepEqual(hops, ["gateway", "profiles", "users"]);
    }));

  it("finishes the calls profiles accepted when it gets SIGTERM from docker stop", () =>
    withLogs(async () => {
      const outcomes: string[] = [];
      const burstStart = new Date().toISOString();
      let sent = 0;
      // Each call spends 200 ms in users, so calls are in flight in profiles when it is stopped.
      const headers = { "x-fault-delay-ms": "200", "x-fault-target": "users", "connect-timeout-ms": "10000" };
      const burst = Promise.all(
        Array.from({ length: 20 }, async () => {
          while (sent < 300) {
            sent++;
            const res = await call("GetProfile", { userId: "u-2" }, headers);
            outcomes.push(res.status === 200 ? "ok" : ((await res.json()) as { code: string }).code);
          }
        }),
      );
      await new Promise((r) => setTimeout(r, 1_000));
      const profiles = containerOf("profiles");
      docker(["stop", "--time", "20", profiles]);
      await burst;
      assert.equal(docker(["inspect", "-f", "{{.State.ExitCode}}", profiles]), "0", "profiles exited 0 after SIGTERM");
      const lines = docker(["logs", profiles])
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      const served = lines.filter((l) => l.rpc_method === "GetProfile" && String(l.time) >= burstStart);
      assert.ok(served.length > 0);
      assert.deepEqual(
        served.filter((l) => l.rpc_code !== "ok").map((l) => l.rpc_code),
        [],
        "every call profiles accepted finished",
      );
      assert.equal(outcomes.filter((o) => o === "ok").length, served.length, "and reached the caller");
      assert.deepEqual(
        [...new Set(outcomes.filter((o) => o !== "ok"))].filter((c) => c !== "unavailable"),
        [],
      );
      assert.ok(lines.some((l) => l.msg === "profiles stopped"));
    }));
});
