/** The README shows real code (its "in full" app is the file it names), and the repository has what it declares. */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";

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
