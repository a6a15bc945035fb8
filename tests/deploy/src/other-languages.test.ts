/**
 * Code for other languages from proto/: stock protoc before 22 refuses the
 * sources (debug_redact), and the README's route through `buf build` works.
 * Needs protoc (Debian's protobuf-compiler); CI installs it and sets
 * REQUIRE_PROTOC=1, where a missing protoc fails.
 */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../../../", import.meta.url));

function protocVersion(): number[] | undefined {
  const run = spawnSync("protoc", ["--version"], { encoding: "utf8" });
  if (run.status !== 0) {
    if (process.env.REQUIRE_PROTOC === "1") throw new Error("protoc is not installed; REQUIRE_PROTOC=1");
    return undefined;
  }
  return (/(\d+)\.(\d+)/.exec(run.stdout)?.slice(1) ?? []).map(Number);
}

const version = protocVersion();
const skip = version === undefined ? "protoc is not installed (apt install protobuf-compiler)" : false;

describe("protos for other languages", { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), "protoc-"));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const readme = readFileSync(join(root, "README.md"), "utf8");

  it("stock protoc before 22 refuses the sources: debug_redact is unknown to it", (t) => {
    const [major = 0, minor = 0] = version ?? [];
    // protoc's versions went 3.21 → 22: anything from 22 on knows the option.
    if (major >= 22 || (major === 4 && minor >= 22)) return t.skip(`protoc ${major}.${minor} knows debug_redact`);
    const run = spawnSync(
      "protoc",
      ["-I", "proto", "-I", "node_modules/google-proto-files", `--python_out=${dir}`, "demo/users/v1/users.proto"],
      { cwd: root, encoding: "utf8" },
    );
    assert.notEqual(run.status, 0);
    assert.match(run.stderr, /debug_redact/);
  });

  it("generates code through the README's buf build route, its commands run as written", () => {
    const block = /```sh\n(npx buf build -o demo\.binpb[^\n]*\n[^\n]*protoc --descriptor_set_in[^\n]*)\n```/.exec(
      readme,
    );
    assert.ok(block, "the README shows the buf build route");
    // A copy of what buf reads, so that the commands run as a user runs them without writing into the repository.
    const work = join(dir, "repo");
    mkdirSync(work);
    cpSync(join(root, "proto"), join(work, "proto"), { recursive: true });
    cpSync(join(root, "buf.yaml"), join(work, "buf.yaml"));
    symlinkSync(join(root, "node_modules"), join(work, "node_modules"));
    execFileSync("sh", ["-ec", block[1] as string], { cwd: work, stdio: "pipe" });
    assert.ok(existsSync(join(work, "gen/demo/users/v1/users_pb2.py")), "Python for users");

    // Every service, and another language, from the same descriptor set.
    const out = join(dir, "gen");
    mkdirSync(out);
    const files = ["demo/users/v1/users.proto", "demo/profiles/v1/profiles.proto", "demo/gateway/v1/gateway.proto"];
    const image = join(work, "demo.binpb");
    execFileSync("protoc", [`--descriptor_set_in=${image}`, `--python_out=${out}`, `--cpp_out=${out}`, ...files]);
    for (const file of files) {
      const base = join(out, file.replace(/\.proto$/, ""));
      assert.ok(existsSync(`${base}_pb2.py`), `${file}: Python`);
      assert.ok(existsSync(`${base}.pb.h`) && existsSync(`${base}.pb.cc`), `${file}: C++`);
    }
    assert.match(readFileSync(join(out, "demo/users/v1/users.pb.h"), "utf8"), /class User final/);
  });
});
