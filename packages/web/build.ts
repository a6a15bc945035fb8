/**
 * Builds the page into dist/site: one JavaScript and one CSS bundle and the
 * icon, each named by a hash of its content (served `immutable`), and
 * index.html pointing at them (served `no-cache`). Everything the page needs
 * is in those files: no CDN, no font service, works offline.
 */
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, join, relative } from "node:path";
import { build } from "esbuild";

const root = import.meta.dirname;
const out = join(root, "dist", "site");

/** esbuild's own hash alphabet and length, so the server's immutable rule fits every asset. */
function contentHash(bytes: Buffer): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  const digest = createHash("sha256").update(bytes).digest();
  let hash = "";
  for (let i = 0; i < 8; i++) hash += alphabet[(digest[i] as number) % 32];
  return hash;
}

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, "assets"), { recursive: true });

const result = await build({
  absWorkingDir: root,
  entryPoints: { main: "src/main.ts" },
  bundle: true,
  format: "esm",
  platform: "browser",
  target: ["chrome120", "firefox121", "safari17"],
  minify: true,
  sourcemap: "linked",
  legalComments: "linked",
  outdir: out,
  entryNames: "assets/[name]-[hash]",
  metafile: true,
  logLevel: "warning",
});

const outputs = Object.keys(result.metafile.outputs).map((p) => `/${relative(out, join(root, p))}`);
const find = (ext: string) => {
  const found = outputs.find((p) => p.endsWith(ext));
  if (found === undefined) throw new Error(`esbuild wrote no ${ext} file`);
  return found;
};

const icon = readFileSync(join(root, "src", "icon.svg"));
const iconPath = `/assets/icon-${contentHash(icon)}.svg`;
copyFileSync(join(root, "src", "icon.svg"), join(out, iconPath));

const html = readFileSync(join(root, "src", "index.html"), "utf8")
  .replace("%MAIN_JS%", find(".js"))
  .replace("%MAIN_CSS%", find(".css"))
  .replace("%ICON%", iconPath);
writeFileSync(join(out, "index.html"), html);

for (const path of [...outputs, iconPath]) {
  const bytes = readFileSync(join(out, path));
  process.stdout.write(`${basename(path).padEnd(28)} ${(bytes.length / 1024).toFixed(1).padStart(6)} KiB\n`);
}
