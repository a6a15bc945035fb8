import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../../../", import.meta.url));
const bin = join(root, "node_modules/.bin");
const buf = join(bin, "buf");
// buf finds the local protoc-gen-es plugin on PATH.
const env = { ...process.env, PATH: `${bin}:${process.env.PATH ?? ""}` };

function files(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)))
    .sort();
}

describe("the protos", () => {
  it("pass buf lint (STANDARD)", () => {
    execFileSync(buf, ["lint"], { cwd: root, env, stdio: "pipe" });
  });

  it("match the committed generated code (run `npm run generate` if this fails)", () => {
    const out = mkdtempSync(join(tmpdir(), "buf-gen-"));
    try {
      execFileSync(buf, ["generate", "-o", out], { cwd: root, env, stdio: "pipe" });
      const fresh = join(out, "packages/proto/src");
      const committed = join(root, "packages/proto/src");
      assert.deepEqual(files(committed), files(fresh), "the same files");
      for (const f of files(fresh)) {
        assert.equal(readFileSync(join(committed, f), "utf8"), readFileSync(join(fresh, f), "utf8"), `${f} is stale`);
      }
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
