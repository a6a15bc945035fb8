import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { pathToFileURL } from "node:url";
import { brotliDecompressSync, gunzipSync } from "node:zlib";
import { type RunningServer, serve } from "../serve.ts";
import { captureLogger, testServerSettings } from "../testing/index.ts";
import type { CorsSettings } from "./cors.ts";
import { DEFAULT_CONTENT_SECURITY_POLICY, loadStaticSite, type StaticSite } from "./static-site.ts";

const JS = "/assets/main-ABCDEFGH.js";
const CSS = "/assets/main-ABCDEFGH.css";
const IMMUTABLE = "public, max-age=31536000, immutable";

/** A page as its build would leave it: index.html, content-hashed assets, a robots.txt. */
function writeSite(): string {
  const dir = mkdtempSync(join(tmpdir(), "static-site-test-"));
  mkdirSync(join(dir, "assets"));
  writeFileSync(
    join(dir, "index.html"),
    `<!doctype html><html><head><script type="module" src="${JS}"></script><link rel="stylesheet" href="${CSS}"></head><body></body></html>\n`,
  );
  const lines = Array.from({ length: 200 }, (_, i) => `export const value${i} = "the same text again and again ${i}";`);
  writeFileSync(join(dir, "assets", "main-ABCDEFGH.js"), `${lines.join("\n")}\n`);
  writeFileSync(join(dir, "assets", "main-ABCDEFGH.css"), "body { margin: 0; }\n");
  writeFileSync(join(dir, "robots.txt"), "User-agent: *\nDisallow:\n");
  return dir;
}

interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** A request sent as written: no path normalization, no transparent decompression. */
function raw(port: number, path: string, init: { method?: string; headers?: Record<string, string> } = {}) {
  return new Promise<RawResponse>((resolve, reject) => {
    const req = request(
      { host: "127.0.0.1", port, path, method: init.method ?? "GET", headers: init.headers ?? {} },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
        );
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end();
  });
}

/** An edge serving `site` (and no API but health), for fetch on 127.0.0.1. */
function serveSite(site: StaticSite, cors?: CorsSettings): Promise<RunningServer> {
  return serve({
    name: "edge",
    engine: "connect",
    settings: testServerSettings(),
    ownsProcess: false,
    logger: captureLogger("edge").logger,
    services: [],
    site,
    ...(cors && { cors }),
  });
}

describe("loadStaticSite", () => {
  const dirs: string[] = [];
  const tempDir = () => {
    const dir = mkdtempSync(join(tmpdir(), "static-site-test-"));
    dirs.push(dir);
    return dir;
  };
  after(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  it("lists the paths it serves: / for index.html, files by name", () => {
    const dir = writeSite();
    dirs.push(dir);
    assert.deepEqual(loadStaticSite(dir).paths, ["/", CSS, JS, "/robots.txt"]);
    assert.deepEqual(loadStaticSite(pathToFileURL(dir)).paths, ["/", CSS, JS, "/robots.txt"]);
  });

  it("refuses a directory without index.html, naming it", () => {
    const dir = tempDir();
    writeFileSync(join(dir, "robots.txt"), "");
    assert.throws(
      () => loadStaticSite(dir),
      (err: unknown) => err instanceof Error && err.message.includes(dir) && /index\.html/.test(err.message),
    );
  });

  it("refuses a file it has no content type for, naming the file", () => {
    const dir = tempDir();
    writeFileSync(join(dir, "index.html"), "<!doctype html>");
    writeFileSync(join(dir, "x.bin"), "\u0000\u0001");
    assert.throws(
      () => loadStaticSite(dir),
      (err: unknown) => err instanceof Error && err.message.includes(join(dir, "x.bin")) && /\.bin/.test(err.message),
    );
  });
});

describe("a static site served by the edge", () => {
  let dir: string;
  let server: RunningServer;
  let base: string;
  let port: number;

  before(async () => {
    dir = writeSite();
    server = await serveSite(loadStaticSite(dir));
    port = server.port;
    base = `http://127.0.0.1:${port}`;
  });
  after(async () => {
    await server.shutdown();
    rmSync(dir, { recursive: true, force: true });
  });

  const file = (path: string) => readFileSync(join(dir, ...path.split("/").filter(Boolean)));

  it("serves index.html at / as HTML to revalidate, with a strict CSP", async () => {
    const res = await fetch(`${base}/`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "text/html; charset=utf-8");
    assert.equal(res.headers.get("cache-control"), "no-cache");
    assert.match(res.headers.get("etag") ?? "", /^"[^"]+"$/);
    assert.equal(res.headers.get("x-content-type-options"), "nosniff");
    const csp = res.headers.get("content-security-policy");
    assert.equal(csp, DEFAULT_CONTENT_SECURITY_POLICY);
    for (const directive of ["script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"]) {
      assert.ok(csp?.split("; ").includes(directive), `CSP has ${directive}: ${csp}`);
    }
    assert.doesNotMatch(csp ?? "", /unsafe-inline|unsafe-eval/);
    assert.equal(Buffer.from(await res.arrayBuffer()).toString(), file("/index.html").toString());
  });

  it("serves the page at one URL only: /index.html is not found", async () => {
    const res = await fetch(`${base}/index.html`);
    assert.equal(res.status, 404);
    await res.arrayBuffer();
  });

  it("ignores a query string", async () => {
    const res = await fetch(`${base}/?utm_source=x`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "text/html; charset=utf-8");
    await res.arrayBuffer();
  });

  it("caches content-hashed assets for a year, and revalidates the rest", async () => {
    const js = await fetch(`${base}${JS}`);
    assert.equal(js.status, 200);
    assert.equal(js.headers.get("content-type"), "text/javascript; charset=utf-8");
    assert.equal(js.headers.get("cache-control"), IMMUTABLE);
    assert.equal(js.headers.get("content-security-policy"), null, "the CSP is the page's, not a script's");
    assert.equal(await js.text(), file(JS).toString());

    const css = await fetch(`${base}${CSS}`);
    assert.equal(css.status, 200);
    assert.equal(css.headers.get("content-type"), "text/css; charset=utf-8");
    assert.equal(css.headers.get("cache-control"), IMMUTABLE);
    assert.equal(await css.text(), file(CSS).toString());

    const robots = await fetch(`${base}/robots.txt`);
    assert.equal(robots.status, 200);
    assert.equal(robots.headers.get("content-type"), "text/plain; charset=utf-8");
    assert.equal(robots.headers.get("cache-control"), "no-cache");
    assert.equal(await robots.text(), file("/robots.txt").toString());
  });

  it("answers a matching If-None-Match with 304 and no body", async () => {
    // Each representation has its own ETag: the brotli bytes are not the identity bytes.
    const plain = await raw(port, JS, {});
    const br = await raw(port, JS, { headers: { "accept-encoding": "br" } });
    assert.notEqual(plain.headers.etag, br.headers.etag);
    assert.equal((await raw(port, JS, { headers: { "if-none-match": String(br.headers.etag) } })).status, 200);
    for (const path of ["/", JS]) {
      const first = await raw(port, path, { headers: { "accept-encoding": "br" } });
      const etag = String(first.headers.etag);
      assert.match(etag, /^"[^"]+"$/);
      const again = await raw(port, path, { headers: { "accept-encoding": "br", "if-none-match": etag } });
      assert.equal(again.status, 304, path);
      assert.equal(again.body.length, 0);
      assert.equal(again.headers.etag, etag);
      // Weak comparison and lists, as browsers and proxies send them.
      assert.equal(
        (await raw(port, path, { headers: { "accept-encoding": "br", "if-none-match": `"other", W/${etag}` } })).status,
        304,
      );
      // A stale etag gets the file.
      const stale = await raw(port, path, { headers: { "accept-encoding": "br", "if-none-match": '"stale"' } });
      assert.equal(stale.status, 200);
      assert.ok(stale.body.length > 0);
    }
  });

  it("repeats vary: accept-encoding on a 304, as a 200 would carry it", async () => {
    const first = await raw(port, JS, { headers: { "accept-encoding": "br" } });
    assert.equal(first.headers.vary, "accept-encoding");
    const again = await raw(port, JS, {
      headers: { "accept-encoding": "br", "if-none-match": String(first.headers.etag) },
    });
    assert.equal(again.status, 304);
    assert.equal(again.headers.vary, "accept-encoding");
  });

  it("sends brotli or gzip when the client accepts it, and the bytes as they are otherwise", async () => {
    const original = file(JS);
    assert.ok(original.length > 1024);

    const br = await raw(port, JS, { headers: { "accept-encoding": "gzip, deflate, br" } });
    assert.equal(br.status, 200);
    assert.equal(br.headers["content-encoding"], "br");
    assert.equal(br.headers.vary, "accept-encoding");
    assert.equal(Number(br.headers["content-length"]), br.body.length);
    assert.ok(br.body.length < original.length);
    assert.deepEqual(brotliDecompressSync(br.body), original);

    const gzip = await raw(port, JS, { headers: { "accept-encoding": "gzip" } });
    assert.equal(gzip.headers["content-encoding"], "gzip");
    assert.equal(gzip.headers.vary, "accept-encoding");
    assert.deepEqual(gunzipSync(gzip.body), original);

    for (const acceptEncoding of ["gzip;q=0", "br;q=0, gzip;q=0.0", "identity", "deflate"]) {
      const plain = await raw(port, JS, { headers: { "accept-encoding": acceptEncoding } });
      assert.equal(plain.headers["content-encoding"], undefined, acceptEncoding);
      assert.equal(plain.headers.vary, "accept-encoding");
      assert.deepEqual(plain.body, original, acceptEncoding);
    }
    const none = await raw(port, JS);
    assert.equal(none.headers["content-encoding"], undefined);
    assert.deepEqual(none.body, original);

    // gzip refused, br accepted: br.
    assert.equal(
      (await raw(port, JS, { headers: { "accept-encoding": "gzip;q=0, br" } })).headers["content-encoding"],
      "br",
    );

    // fetch sees the same bytes, whatever it negotiated.
    const viaFetch = await fetch(`${base}${JS}`);
    assert.ok(["br", "gzip"].includes(viaFetch.headers.get("content-encoding") ?? ""));
    assert.deepEqual(Buffer.from(await viaFetch.arrayBuffer()), original);
  });

  it("sends small files as they are, compression saving too little", async () => {
    const css = await raw(port, CSS, { headers: { "accept-encoding": "br, gzip" } });
    assert.equal(css.headers["content-encoding"], undefined);
    assert.deepEqual(css.body, file(CSS));
  });

  it("answers HEAD with the headers and length of GET, and no body", async () => {
    const head = await raw(port, "/", { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(head.headers["content-type"], "text/html; charset=utf-8");
    assert.equal(Number(head.headers["content-length"]), file("/index.html").length);
    assert.equal(head.body.length, 0);
    const fetched = await fetch(`${base}/`, { method: "HEAD" });
    assert.equal(fetched.status, 200);
    assert.equal(await fetched.text(), "");
  });

  it("answers other methods as the API answers an unknown route: 404, never the page", async () => {
    for (const method of ["POST", "PUT", "DELETE"]) {
      const res = await raw(port, "/", { method });
      assert.equal(res.status, 404, method);
      assert.doesNotMatch(res.body.toString(), /<html/i, method);
    }
  });

  it("answers 404 for unknown paths, and for any path out of the directory", async () => {
    for (const path of [
      "/nope",
      "/../package.json",
      "/%2e%2e/package.json",
      "/assets/../../package.json",
      "/%2E%2E%2Fpackage.json",
      "/assets",
      "/assets/",
      "//etc/passwd",
      "/%zz",
    ]) {
      const res = await raw(port, path);
      assert.equal(res.status, 404, path);
      assert.doesNotMatch(res.body.toString(), /"name"|root:/, path);
    }
  });

  it("still routes RPCs to the API", async () => {
    const res = await fetch(`${base}/grpc.health.v1.Health/Check`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { status: "SERVING" });
    assert.equal(res.headers.get("content-security-policy"), null);
  });
});

describe("a static site with its own CSP", () => {
  it("sends the CSP it was given on HTML only", async () => {
    const dir = writeSite();
    const csp = "default-src 'self'";
    const server = await serveSite(loadStaticSite(dir, { contentSecurityPolicy: csp }));
    try {
      const page = await fetch(`http://127.0.0.1:${server.port}/`);
      assert.equal(page.headers.get("content-security-policy"), csp);
      await page.arrayBuffer();
      const js = await fetch(`http://127.0.0.1:${server.port}${JS}`);
      assert.equal(js.headers.get("content-security-policy"), null);
      await js.arrayBuffer();
    } finally {
      await server.shutdown();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("a static site beside CORS", () => {
  it("answers an allowed origin's GET of a compressible asset varying on origin and accept-encoding", async () => {
    const dir = writeSite();
    const server = await serveSite(loadStaticSite(dir), { corsAllowedOrigins: ["http://allowed.test"] });
    try {
      const res = await raw(server.port, JS, { headers: { origin: "http://allowed.test", "accept-encoding": "br" } });
      assert.equal(res.status, 200);
      assert.equal(res.headers["access-control-allow-origin"], "http://allowed.test");
      const vary = String(res.headers.vary)
        .split(",")
        .map((v) => v.trim().toLowerCase());
      assert.ok(vary.includes("accept-encoding"), `vary: ${res.headers.vary}`);
      assert.ok(vary.includes("origin"), `vary: ${res.headers.vary}`);
    } finally {
      await server.shutdown();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
