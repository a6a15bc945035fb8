/**
 * The README's authentication commands, run as written: "Turn it on locally"
 * (a secret file, its settings, a token for alice, CreateUser with it), and
 * the Kubernetes section's token for the local overlay, checked against a
 * chain given exactly the overlay's secret, issuer and audience. Only the
 * secret's path and the ports are the test's own.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { parse } from "yaml";
import { type Chain, repoRoot, startChain } from "./processes.ts";
import { sh } from "./shell.ts";

const readme = readFileSync(join(repoRoot, "README.md"), "utf8");
const dir = mkdtempSync(join(tmpdir(), "readme-auth-"));
after(() => rmSync(dir, { recursive: true, force: true }));

/** The first ```sh block after `marker`. */
function blockAfter(marker: string): string {
  const at = readme.indexOf(marker);
  assert.ok(at >= 0, `README has "${marker}"`);
  const m = /```sh\n([\s\S]*?)```/.exec(readme.slice(at));
  assert.ok(m?.[1], `a sh block after "${marker}"`);
  return m[1];
}

/** The lines from the one that sets TOKEN through the curl that uses it (a `\` continues a line). */
function tokenAndCall(block: string): string {
  const lines = block.split("\n");
  const from = lines.findIndex((l) => l.startsWith("TOKEN=$(node -e"));
  const to = lines.findIndex((l, i) => i > from && l.includes('"authorization: Bearer $TOKEN"'));
  assert.ok(from >= 0 && to > from, "a TOKEN line, then a curl that sends it");
  return lines.slice(from, to + 1).join("\n");
}

const onGateway = (script: string, chain: Chain) =>
  script.replaceAll("localhost:8080", `localhost:${chain.gateway.port}`);

describe("README: authentication, as written", () => {
  it("turns it on locally: the secret, the settings, a token for alice and CreateUser with it", async () => {
    const block = blockAfter("Turn it on locally:");
    const secretPath = join(dir, "jwt-secret");
    const lines = block.replaceAll("/tmp/jwt-secret", secretPath).split("\n");
    const [makeSecret, exportLine] = lines;
    assert.match(makeSecret ?? "", /> \S+$/);
    assert.equal((await sh(makeSecret ?? "")).code, 0);
    assert.ok(readFileSync(secretPath, "utf8").trim().length >= 32, "the secret is long enough for the services");
    const settings = Object.fromEntries(
      [...(exportLine ?? "").matchAll(/(AUTH_\w+)=(\S+)/g)].map((m) => [m[1] as string, m[2] as string]),
    );
    assert.deepEqual(Object.keys(settings).sort(), ["AUTH_AUDIENCE", "AUTH_ISSUER", "AUTH_JWT_SECRET_FILE"]);
    assert.equal(lines[2], "npm start");

    const chain = await startChain({ all: settings });
    try {
      const refused = await sh(
        onGateway(tokenAndCall(block).replace(/^TOKEN=.*$/m, "TOKEN=not-a-token"), chain),
        settings,
      );
      assert.match(refused.stdout, /"code":"unauthenticated"/, "without a valid token: refused");
      const { code, stdout, stderr } = await sh(onGateway(tokenAndCall(block), chain), settings);
      assert.equal(code, 0, stderr);
      assert.match(stdout, /"name":"Alice Liddell"/, stdout);
      // users' log line arrives once this process reads its pipe again.
      const logged = () => chain.users.lines.some((l) => l.msg === "user created" && l.created_by === "alice");
      for (let i = 0; i < 100 && !logged(); i++) await new Promise((r) => setTimeout(r, 50));
      assert.ok(logged(), "users logs who created it");
    } finally {
      await chain.stop();
    }
  });

  it("mints, for the local Kubernetes overlay, a token its settings accept", async () => {
    const overlay = parse(readFileSync(join(repoRoot, "k8s/overlays/local/kustomization.yaml"), "utf8"));
    const literals = (list: string[]) =>
      Object.fromEntries(list.map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]));
    const secret = literals(overlay.secretGenerator.find((g: { name: string }) => g.name === "auth-keys").literals);
    const config = literals(
      overlay.configMapGenerator.find((g: { name: string }) => g.name === "rpc-chain-config").literals,
    );
    const secretPath = join(dir, "overlay-jwt-secret");
    writeFileSync(secretPath, secret["jwt-secret"] as string);
    const chain = await startChain({
      all: {
        AUTH_JWT_SECRET_FILE: secretPath,
        AUTH_ISSUER: config.AUTH_ISSUER as string,
        AUTH_AUDIENCE: config.AUTH_AUDIENCE as string,
      },
    });
    try {
      const { code, stdout, stderr } = await sh(onGateway(tokenAndCall(blockAfter("On kind:")), chain));
      assert.equal(code, 0, stderr);
      assert.match(stdout, /"name":"Alice Liddell"/, stdout);
    } finally {
      await chain.stop();
    }
  });
});
