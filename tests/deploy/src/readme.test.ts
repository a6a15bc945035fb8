/** The README shows real code (its "in full" app is the file it names), and the repository has what it declares. */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";

const root = new URL("../../../", import.meta.url);
const read = (path: string) => readFileSync(new URL(path, root), "utf8");

describe("README", () => {
  it("shows apps/profiles/src/main.ts in full, as it is", () => {
    const readme = read("README.md");
    const m = /`apps\/profiles\/src\/main\.ts` in full[^\n]*\n\n```ts\n([\s\S]*?)```/.exec(readme);
    assert.ok(m, "the README has an `apps/profiles/src/main.ts` in full block");
    assert.equal(m[1], read("apps/profiles/src/main.ts"));
  });
});

describe("the repository", () => {
  it("ships the license package.json declares", () => {
    const declared = (JSON.parse(read("package.json")) as { license: string }).license;
    assert.equal(declared, "Apache-2.0");
    const license = read("LICENSE");
    assert.match(license, /^\s*Apache License\s+Version 2\.0, January 2004/);
    assert.match(license, /END OF TERMS AND CONDITIONS/);
  });
});

describe("turbo", () => {
  it("passes the settings tests read to `npm test` (turbo hides every variable it is not told of)", () => {
    const turbo = JSON.parse(read("turbo.json")) as { tasks: { test: { env?: string[] } } };
    const declared = new Set(turbo.tasks.test.env ?? []);
    const readers = [
      "packages/rpc-kit/src/testing/postgres.ts", // the real-server PostgreSQL tests
      "tests/deploy/src/k8s-render.ts", // the manifest checks' kubectl
      "tests/deploy/src/other-languages.test.ts", // protoc
    ];
    for (const file of readers) {
      for (const [, name] of read(file).matchAll(/process\.env\.([A-Z_]+)/g)) {
        assert.ok(declared.has(name as string), `turbo.json tasks.test.env lacks ${name} (read by ${file})`);
      }
    }
  });
});

describe("the docs", () => {
  const tracked = execFileSync("git", ["ls-files"], { cwd: fileURLToPath(root), encoding: "utf8" })
    .split("\n")
    .filter((f) => /\.(md|ts|mjs|js|yaml|yml|json)$/.test(f) && !f.startsWith("packages/proto/src/"));

  it("cite no document the repository does not have (a fork has only what is here)", () => {
    const cited = tracked.filter((f) => /\b(DESIGN|FACTS)(\.md)?\b/.test(read(f)) && !f.endsWith("readme.test.ts"));
    assert.deepEqual(cited, []);
  });

  it("link only to files that exist", () => {
    for (const doc of tracked.filter((f) => f.endsWith(".md"))) {
      for (const [, target] of read(doc).matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)) {
        if (/^[a-z]+:/.test(target as string)) continue;
        const path = new URL(target as string, new URL(doc, root));
        assert.ok(existsSync(path), `${doc} links to ${target}, which does not exist`);
      }
    }
  });
});
