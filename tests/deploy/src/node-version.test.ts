/** On a Node.js too old for the project, install, start and test stop first, saying what is needed. */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../../../", import.meta.url));

/** An older Node.js on this machine (Debian's, at /usr/bin/node), if it is older than 22. */
function oldNode(): string | undefined {
  for (const candidate of ["/usr/bin/node", "/usr/local/bin/node"]) {
    if (!existsSync(candidate)) continue;
    const version = execFileSync(candidate, ["-p", "process.versions.node"], { encoding: "utf8" }).trim();
    if (Number(version.split(".")[0]) < 22) return candidate;
  }
  return undefined;
}

const old = oldNode();
const skip = old === undefined ? "no Node.js older than 22 on this machine" : false;

describe("on a Node.js older than 22.18", () => {
  it("npm start and npm test run the version check before anything else", () => {
    const scripts = (
      JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { scripts: Record<string, string> }
    ).scripts;
    for (const name of ["start", "test"]) {
      assert.match(scripts[name] ?? "", /^node scripts\/check-node\.mjs && /, `npm ${name}`);
    }
  });

  it("the version check stops with one line naming the version needed and how to get it", { skip }, () => {
    const run = spawnSync(old as string, [join(root, "scripts/check-node.mjs")], { encoding: "utf8" });
    assert.equal(run.status, 1);
    assert.equal(run.stdout, "");
    const lines = run.stderr.trimEnd().split("\n");
    assert.equal(lines.length, 1, run.stderr);
    assert.match(lines[0] ?? "", /needs Node\.js 22\.18 or later .* this is v\d+\.\d+\.\d+: run `nvm install`/);
  });

  it("npm install stops at once with an error naming the version, not pages of warnings", { skip }, () => {
    const dir = mkdtempSync(join(tmpdir(), "old-node-"));
    try {
      for (const file of ["package.json", ".npmrc"]) copyFileSync(join(root, file), join(dir, file));
      const run = spawnSync("npm", ["install", "--dry-run", "--ignore-scripts", "--no-audit", "--no-fund"], {
        cwd: dir,
        encoding: "utf8",
        // As a user's shell would run it: none of the npm_* settings of the `npm test` running us
        // (npm_config_local_prefix would point this npm at the repository instead of `dir`).
        env: {
          ...Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^npm_/i.test(key))),
          PATH: `${dirname(old as string)}:${process.env.PATH}`,
        },
        timeout: 60_000,
      });
      const output = run.stdout + run.stderr;
      assert.notEqual(run.status, 0, output);
      assert.match(output, /EBADENGINE/);
      assert.match(output, /Required: \{"node":">=22\.18"\}/);
      assert.doesNotMatch(output, /npm warn EBADENGINE/, "stopped at the first, not warned for each");
      assert.ok(output.split("\n").length < 15, output);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
