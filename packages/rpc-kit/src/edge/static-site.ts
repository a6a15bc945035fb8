import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { extname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { brotliCompress, gzip as gzipCompress, constants as zlib } from "node:zlib";
import type { EdgeRequest, EdgeResponse } from "./edge-http.ts";

/**
 * A small static site served from memory by the edge engine beside the API
 * (the demo page): read once at start, so a request never touches the file
 * system and no path can escape the directory.
 *
 * - GET and HEAD only. `/` is `index.html`; other paths are files by exact
 *   name; 404 otherwise (for other methods too: they are RPCs to no route).
 * - Content-hashed files (`name-HASH8.ext`, as the page's build names them)
 *   are cached for a year, `immutable`; everything else is revalidated
 *   (`no-cache` + ETag → 304).
 * - Text is sent brotli- or gzip-compressed when the client accepts it;
 *   each compressed form is made on its first request, off the event loop,
 *   and kept (compressing the page and its sourcemaps at start cost the
 *   gateway 1.4 s of start-up).
 * - HTML carries a strict Content-Security-Policy: scripts, styles and
 *   requests from this origin only, no inline code, Trusted Types enforced.
 */

export const DEFAULT_CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "manifest-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
  "require-trusted-types-for 'script'",
  "trusted-types 'none'",
].join("; ");

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".map": "application/json",
  ".webmanifest": "application/manifest+json",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".txt": "text/plain; charset=utf-8",
  ".woff2": "font/woff2",
};

/** The names the page's build gives content-hashed files: `main-4F2KQ7ZD.js`. */
const HASHED_NAME = /-[A-Z0-9]{8}\.[a-z0-9]+$/;
const IMMUTABLE = "public, max-age=31536000, immutable";
const REVALIDATE = "no-cache";
/** Below this, compression saves less than the header costs. */
const MIN_COMPRESS_BYTES = 1024;

type Encoding = "br" | "gzip";

interface Asset {
  readonly headers: Readonly<Record<string, string>>;
  /** The ETag of the bytes as they are; a compressed form adds `-br` or `-gz` (each representation its own validator). */
  readonly etag: string;
  readonly identity: Buffer;
  readonly compressible: boolean;
  /** Compressed forms, made on first request (never at start) and kept; undefined when no smaller. */
  readonly encoded: Map<Encoding, Promise<Buffer | undefined>>;
}

const brotli = promisify(brotliCompress);
const gzip = promisify(gzipCompress);

function compressed(asset: Asset, encoding: Encoding): Promise<Buffer | undefined> {
  let form = asset.encoded.get(encoding);
  if (form === undefined) {
    const body = asset.identity;
    form = (
      encoding === "br"
        ? brotli(body, { params: { [zlib.BROTLI_PARAM_QUALITY]: 11, [zlib.BROTLI_PARAM_SIZE_HINT]: body.length } })
        : gzip(body, { level: 9 })
    ).then(
      (bytes) => (bytes.length < body.length ? bytes : undefined),
      () => undefined,
    );
    asset.encoded.set(encoding, form);
  }
  return form;
}

export interface StaticSite {
  /** URL paths served, sorted: `/`, `/assets/main-4F2KQ7ZD.js`, … */
  readonly paths: readonly string[];
  /** Answers a GET or HEAD for one of `paths`; 404 otherwise. */
  serve(req: EdgeRequest, res: EdgeResponse): void;
}

export interface StaticSiteOptions {
  /** Default {@link DEFAULT_CONTENT_SECURITY_POLICY}. */
  readonly contentSecurityPolicy?: string;
}

/** Reads every file under `dir` (which must hold an index.html) into memory. */
export function loadStaticSite(dir: string | URL, options: StaticSiteOptions = {}): StaticSite {
  const root = typeof dir === "string" ? dir : fileURLToPath(dir);
  const csp = options.contentSecurityPolicy ?? DEFAULT_CONTENT_SECURITY_POLICY;
  if (!existsSync(root)) throw new Error(`${root} does not exist (is the site built? npm run build)`);
  const assets = new Map<string, Asset>();
  for (const file of listFiles(root)) {
    const path = `/${relative(root, file).split(sep).join("/")}`;
    const type = CONTENT_TYPES[extname(file).toLowerCase()];
    if (type === undefined) {
      throw new Error(
        `${file}: no content type known for "${extname(file)}"; add it to static-site.ts or leave it out`,
      );
    }
    assets.set(path, asset(readFileSync(file), path, type, csp));
  }
  const index = assets.get("/index.html");
  if (index === undefined) throw new Error(`${root} has no index.html`);
  assets.set("/", index);
  assets.delete("/index.html");
  const paths = [...assets.keys()].sort();

  return {
    paths,
    serve(req, res) {
      // Only GET and HEAD ask for the site. Anything else at this port is an RPC to an
      // unknown route, and gets the API's answer to those: 404 (gRPC clients read it as
      // Unimplemented; a 405 would read as Unknown).
      const found = req.method === "GET" || req.method === "HEAD" ? assets.get(pathOf(req.url ?? "/")) : undefined;
      if (found === undefined) {
        res.writeHead(404, { "content-type": "text/plain; charset=utf-8", "x-content-type-options": "nosniff" });
        if (req.method === "HEAD") res.end();
        else res.end("not found\n");
        return;
      }
      const encoding = pickEncoding(req.headers["accept-encoding"], found);
      if (encoding === undefined) {
        respond(req, res, found, undefined, found.identity);
        return;
      }
      void compressed(found, encoding).then((body) => {
        try {
          if (body === undefined) respond(req, res, found, undefined, found.identity);
          else respond(req, res, found, encoding, body);
        } catch {
          // The client left while the form was being made: nobody to answer.
        }
      });
    },
  };
}

/** Answers with one representation of `asset`: 304 when the client has it, else its bytes. */
function respond(req: EdgeRequest, res: EdgeResponse, asset: Asset, encoding: Encoding | undefined, body: Buffer) {
  const etag = encoding === undefined ? asset.etag : asset.etag.replace(/"$/, encoding === "br" ? '-br"' : '-gz"');
  // Added to what was set before (cors.ts varies on origin), not replacing it.
  const vary = [res.getHeader("vary"), asset.headers.vary].filter(Boolean).join(", ");
  if (matchesEtag(req.headers["if-none-match"], etag)) {
    res.writeHead(304, {
      etag,
      "cache-control": asset.headers["cache-control"] as string,
      ...(vary && { vary }),
    });
    res.end();
    return;
  }
  res.writeHead(200, {
    ...asset.headers,
    etag,
    ...(vary && { vary }),
    ...(encoding !== undefined && { "content-encoding": encoding }),
    "content-length": String(body.length),
  });
  if (req.method === "HEAD") res.end();
  else res.end(body);
}

function listFiles(dir: string): string[] {
  return readdirSync(dir)
    .sort()
    .flatMap((name) => {
      const path = join(dir, name);
      return statSync(path).isDirectory() ? listFiles(path) : [path];
    });
}

function asset(body: Buffer, path: string, type: string, csp: string): Asset {
  const etag = `"${createHash("sha256").update(body).digest("base64url").slice(0, 22)}"`;
  const compressible =
    /^(text\/|application\/(json|manifest)|image\/svg)/.test(type) && body.length >= MIN_COMPRESS_BYTES;
  const isHtml = type.startsWith("text/html");
  return {
    etag,
    identity: body,
    compressible,
    encoded: new Map(),
    headers: {
      "content-type": type,
      "cache-control": HASHED_NAME.test(path) ? IMMUTABLE : REVALIDATE,
      etag,
      ...(compressible && { vary: "accept-encoding" }),
      "x-content-type-options": "nosniff",
      "cross-origin-resource-policy": "same-origin",
      ...(isHtml && {
        "content-security-policy": csp,
        "cross-origin-opener-policy": "same-origin",
        "referrer-policy": "no-referrer",
        "x-frame-options": "DENY",
      }),
    },
  };
}

function pathOf(url: string): string {
  const q = url.indexOf("?");
  const raw = q < 0 ? url : url.slice(0, q);
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

function matchesEtag(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  return header
    .split(",")
    .map((t) => t.trim().replace(/^W\//, ""))
    .some((t) => t === etag || t === "*");
}

/** `br` or `gzip` when the client accepts it (q > 0) and the asset is worth compressing; undefined for the bytes as they are. */
function pickEncoding(header: string | undefined, asset: Asset): Encoding | undefined {
  if (header === undefined) return undefined;
  const accepted = new Set(
    header
      .split(",")
      .map((part) => part.trim().split(";"))
      .filter(([, ...params]) => !params.some((p) => /^\s*q\s*=\s*0(\.0*)?\s*$/.test(p)))
      .map(([name]) => (name ?? "").trim().toLowerCase()),
  );
  if (!asset.compressible) return undefined;
  if (accepted.has("br")) return "br";
  if (accepted.has("gzip")) return "gzip";
  return undefined;
}
