/**
 * `npm run new-service` in a copy of the repository, as a fork would run it:
 * the new service builds, type-checks, passes its own tests, buf lint and the
 * manifest checks, answers through a real call to users, and a second run (or
 * any refused input) changes nothing.
 */
import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { testDatabase } from "@demo/rpc-kit/testing";
import { kubectlMissing, type Obj, render } from "./k8s-render.ts";

const root = fileURLToPath(new URL("../../../", import.meta.url));
const copy = mkdtempSync(join(tmpdir(), "new-service-"));
after(() => rmSync(copy, { recursive: true, force: true }));

/** The outer `npm test`'s variables (npm's, turbo's, node --test's) would point the copy's commands back here. */
const env = Object.fromEntries(
  Object.entries(process.env).filter(([k]) => !/^(npm_|TURBO_|INIT_CWD$|NODE_TEST_CONTEXT$)/i.test(k)),
) as NodeJS.ProcessEnv;

function sh(command: string, args: string[], cwd = copy) {
  return spawnSync(command, args, { cwd, env, encoding: "utf8", maxBuffer: 64 << 20 });
}
function ok(command: string, args: string[], cwd = copy): string {
  const r = sh(command, args, cwd);
  assert.equal(r.status, 0, `${command} ${args.join(" ")} in ${cwd}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** Every file of the copy but installed and built ones, by content: what "changes nothing" compares. */
function snapshot(dir = copy, out = new Map<string, string>()): Map<string, string> {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if ([".git", "node_modules", ".turbo", "dist", ".data"].includes(e.name)) continue;
    const path = join(dir, e.name);
    if (e.isDirectory()) snapshot(path, out);
    else out.set(path.slice(copy.length), createHash("sha1").update(readFileSync(path)).digest("hex"));
  }
  return out;
}

/** The working tree as it is (tracked and new files), with the installed packages hard-linked. */
before(() => {
  const files = execFileSync("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], {
    cwd: root,
    encoding: "utf8",
  })
    .split("\0")
    .filter(Boolean);
  for (let i = 0; i < files.length; i += 500) {
    execFileSync("cp", ["--parents", "-t", copy, ...files.slice(i, i + 500)], { cwd: root });
  }
  execFileSync("cp", ["-al", "node_modules", join(copy, "node_modules")], { cwd: root });
  // npm rewrites its hidden lockfile in place: the copy gets its own, never the original's inode.
  rmSync(join(copy, "node_modules/.package-lock.json"));
  copyFileSync(join(root, "node_modules/.package-lock.json"), join(copy, "node_modules/.package-lock.json"));
});

describe("npm run new-service orders --calls users", { timeout: 600_000 }, () => {
  let firstRun: ReturnType<typeof sh>;
  before(() => {
    // As the README says, through npm.
    firstRun = sh("npm", ["run", "new-service", "--", "orders", "--calls", "users"]);
  });

  it("writes the service and says what it wrote", () => {
    assert.equal(firstRun.status, 0, `${firstRun.stdout}\n${firstRun.stderr}`);
    assert.match(firstRun.stdout, /orders on port 50053 \(admin 9053\), calling users/);
    for (const path of [
      "proto/demo/orders/v1/orders.proto",
      "packages/proto/src/demo/orders/v1/orders_pb.ts",
      "apps/orders/src/main.ts",
      "apps/orders/src/service.ts",
      "apps/orders/src/service.test.ts",
      "k8s/base/orders/kustomization.yaml",
      "k8s/components/mtls/mount-orders.yaml",
    ]) {
      assert.ok(snapshot().has(`/${path}`), path);
    }
    assert.match(
      readFileSync(join(copy, "package-lock.json"), "utf8"),
      /"node_modules\/@demo\/orders": \{\s+"resolved": "apps\/orders"/,
    );
    assert.match(
      readFileSync(join(copy, "README.md"), "utf8"),
      /^\| `orders` +\| checks ids with users +\| 50053 +\| 9053 +\| users +\|/m,
    );
  });

  it("builds, type-checks, passes its tests, buf lint and the linter", () => {
    ok("npx", [
      "turbo",
      "run",
      "build",
      "typecheck",
      "--filter=@demo/orders...",
      "--filter=@demo/users",
      "--output-logs=errors-only",
    ]);
    const tests = ok("npm", ["test", "-w", "@demo/orders"]);
    assert.match(tests, /pass 5\b/);
    assert.match(tests, /fail 0\b/);
    ok("npx", ["buf", "lint"]);
    ok("npx", ["biome", "check", "."]);
  });

  it("passes the manifest checks of compose, Prometheus and every overlay", () => {
    const out = ok(
      process.execPath,
      ["--test", "src/k8s.test.ts", "src/k8s-mtls.test.ts", "src/observability.test.ts"],
      join(copy, "tests/deploy"),
    );
    assert.match(out, /fail 0\b/);
    if (!kubectlMissing) assert.match(out, /skipped 0\b/);
  });

  it("renders into the local overlay: Deployment, Service, ConfigMap entry and its NetworkPolicies", {
    skip: kubectlMissing,
  }, () => {
    const objects = render(join(copy, "k8s/overlays/local"));
    const find = (kind: string, name: string) => objects.find((o) => o.kind === kind && o.metadata.name === name);
    const deployment = find("Deployment", "orders");
    assert.ok(deployment);
    const container = deployment.spec.template.spec.containers[0];
    assert.equal(container.image, "rpc-chain/orders:0.1.0");
    assert.deepEqual(
      container.ports.map((p: Obj) => p.containerPort),
      [50053, 9053],
    );
    assert.equal(find("Service", "orders")?.spec.ports[0].port, 50053);
    const config = objects.find(
      (o) => o.kind === "ConfigMap" && o.metadata.name === container.envFrom[1].configMapRef.name,
    );
    assert.equal(config?.data.USERS_ADDR, "dns:///users.rpc-chain.svc.cluster.local:50051");
    assert.deepEqual(find("NetworkPolicy", "orders-to-users")?.spec.egress[0].ports, [
      { protocol: "TCP", port: 50051 },
    ]);
    assert.equal(
      find("NetworkPolicy", "users-from-orders")?.spec.ingress[0].from[0].podSelector.matchLabels[
        "app.kubernetes.io/name"
      ],
      "orders",
    );
  });

  it("answers its RPC through a real call to users (buf curl, a stock client)", async () => {
    const database = await testDatabase();
    const started: ChildProcess[] = [];
    const start = (app: string, extra: Record<string, string>) =>
      new Promise<{ port: number; lines: Record<string, unknown>[] }>((resolve, reject) => {
        const child = spawn(process.execPath, [`apps/${app}/dist/main.js`], {
          cwd: copy,
          env: {
            PATH: env.PATH,
            PORT: "0",
            ADMIN_PORT: "0",
            LOG_FORMAT: "json",
            SHUTDOWN_DRAIN_DELAY_MS: "0",
            ...extra,
          },
          stdio: ["ignore", "pipe", "inherit"],
        });
        started.push(child);
        const lines: Record<string, unknown>[] = [];
        let buffered = "";
        child.stdout?.setEncoding("utf8").on("data", (s: string) => {
          buffered += s;
          for (let nl = buffered.indexOf("\n"); nl >= 0; nl = buffered.indexOf("\n")) {
            const line = JSON.parse(buffered.slice(0, nl)) as Record<string, unknown>;
            buffered = buffered.slice(nl + 1);
            lines.push(line);
            if (line.msg === `${app} listening`) resolve({ port: line.port as number, lines });
          }
        });
        child.once("exit", (code) => reject(new Error(`${app} exited with ${code}`)));
      });
    try {
      const users = await start("users", { DATABASE_URL: database.url });
      const orders = await start("orders", { USERS_ADDR: `localhost:${users.port}` });
      const curl = (id: string) =>
        sh("npx", [
          "buf",
          "curl",
          "--protocol",
          "grpc",
          "--http2-prior-knowledge",
          "--schema",
          "proto",
          "-d",
          JSON.stringify({ id }),
          `http://127.0.0.1:${orders.port}/demo.orders.v1.OrdersService/Get`,
        ]);
      const found = curl("u-1");
      assert.equal(found.status, 0, found.stderr);
      assert.deepEqual(JSON.parse(found.stdout), {
        item: { id: "u-1", confirmedBy: ["demo.users.v1.UserService/GetUser"] },
      });
      // users' own NotFound, its message intact, through orders.
      const missing = curl("u-42");
      assert.equal(missing.status, 40, "buf curl's status for not_found, as the README says");
      assert.deepEqual(JSON.parse(missing.stderr), { code: "not_found", message: "user u-42 not found" });
      // Both calls reached users (its log lines arrive once this process reads the pipe again).
      const codes = () => users.lines.filter((l) => l.rpc_method === "GetUser").map((l) => l.rpc_code);
      for (let i = 0; i < 100 && codes().length < 2; i++) await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(codes(), ["ok", "not_found"], "users answered both calls");
    } finally {
      for (const child of started) child.kill("SIGTERM");
      await Promise.all(started.map((c) => (c.exitCode === null ? new Promise((r) => c.once("exit", r)) : undefined)));
      await database.drop();
    }
  });

  it("writes a service that calls nobody, which builds, passes its tests and the checks too", () => {
    const out = ok("npm", ["run", "new-service", "--", "ledger", "--port", "50100"]);
    assert.match(out, /ledger on port 50100 \(admin 9054\):/);
    ok("npx", ["turbo", "run", "build", "typecheck", "--filter=@demo/ledger...", "--output-logs=errors-only"]);
    assert.match(ok("npm", ["test", "-w", "@demo/ledger"]), /pass 4\b/);
    ok("npx", ["buf", "lint"]);
    ok("npx", ["biome", "check", "."]);
    const checks = ok(
      process.execPath,
      ["--test", "src/k8s.test.ts", "src/k8s-mtls.test.ts"],
      join(copy, "tests/deploy"),
    );
    assert.match(checks, /fail 0\b/);
    assert.doesNotMatch(
      readFileSync(join(copy, "k8s/base/network-policies.yaml"), "utf8"),
      /ledger/,
      "no calls: no policies",
    );
  });

  it("refuses a second run, a taken port, a bad name or an unknown upstream in one line, changing nothing", () => {
    const before = snapshot();
    for (const [args, message] of [
      [["orders", "--calls", "users"], /^new-service: orders is taken \(a compose service\); nothing was written\n$/],
      [["billing", "--port", "50051"], /^new-service: --port 50051 is taken; nothing was written\n$/],
      [["Billing!"], /^new-service: Billing!: a name is lowercase letters/],
      [["billing", "--calls", "nobody"], /^new-service: --calls nobody: no such service/],
      [["billing", "--calls", "gateway"], /^new-service: --calls gateway: gateway is the public edge/],
    ] as const) {
      const r = sh(process.execPath, ["scripts/new-service.mjs", ...args]);
      assert.equal(r.status, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.equal(r.stderr.trim().split("\n").length, 1, `${args.join(" ")}: one line`);
      assert.equal(r.stdout, "");
    }
    assert.deepEqual(snapshot(), before);
  });
});
