/**
 * The demo as users run it: images built from the Dockerfile, the three
 * services and users' PostgreSQL started by docker-compose, calls from the
 * host through the whole chain, users created before a restart of users read
 * back after it, a graceful stop of profiles under load, no database password
 * in any log, and a teardown that leaves nothing behind. Fails with the
 * compose logs when anything is wrong.
 *
 * PostgreSQL runs the stand-in that run.sh builds (the official image cannot
 * be pulled here): compose.postgres-standin.yml swaps only its image.
 */
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { type AddressInfo, createServer } from "node:net";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

/** A TCP port free on the host right now (no import of a workspace's build output: runs from a fresh clone). */
async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
  const { port } = probe.address() as AddressInfo;
  await new Promise((r) => probe.close(r));
  return port;
}

const root = fileURLToPath(new URL("../../../", import.meta.url));
const project = `rpcchaintest${process.pid}`;
const SERVICES = ["users", "profiles", "gateway"];
/** Started with them: users depends on it. */
const DATABASE = "postgres";
const FILES = ["-f", `${root}/docker-compose.yml`, "-f", `${root}/tests/deploy/docker/compose.postgres-standin.yml`];
let gatewayPort = 0;
/** Host ports of the admin ports compose publishes on loopback (9051, 9052, 9080 by default). */
const adminPorts: Record<string, number> = {};

function compose(args: string[], timeoutMs = 120_000): string {
  return execFileSync("docker-compose", ["-p", project, ...FILES, ...args], {
    cwd: root,
    encoding: "utf8",
    timeout: timeoutMs,
    env: {
      ...process.env,
      GATEWAY_PORT: String(gatewayPort),
      USERS_ADMIN_PORT: String(adminPorts.users),
      PROFILES_ADMIN_PORT: String(adminPorts.profiles),
      GATEWAY_ADMIN_PORT: String(adminPorts.gateway),
    },
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

/** Waits until the container of `service` reports healthy. */
async function healthy(service: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const health = docker(["inspect", "-f", "{{.State.Health.Status}}", containerOf(service)]);
    if (health === "healthy") return;
    assert.ok(Date.now() < deadline, `${service} healthy within ${timeoutMs / 1000} s (is ${health})`);
    await sleep(500);
  }
}

/** A container's environment (docker inspect), as a map. */
function envOf(service: string): Record<string, string> {
  const lines = docker(["inspect", "-f", "{{range .Config.Env}}{{println .}}{{end}}", containerOf(service)]);
  return Object.fromEntries(
    lines
      .split("\n")
      .filter(Boolean)
      .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );
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
    for (const s of SERVICES) adminPorts[s] = await freePort();
    await withLogs(async () => {
      const started = Date.now();
      compose(["build", "--force-rm", ...SERVICES], 1_200_000);
      process.stderr.write(`images built in ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
      for (const s of SERVICES) {
        process.stderr.write(
          `image rpc-chain/${s}:0.1.0 ${docker(["image", "inspect", "-f", "{{.Size}}", `rpc-chain/${s}:0.1.0`])} bytes\n`,
        );
      }
      // users' depends_on starts the database first and waits until it is healthy.
      compose(["up", "-d", ...SERVICES]);
      const upAt = Date.now();
      for (const s of [DATABASE, ...SERVICES]) await healthy(s, 120_000 - (Date.now() - upAt));
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

  it("publishes each service's admin port on the host's loopback, as the README's curl examples use them", () =>
    withLogs(async () => {
      for (const s of SERVICES) {
        const ready = await fetch(`http://127.0.0.1:${adminPorts[s]}/readyz`);
        assert.equal(ready.status, 200, `${s} /readyz`);
      }
      const debug = await fetch(`http://127.0.0.1:${adminPorts.profiles}/debug/rpc`);
      assert.equal(debug.status, 200, "profiles /debug/rpc");
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
      // users times its queries as one more hop, named for the database (never its host or port).
      assert.deepEqual(hops, ["gateway", "profiles", "users", "postgres"]);
    }));

  it("keeps users in PostgreSQL: users created through the gateway are read back, same ids and emails, after users restarts", () =>
    withLogs(async () => {
      // The database on the compose network only, on its named volume.
      const db = containerOf(DATABASE);
      assert.equal(docker(["port", db]), "", "PostgreSQL publishes no host port");
      const mounts = JSON.parse(docker(["inspect", "-f", "{{json .Mounts}}", db])) as {
        Type: string;
        Name: string;
        Destination: string;
      }[];
      assert.deepEqual(
        mounts.map((m) => `${m.Type} ${m.Name} ${m.Destination}`),
        [`volume ${project}_postgres-data /var/lib/postgresql/data`],
      );

      const tag = `${process.pid}-${Date.now()}`;
      const wanted = [
        { name: "Grace Hopper", email: `grace.${tag}@example.com` },
        { name: "Edsger Dijkstra", email: `edsger.${tag}@example.com` },
      ];
      const created: { id: string; name: string; email: string }[] = [];
      for (const user of wanted) {
        const res = await call("CreateUser", user);
        const body = await res.text();
        assert.equal(res.status, 200, `CreateUser: HTTP ${res.status} ${body}`);
        const made = (JSON.parse(body) as { user: { id: string; name: string; email: string } }).user;
        assert.match(made.id, /^u-\d+$/, "a database-assigned id");
        assert.equal(made.email, user.email);
        created.push(made);
      }
      assert.notEqual(created[0]?.id, created[1]?.id, "two users, two ids");

      const users = containerOf("users");
      const restartedAt = Date.now();
      compose(["restart", "users"]);
      await healthy("users", 60_000);
      assert.equal(containerOf("users"), users, "the same container, restarted: its process memory is gone");
      const startedAt = Date.parse(docker(["inspect", "-f", "{{.State.StartedAt}}", users]));
      assert.ok(startedAt >= restartedAt - 1_000, "users' process started again");

      for (const user of created) {
        const res = await call("GetProfile", { userId: user.id });
        const body = await res.text();
        assert.equal(res.status, 200, `GetProfile ${user.id} after the restart: HTTP ${res.status} ${body}`);
        const found = (JSON.parse(body) as { profile: { user: { id: string; name: string; email: string } } }).profile
          .user;
        assert.deepEqual(
          { id: found.id, name: found.name, email: found.email },
          { id: user.id, name: user.name, email: user.email },
        );
      }
      // The seed is still there too.
      assert.equal((await call("GetProfile", { userId: "u-1" })).status, 200);
    }));

  it("finishes every call started before profiles got SIGTERM from docker stop; only later ones may fail, Unavailable", () =>
    withLogs(async () => {
      interface Outcome {
        startedAt: number;
        endedAt: number;
        code: string;
      }
      const outcomes: Outcome[] = [];
      const burstStart = new Date().toISOString();
      let done = false;
      let sent = 0;
      // Each call spends 200 ms in users, so ~20 calls are in flight in profiles when it gets the signal.
      const headers = { "x-fault-delay-ms": "200", "x-fault-target": "users", "connect-timeout-ms": "10000" };
      const outcomeOf = async (res: Response): Promise<string> => {
        const text = await res.text();
        if (res.status === 200) return "ok";
        try {
          return (JSON.parse(text) as { code?: string }).code ?? `HTTP ${res.status}`;
        } catch {
          return `HTTP ${res.status}: ${text.slice(0, 100)}`;
        }
      };
      // Calls go on before, during and after the stop (profiles may take ~10 s to exit while it
      // flushes telemetry to a collector that is not running here), until a second after it is
      // gone; a worker whose call failed waits 50 ms, or fast failures would fill the cap at once.
      const burst = Promise.all(
        Array.from({ length: 20 }, async () => {
          while (!done && sent < 20_000) {
            sent++;
            const startedAt = Date.now();
            const code = await call("GetProfile", { userId: "u-2" }, headers).then(outcomeOf, (err: unknown) => {
              return `fetch failed: ${String(err)}`;
            });
            outcomes.push({ startedAt, endedAt: Date.now(), code });
            if (code !== "ok") await sleep(50);
          }
        }),
      );
      await sleep(1_000);
      const profiles = containerOf("profiles");
      const stopRequestedAt = Date.now();
      // Not execFileSync: the event loop must go on sending and reading calls while profiles drains.
      await execFileAsync("docker", ["stop", "--time", "20", profiles]);
      await sleep(1_000);
      done = true;
      await burst;
      assert.ok(sent < 20_000, "the calls went on until after profiles had gone");

      assert.equal(docker(["inspect", "-f", "{{.State.ExitCode}}", profiles]), "0", "profiles exited 0 after SIGTERM");
      const exitedAt = Date.parse(docker(["inspect", "-f", "{{.State.FinishedAt}}", profiles]));
      const lines = docker(["logs", profiles])
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      const signal = lines.find((l) => l.msg === "signal received" && String(l.time) >= burstStart);
      assert.ok(signal, "profiles logged the signal");
      // The moment profiles began draining (same clock: containers share the host's).
      const signalAt = Date.parse(String(signal.time));
      assert.ok(signalAt >= stopRequestedAt - 50, "the signal came from docker stop");
      assert.ok(exitedAt > signalAt, "profiles exited after the signal");
      const at = (o: Outcome) => `${o.code} (started ${o.startedAt - signalAt} ms from the signal)`;

      // Every call started before the signal finished, whether it was in flight or not: none was cut off.
      const before = outcomes.filter((o) => o.startedAt < signalAt);
      const inFlight = before.filter((o) => o.endedAt > signalAt);
      assert.ok(inFlight.length >= 5, `${inFlight.length} calls in flight when the signal came`);
      assert.deepEqual(
        before.filter((o) => o.code !== "ok").map(at),
        [],
        "every call started before the signal succeeded",
      );
      // Started after: answered, or refused as Unavailable (never cancelled, never an internal error).
      const later = outcomes.filter((o) => o.startedAt >= signalAt);
      assert.deepEqual(
        later.filter((o) => o.code !== "ok" && o.code !== "unavailable").map(at),
        [],
        "calls started after the signal: OK or Unavailable",
      );
      // Once profiles is gone nothing answers them: the burst reached past its exit.
      const afterExit = outcomes.filter((o) => o.startedAt > exitedAt);
      assert.ok(afterExit.length > 0, "calls started after profiles exited");
      assert.deepEqual([...new Set(afterExit.map((o) => o.code))], ["unavailable"], "profiles gone: Unavailable");

      // profiles' side: every call it accepted finished OK and reached the caller.
      const served = lines.filter((l) => l.rpc_method === "GetProfile" && String(l.time) >= burstStart);
      assert.ok(served.length > 0);
      assert.deepEqual(
        served.filter((l) => l.rpc_code !== "ok").map((l) => l.rpc_code),
        [],
        "every call profiles accepted finished",
      );
      assert.equal(outcomes.filter((o) => o.code === "ok").length, served.length, "and reached the caller");
      assert.ok(!lines.some((l) => l.level === "warn" && String(l.msg).includes("did not finish in time")));
      assert.ok(lines.some((l) => l.msg === "profiles stopped"));
      process.stderr.write(
        `SIGTERM drill: ${outcomes.length} calls, ${before.length} started before the signal (${inFlight.length} in flight), ` +
          `${later.filter((o) => o.code === "ok").length} OK and ${later.filter((o) => o.code !== "ok").length} Unavailable after it\n`,
      );
    }));

  it("writes the database password into no container's log", () =>
    withLogs(async () => {
      const password = envOf(DATABASE).POSTGRES_PASSWORD ?? "";
      assert.match(password, /NOT-A-SECRET/, "the demo's fake password");
      assert.ok(envOf("users").DATABASE_URL?.includes(`:${password}@`), "users got it in DATABASE_URL");
      const ids = docker(["ps", "-a", "-q", "--filter", `label=com.docker.compose.project=${project}`]).split("\n");
      assert.ok(ids.length >= 4, `${ids.length} containers: users, profiles, gateway, postgres`);
      for (const id of ids) {
        const name = docker(["inspect", "-f", "{{.Name}}", id]);
        // stdout and stderr both: docker logs replays each on its own stream.
        const { stdout, stderr } = await execFileAsync("docker", ["logs", id], { maxBuffer: 256 * 1024 * 1024 });
        for (const [stream, text] of [
          ["stdout", stdout],
          ["stderr", stderr],
        ] as const) {
          assert.ok(!text.includes(password), `${name} ${stream}: no database password`);
          assert.ok(!text.includes(encodeURIComponent(password)), `${name} ${stream}: not even URL-encoded`);
        }
      }
    }));
});
