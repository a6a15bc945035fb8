import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { siteDir } from "../site.js";

/** Checks the built page (dist/site) for what the gateway promises about it: self-contained, hashed, no inline code. */

const root = fileURLToPath(siteDir);
const html = readFileSync(join(root, "index.html"), "utf8");
const assets = readdirSync(join(root, "assets"));
const text = (name: string) => readFileSync(join(root, "assets", name), "utf8");

describe("the built page", () => {
  it("links its script, stylesheet and icon by content-hashed names that exist", () => {
    const links = [...html.matchAll(/(?:src|href)="(\/[^"]*)"/g)].map((m) => m[1] as string);
    assert.equal(links.length, 3, `links in index.html: ${links.join(", ")}`);
    for (const link of links) {
      assert.match(link, /^\/assets\/[a-z]+-[A-Z0-9]{8}\.(js|css|svg)$/);
      assert.ok(assets.includes(link.slice("/assets/".length)), `${link} was built`);
    }
  });

  it("has no inline script, style or event handler (the CSP would block them)", () => {
    assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/);
    assert.doesNotMatch(html, /<style|\sstyle=|\son[a-z]+=/i);
  });

  it("refers to no other host: no CDN, no web font, works offline", () => {
    const urls = (source: string) =>
      [...source.matchAll(/(?:https?:)?\/\/[a-z0-9.-]+\.[a-z]{2,}[^\s"'`)]*/gi)]
        .map((m) => m[0])
        // The SVG namespace is a name, never fetched.
        .filter((u) => u !== "http://www.w3.org/2000/svg");
    assert.deepEqual(urls(html), []);
    for (const name of assets.filter((a) => /\.(css|svg)$/.test(a))) assert.deepEqual(urls(text(name)), [], name);
    // Script: nothing fetched from elsewhere (the only fetches go to location.origin).
    for (const name of assets.filter((a) => a.endsWith(".js"))) {
      assert.doesNotMatch(text(name), /import\(["'`]https?:|from["'`]https?:|importScripts/);
    }
  });
});
