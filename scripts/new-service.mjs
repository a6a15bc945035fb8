#!/usr/bin/env node
// `npm run new-service -- <name> [--calls <service>...] [--port N]`: a new
// internal (grpc-js) service, written into every place a service lives: its
// proto and generated code, apps/<name>/, npm start, compose, Prometheus, the
// Kubernetes base (a folder made concrete by k8s/components/rpc-service),
// NetworkPolicies for exactly its calls, the production overlay, the mtls
// component, the deploy tests' chain and the README's services table.
//
// Everything is checked and composed in memory first; files are written only
// when every edit found its place. If `buf lint`, `buf generate` or
// `npm install` then fail, every file is put back as it was.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const NAMESPACE = "rpc-chain";
const USAGE = "usage: npm run new-service -- <name> [--calls <service>...] [--port N] [--skip-install]";

/** Ends the run with one line on stderr and status 2 (bad input) or 1 (a step failed). */
function fail(message, status = 2) {
  process.stderr.write(`new-service: ${message}\n`);
  process.exit(status);
}

const read = (path) => readFileSync(join(root, path), "utf8");
const versionOf = (packageJson) => JSON.parse(read(packageJson)).version;

// ---------------------------------------------------------------- arguments

function parseArgs(argv) {
  const out = { name: undefined, calls: [], port: undefined, install: true };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--calls") {
      const values = [];
      while (i + 1 < argv.length && !argv[i + 1].startsWith("--")) values.push(...argv[++i].split(","));
      if (values.length === 0) fail(`--calls needs at least one service. ${USAGE}`);
      out.calls.push(...values.filter((v) => v !== ""));
    } else if (arg === "--port") {
      const value = argv[++i];
      if (value === undefined || !/^\d+$/.test(value)) fail(`--port needs a number, got ${value ?? "nothing"}`);
      out.port = Number(value);
    } else if (arg === "--skip-install") {
      out.install = false;
    } else if (arg === "--help" || arg === "-h") {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    } else if (arg.startsWith("-")) {
      fail(`unknown option ${arg}. ${USAGE}`);
    } else if (out.name === undefined) {
      out.name = arg;
    } else {
      fail(`one name only, got ${out.name} and ${arg}. ${USAGE}`);
    }
  }
  if (out.name === undefined) fail(USAGE);
  return out;
}

// ---------------------------------------------------------- the repository now

/** The services the repository has: compose's blocks that build an app, with their ports. */
function existingServices(blocks) {
  const services = new Map();
  for (const block of blocks) {
    const app = /^\s+APP: ([\w-]+)$/m.exec(block.text)?.[1];
    if (!app) continue;
    const port = Number(/^\s+PORT: "(\d+)"$/m.exec(block.text)?.[1]);
    const adminPort = Number(/^\s+ADMIN_PORT: "(\d+)"$/m.exec(block.text)?.[1]);
    const serviceYaml = `k8s/base/${app}/service.yaml`;
    const role = existsSync(join(root, serviceYaml))
      ? (/app\.kubernetes\.io\/component: (\w+)/.exec(read(serviceYaml))?.[1] ?? "backend")
      : "backend";
    services.set(app, { name: app, port, adminPort, role });
  }
  return services;
}

/** The top-level entries under compose's `services:`, each with its line span. */
function composeServiceBlocks(compose) {
  const lines = compose.split("\n");
  const start = lines.indexOf("services:");
  const blocks = [];
  for (let i = start + 1; i < lines.length; i++) {
    if (/^\S/.test(lines[i])) break; // the next top-level key
    const m = /^ {2}([\w-]+):\s*$/.exec(lines[i]);
    if (!m) continue;
    let end = i + 1;
    while (end < lines.length && !/^ {2}[\w-]+:\s*$/.test(lines[end]) && !/^\S/.test(lines[end])) end++;
    // Comments and blank lines before the next entry belong to it.
    while (end > i + 1 && /^\s*(#.*)?$/.test(lines[end - 1])) end--;
    blocks.push({ name: m[1], from: i, to: end, text: lines.slice(i, end).join("\n") });
  }
  return blocks;
}

/** Every port a service, the database or a tool of the stack already has, in compose, npm start and k8s. */
function takenPorts(compose) {
  const taken = new Set();
  const add = (text, re) => {
    for (const m of text.matchAll(re)) taken.add(Number(m[1]));
  };
  add(compose, /PORT: "(\d+)"/g);
  add(compose, /^\s+- "(?:[\d.]+:)?(?:\$\{\w+:-)?(\d+)\}?:\d+"/gm);
  add(compose, /^\s+- "(?:[\d.]+:)?(?:\$\{\w+:-)?\d+\}?:(\d+)"/gm);
  add(compose, /:(\d{2,5})\b/g); // addresses: postgres:5432, otel-collector:4318…
  add(read("scripts/start.mjs"), /PORT: "(\d+)"/g);
  for (const file of yamlFiles("k8s")) add(read(file), /(?:port|containerPort|targetPort|nodePort): (\d+)/g);
  return taken;
}

function yamlFiles(dir) {
  const out = [];
  for (const entry of readdirSync(join(root, dir), { withFileTypes: true })) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory()) out.push(...yamlFiles(path));
    else if (entry.name.endsWith(".yaml")) out.push(path);
  }
  return out;
}

function freePort(from, taken) {
  for (let p = from; p < 65536; p++) if (!taken.has(p)) return p;
  fail(`no free port from ${from}`);
}

// ------------------------------------------------------------- the upstreams

/**
 * What the generated handler calls on each upstream: its API's first unary
 * method marked NO_SIDE_EFFECTS whose request has a string field, given the
 * id (users: GetUser with `id`). Read from `buf build`, so any service's API
 * works; an upstream with no such method gets its client and no call.
 */
function upstreamApis(calls) {
  const json = execFileSync("npx", ["--no-install", "buf", "build", "-o", "-#format=json"], {
    cwd: root,
    encoding: "utf8",
    maxBuffer: 64 << 20,
  });
  const files = JSON.parse(json).file;
  const messages = new Map();
  for (const f of files) for (const m of f.messageType ?? []) messages.set(`.${f.package}.${m.name}`, m);
  return calls.map((up) => {
    const pkg = `demo.${up.replaceAll("-", "_")}.v1`;
    const file = files.find((f) => f.package === pkg && (f.service ?? []).length > 0);
    if (!file) fail(`${up} has no service in proto package ${pkg}`);
    const service = file.service[0];
    const stringField = (m) =>
      (messages.get(m.inputType)?.field ?? []).find((x) => x.type === "TYPE_STRING" && x.label !== "LABEL_REPEATED");
    const method = (service.method ?? []).find(
      (m) =>
        !m.clientStreaming &&
        !m.serverStreaming &&
        m.options?.idempotencyLevel === "NO_SIDE_EFFECTS" &&
        stringField(m) !== undefined,
    );
    return {
      name: up,
      service: service.name,
      module: `@demo/proto/${file.name.replace(/\.proto$/, "_pb")}`,
      procedure: `${pkg}.${service.name}/${method?.name ?? ""}`,
      method: method && { local: lowerFirst(method.name), field: stringField(method).jsonName },
    };
  });
}

// ------------------------------------------------------------------- names

const pascal = (name) => name.replace(/(^|-)([a-z0-9])/g, (_, __, c) => c.toUpperCase());
const lowerFirst = (s) => s.charAt(0).toLowerCase() + s.slice(1);
const camel = (name) => lowerFirst(pascal(name));
const envName = (name) => name.toUpperCase().replaceAll("-", "_");
const protoSegment = (name) => name.replaceAll("-", "_");

// ------------------------------------------------------------------ main

const args = parseArgs(process.argv.slice(2));
const { name } = args;
if (!/^[a-z][a-z0-9]*(-[a-z0-9]+)*$/.test(name) || name.length > 30) {
  fail(`${name}: a name is lowercase letters and digits, words joined by "-", at most 30 characters (e.g. orders)`);
}
const compose = read("docker-compose.yml");
const composeBlocks = composeServiceBlocks(compose);
const services = existingServices(composeBlocks);
const seg = protoSegment(name);
for (const [what, taken] of [
  ["a compose service", composeBlocks.some((b) => b.name === name)],
  [`apps/${name}`, existsSync(join(root, "apps", name))],
  [`proto/demo/${seg}`, existsSync(join(root, "proto/demo", seg))],
  [`k8s/base/${name}`, existsSync(join(root, "k8s/base", name))],
  ["a name of the stack", ["rpc-chain", "rpc-service", "components", "mtls", "proto", "rpc-kit", "web"].includes(name)],
]) {
  if (taken) fail(`${name} is taken (${what}); nothing was written`);
}
const calls = [...new Set(args.calls)];
for (const up of calls) {
  const s = services.get(up);
  if (!s) fail(`--calls ${up}: no such service (there are ${[...services.keys()].join(", ")}); nothing was written`);
  if (s.role === "edge") fail(`--calls ${up}: ${up} is the public edge, not called from inside; nothing was written`);
}
const taken = takenPorts(compose);
if (args.port !== undefined) {
  if (args.port < 1024 || args.port > 65535) fail(`--port ${args.port}: a port from 1024 to 65535`);
  if (taken.has(args.port)) fail(`--port ${args.port} is taken; nothing was written`);
}
const port = args.port ?? freePort(50051, taken);
const adminPort = freePort(9051, new Set([...taken, port]));
const ups = upstreamApis(calls).map((u) => ({ ...u, ...services.get(u.name) }));

const Service = `${pascal(name)}Service`;
const protoFile = `proto/demo/${seg}/v1/${seg}.proto`;
const pbModule = `@demo/proto/demo/${seg}/v1/${seg}_pb`;
const callsText = ups.length === 0 ? "" : ` after checking each id with ${ups.map((u) => u.name).join(" and ")}`;
const upstreamList = ups.map((u) => u.name).join(", ");
/** The upstream clients by variable name, as the handlers' deps take them: `{ users }`. */
const clients = `{ ${ups.map((u) => camel(u.name)).join(", ")} }`;
/** main.ts and the test import each upstream's service descriptor. */
const upstreamImports = ups.map((u) => `import { ${u.service} } from "${u.module}";\n`).join("");
/** The version the project's images and packages carry, and the library versions its apps pin. */
const VERSION = versionOf("package.json");
const NODE_ENGINE = JSON.parse(read("package.json")).engines.node;

/** path → new content; `null` original = a file this run creates. */
const writes = new Map();
const originals = new Map();
function stage(path, content) {
  if (!writes.has(path)) originals.set(path, existsSync(join(root, path)) ? read(path) : null);
  writes.set(path, content);
}
function edit(path, change) {
  const before = writes.get(path) ?? read(path);
  const after = change(before);
  if (after === before) fail(`could not find where ${name} goes in ${path}; nothing was written`, 1);
  stage(path, after);
}
/** Inserts `text` right after the last match of `re` (a multiline regex) in the file. */
function insertAfterLast(path, re, text) {
  edit(path, (s) => {
    const all = [...s.matchAll(new RegExp(re.source, `${re.flags.replace("g", "")}g`))];
    const last = all.at(-1);
    if (!last) return s;
    const at = last.index + last[0].length;
    return s.slice(0, at) + text + s.slice(at);
  });
}

// proto
stage(
  protoFile,
  `syntax = "proto3";

// The ${name} service${callsText ? `: answers by id${callsText}` : ""}. Written by
// \`npm run new-service\`: make it yours (then \`npm run generate\`).
package demo.${seg}.v1;

// ${Service} answers for ids${callsText}.
service ${Service} {
  // Get returns the item with this id.${ups.length ? ` NOT_FOUND when ${ups[0].name} does not know it.` : ""}
  rpc Get(GetRequest) returns (GetResponse) {
    option idempotency_level = NO_SIDE_EFFECTS;
  }
  // List streams the item of each id asked for, in order; the stream ends
  // with the first error.
  rpc List(ListRequest) returns (stream ListResponse) {
    option idempotency_level = NO_SIDE_EFFECTS;
  }
}

// One item of the ${name} service.
message Item {
  // The id asked for, e.g. "u-1".
  string id = 1;
  // The upstream calls that confirmed the id, e.g.
  // "demo.users.v1.UserService/GetUser".
  repeated string confirmed_by = 2;
}

// Request for ${Service}.Get.
message GetRequest {
  // Not empty.
  string id = 1;
}

// Response of ${Service}.Get.
message GetResponse {
  Item item = 1;
}

// Request for ${Service}.List.
message ListRequest {
  // 1 to 100 ids, none empty.
  repeated string ids = 1;
}

// One message of the ${Service}.List stream.
message ListResponse {
  Item item = 1;
}
`,
);

// apps/<name>
const app = `apps/${name}`;
stage(
  `${app}/package.json`,
  `${JSON.stringify(
    {
      name: `@demo/${name}`,
      version: VERSION,
      private: true,
      description: `${name}: demo.${seg}.v1.${Service}${ups.length ? `, calling ${upstreamList}` : ""}.`,
      type: "module",
      engines: { node: NODE_ENGINE },
      exports: { ".": { types: "./dist/service.d.ts", default: "./dist/service.js" } },
      scripts: {
        build: "tsc -p tsconfig.build.json",
        typecheck: "tsc -p tsconfig.json --noEmit",
        test: "node --test 'src/**/*.test.ts'",
        start: "node dist/main.js",
      },
      dependencies: {
        "@bufbuild/protobuf": versionOf("node_modules/@bufbuild/protobuf/package.json"),
        "@connectrpc/connect": versionOf("node_modules/@connectrpc/connect/package.json"),
        "@demo/proto": versionOf("packages/proto/package.json"),
        "@demo/rpc-kit": versionOf("packages/rpc-kit/package.json"),
      },
    },
    null,
    2,
  )}\n`,
);
stage(
  `${app}/tsconfig.json`,
  `${JSON.stringify(
    {
      extends: "../../tsconfig.base.json",
      compilerOptions: {
        rootDir: "src",
        outDir: "dist",
        erasableSyntaxOnly: true,
        rewriteRelativeImportExtensions: true,
        allowImportingTsExtensions: true,
      },
      include: ["src"],
    },
    null,
    2,
  )}\n`,
);
stage(
  `${app}/tsconfig.build.json`,
  `${JSON.stringify({ extends: "./tsconfig.json", exclude: ["src/**/*.test.ts"] }, null, 2)}\n`,
);

const upImports = ups.map((u) => `import type { ${u.service} } from "${u.module}";`).join("\n");
const depsFields = ups.map((u) => `  readonly ${camel(u.name)}: Client<typeof ${u.service}>;`).join("\n");
const checks = ups
  .map((u) =>
    u.method
      ? `    await ${camel(u.name)}.${u.method.local}({ ${u.method.field === "id" ? "id" : `${u.method.field}: id`} });\n    confirmedBy.push("${u.procedure}");`
      : `    // ${u.name}'s API has no read by one string: call ${camel(u.name)} here as your handler needs.`,
  )
  .join("\n");
stage(
  `${app}/src/service.ts`,
  `import type { ${ups.length ? "Client, " : ""}ServiceImpl } from "@connectrpc/connect";
import type { ${Service} } from "${pbModule}";
${upImports}${upImports ? "\n" : ""}import { invalidArgument } from "@demo/rpc-kit";

/** The most ids one List call takes. */
export const MAX_IDS = 100;

${
  depsFields
    ? `export interface ${Service}Deps {\n${depsFields}\n}`
    : `/** The clients of the services this one calls, once it calls any. */\nexport type ${Service}Deps = Record<string, never>;`
}

/**
 * demo.${seg}.v1.${Service}.${
   ups.length
     ? ` Upstream clients get their deadline and cancellation from the
 * inbound call, and their errors follow rpc-kit's error policy (an upstream's
 * NotFound stays NotFound; its outage is Unavailable here).`
     : ""
 }
 */
export function create${Service}(${ups.length ? clients : "_deps"}: ${Service}Deps): ServiceImpl<typeof ${Service}> {
  /** The item of one id, once every upstream has confirmed it. */
  async function itemOf(id: string) {
    const confirmedBy: string[] = [];
${checks}${checks ? "\n" : ""}    return { id, confirmedBy };
  }

  return {
    async get(req) {
      if (req.id.length === 0) throw invalidArgument([{ field: "id", description: "must not be empty" }]);
      return { item: await itemOf(req.id) };
    },

    async *list(req) {
      if (req.ids.length === 0 || req.ids.length > MAX_IDS) {
        throw invalidArgument([{ field: "ids", description: \`1 to \${MAX_IDS} ids\` }]);
      }
      const empty = req.ids.indexOf("");
      if (empty >= 0) throw invalidArgument([{ field: \`ids[\${empty}]\`, description: "must not be empty" }]);
      for (const id of req.ids) yield { item: await itemOf(id) };
    },
  };
}
`,
);

const settingsText = ups
  .map(
    (u) =>
      `    ${camel(u.name)}Addr: setting.target("${envName(u.name)}_ADDR", "localhost:${u.port}", "address of the ${u.name} service"),`,
  )
  .join("\n");
stage(
  `${app}/src/main.ts`,
  `import { ${Service} } from "${pbModule}";
${upstreamImports}import { serveApp, service${ups.length ? ", setting" : ""} } from "@demo/rpc-kit";
import { create${Service} } from "./service.ts";

await serveApp({
  name: "${name}",
  ports: { port: ${port}, adminPort: ${adminPort} },
${
  ups.length
    ? `  settings: {
${settingsText}
    rpcTimeoutMs: setting.int("RPC_TIMEOUT_MS", 2_000, "default deadline of calls to upstreams", { min: 1 }),
  },
  start: ({ config, client }) => {
${ups.map((u) => `    const ${camel(u.name)} = client(${u.service}, config.${camel(u.name)}Addr, { timeoutMs: config.rpcTimeoutMs });`).join("\n")}
    return { services: [service(${Service}, create${Service}(${clients}))] };
  },`
    : `  start: () => ({ services: [service(${Service}, create${Service}({}))] }),`
}
});
`,
);

// The in-memory test: each upstream scripted with the one method the handler calls.
stage(
  `${app}/src/service.test.ts`,
  `import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { ${Service} } from "${pbModule}";
${upstreamImports}import { BadRequestSchema } from "@demo/proto/google/rpc/error_details_pb";
import { createInMemoryClient } from "@demo/rpc-kit/testing";
import { create${Service}, MAX_IDS } from "./service.ts";

${
  ups.some((u) => u.method)
    ? `/** The ids the upstreams know; every id they are asked for is kept in asked. */
const KNOWN = new Set(["u-1", "u-2"]);

`
    : ""
}/** ${Service} over upstreams scripted in memory (methods left out answer Unimplemented). */
function client() {
  const asked: string[] = [];
${ups
  .map((u) =>
    u.method
      ? `  const ${camel(u.name)} = createInMemoryClient(${u.service}, {
    async ${u.method.local}(req) {
      asked.push(req.${u.method.field});
      if (!KNOWN.has(req.${u.method.field})) throw new ConnectError(\`\${req.${u.method.field}} not found\`, Code.NotFound);
      return {};
    },
  });`
      : `  const ${camel(u.name)} = createInMemoryClient(${u.service}, {});`,
  )
  .join("\n")}
  return { asked, ${camel(name)}: createInMemoryClient(${Service}, create${Service}(${clients})) };
}

const fieldOf = (e: unknown) => (e as ConnectError).findDetails(BadRequestSchema)[0]?.fieldViolations[0]?.field;

describe("${Service}", () => {
  it("answers an id${ups.length ? " its upstreams confirm" : ""}", async () => {
    const { ${camel(name)} } = client();
    const { item } = await ${camel(name)}.get({ id: "u-1" });
    assert.equal(item?.id, "u-1");
    assert.deepEqual(item?.confirmedBy, ${JSON.stringify(ups.filter((u) => u.method).map((u) => u.procedure))});
  });
${
  ups.some((u) => u.method)
    ? `
  it("keeps an upstream's NotFound", async () => {
    await assert.rejects(client().${camel(name)}.get({ id: "u-42" }), (e: unknown) => {
      assert.ok(e instanceof ConnectError && e.code === Code.NotFound, String(e));
      assert.equal(e.rawMessage, "u-42 not found");
      return true;
    });
  });
`
    : ""
}
  it("refuses an empty id before calling anyone", async () => {
    const { asked, ${camel(name)} } = client();
    await assert.rejects(${camel(name)}.get({ id: "" }), (e: unknown) => {
      assert.ok(e instanceof ConnectError && e.code === Code.InvalidArgument, String(e));
      assert.equal(fieldOf(e), "id");
      return true;
    });
    assert.deepEqual(asked, []);
  });

  it("streams an item per id, in order", async () => {
    const ids: string[] = [];
    for await (const { item } of client().${camel(name)}.list({ ids: ["u-2", "u-1"] })) ids.push(item?.id ?? "");
    assert.deepEqual(ids, ["u-2", "u-1"]);
  });

  it("refuses no ids, too many and an empty one, naming the field", async () => {
    const { ${camel(name)} } = client();
    const drain = async (ids: string[]) => {
      for await (const _ of ${camel(name)}.list({ ids })) {
        // nothing: the call must fail first
      }
    };
    for (const [ids, field] of [
      [[], "ids"],
      [Array.from({ length: MAX_IDS + 1 }, (_, i) => \`u-\${i}\`), "ids"],
      [["u-1", ""], "ids[1]"],
    ] as const) {
      await assert.rejects(drain([...ids]), (e: unknown) => {
        assert.ok(e instanceof ConnectError && e.code === Code.InvalidArgument, String(e));
        assert.equal(fieldOf(e), field);
        return true;
      });
    }
  });
});
`,
);

// npm start: after everything it calls (appended: nothing calls it yet).
edit("scripts/start.mjs", (s) =>
  s.replace(
    /\n\];\n/,
    `\n  {
    name: "${name}",
    adminPort: "${adminPort}",
    env: { PORT: "${port}", ADMIN_PORT: "${adminPort}"${ups.map((u) => `, ${envName(u.name)}_ADDR: "localhost:${u.port}"`).join("")} },
  },\n];\n`,
  ),
);

// compose: after the last service built from an app.
edit("docker-compose.yml", (s) => {
  const lines = s.split("\n");
  const last = composeServiceBlocks(s)
    .filter((b) => /^\s+APP: /m.test(b.text))
    .at(-1);
  if (!last) return s;
  const block = `
  ${name}:
    <<: *rpc-service
    image: rpc-chain/${name}:${VERSION}
    build:
      context: .
      args:
        APP: ${name}
    environment:
      <<: *rpc-env
      PORT: "${port}"
      ADMIN_PORT: "${adminPort}"
${ups.map((u) => `      ${envName(u.name)}_ADDR: dns:///${u.name}:${u.port}\n`).join("")}    ports:
      - "127.0.0.1:\${${envName(name)}_ADMIN_PORT:-${adminPort}}:${adminPort}" # admin: /readyz, /metrics, /debug/rpc (loopback only)
${
  ups.length
    ? `    depends_on:\n${ups.map((u) => `      ${u.name}:\n        condition: service_healthy\n`).join("")}`
    : ""
}    healthcheck:
      test:
        [
          "CMD",
          "node",
          "-e",
          "fetch('http://127.0.0.1:${adminPort}/readyz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))",
        ]
      interval: 5s
      timeout: 3s
      start_period: 10s
      retries: 3`;
  lines.splice(last.to, 0, ...block.split("\n"));
  return lines.join("\n");
});

// Prometheus scrapes its admin port.
insertAfterLast(
  "observability/prometheus.yml",
  /^ {6}- targets: \[.*\]\n {8}labels:\n {10}service: .*$/m,
  `\n      - targets: ["${name}:${adminPort}"]\n        labels:\n          service: ${name}`,
);

// Kubernetes: its folder, made concrete by the shared component.
const k8sFolder = `k8s/base/${name}`;
stage(
  `${k8sFolder}/service.yaml`,
  `# Headless: DNS answers every ready pod's address, so rpc-kit's clients
# balance over all of them.
apiVersion: v1
kind: Service
metadata:
  name: ${name}
  labels:
    app.kubernetes.io/name: ${name}
    app.kubernetes.io/component: backend
spec:
  clusterIP: None
  selector:
    app.kubernetes.io/name: ${name}
  ports:
    - name: grpc
      port: ${port}
      targetPort: rpc
      protocol: TCP
      appProtocol: grpc
    - name: admin
      port: ${adminPort}
      targetPort: admin
      protocol: TCP
      appProtocol: http
`,
);
stage(
  `${k8sFolder}/kustomization.yaml`,
  `# ${name}: its Service (service.yaml) makes the shared template
# (k8s/components/rpc-service) its Deployment; its own settings are below
# (the ones all services share: rpc-chain-config in k8s/base).
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization

resources:
  - service.yaml

components:
  - ../../components/rpc-service

configMapGenerator:
  - name: ${name}-config
    literals:
      - PORT=${port}
      - ADMIN_PORT=${adminPort}
${ups.map((u) => `      - ${envName(u.name)}_ADDR=dns:///${u.name}.${NAMESPACE}.svc.cluster.local:${u.port}\n`).join("")}`,
);
edit("k8s/base/kustomization.yaml", (s) => {
  const folders = [...s.matchAll(/^ {2}- ([a-z][\w-]*)\n/gm)].filter((m) => existsSync(join(root, "k8s/base", m[1])));
  const last = folders.at(-1);
  if (!last) return s;
  const at = last.index + last[0].length;
  return `${s.slice(0, at)}  - ${name}\n${s.slice(at)}`;
});
insertAfterLast(
  "k8s/base/kustomization.yaml",
  /^ {2}- name: rpc-chain\/[\w-]+\n {4}newTag: .*$/m,
  `\n  - name: rpc-chain/${name}\n    newTag: ${VERSION}`,
);

const policy = (policyName, selected, type, peer, peerPort) => `---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: ${policyName}
spec:
  podSelector:
    matchLabels:
      app.kubernetes.io/name: ${selected}
  policyTypes: [${type}]
  ${type === "Egress" ? "egress" : "ingress"}:
    - ${type === "Egress" ? "to" : "from"}:
        - podSelector:
            matchLabels:
              app.kubernetes.io/name: ${peer}
      ports:
        - protocol: TCP
          port: ${peerPort}
`;
if (ups.length > 0) {
  edit(
    "k8s/base/network-policies.yaml",
    (s) =>
      s.replace(/\n*$/, "\n") +
      ups
        .map(
          (u) =>
            policy(`${name}-to-${u.name}`, name, "Egress", u.name, u.port) +
            policy(`${u.name}-from-${name}`, u.name, "Ingress", name, u.port),
        )
        .join(""),
  );
}

// Production: its image from the registry, autoscaled and disruption-budgeted like the others.
insertAfterLast(
  "k8s/overlays/production/kustomization.yaml",
  /^ {2}- name: rpc-chain\/[\w-]+\n {4}newName: .*\n {4}newTag: .*$/m,
  `\n  - name: rpc-chain/${name}\n    newName: registry.example.com/rpc-chain/${name}\n    newTag: ${VERSION}`,
);
/** Appends a copy of the file's last document (one service's object) for this service, comments dropped. */
function appendCopyOfLast(path) {
  edit(path, (s) => {
    const doc = s.split(/^---\n/m).at(-1);
    const other = /^ {2}name: ([\w-]+)$/m.exec(doc)?.[1];
    if (!other) return s;
    return `${s.replace(/\n*$/, "\n")}---\n${doc.replace(/^#.*\n/gm, "").replaceAll(new RegExp(`\\b${other}\\b`, "g"), name)}`;
  });
}
appendCopyOfLast("k8s/overlays/production/autoscaling.yaml");
appendCopyOfLast("k8s/overlays/production/disruption-budgets.yaml");

// mTLS: its certificate and the mount of its Secret.
// A backend serves and calls: its certificate is for both.
edit(
  "k8s/components/mtls/certificates.yaml",
  (s) => `${s.replace(/\n*$/, "\n")}---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata:
  name: ${name}-tls
spec:
  secretName: ${name}-tls
  commonName: ${name}
  dnsNames:
    - ${name}
    - ${name}.${NAMESPACE}.svc
    - ${name}.${NAMESPACE}.svc.cluster.local
  duration: 24h
  renewBefore: 8h
  usages: [digital signature, key encipherment, server auth, client auth]
  privateKey:
    algorithm: ECDSA
    size: 256
    rotationPolicy: Always
  issuerRef:
    name: rpc-chain-ca
    kind: Issuer
`,
);
stage(
  `k8s/components/mtls/mount-${name}.yaml`,
  `# ${name} reads its certificate, key and the CA from the Secret of Certificate ${name}-tls.
- op: add
  path: /spec/template/spec/volumes/-
  value:
    name: tls
    secret:
      secretName: ${name}-tls
      defaultMode: 288 # 0440: readable by the owner (root) and the pod's fsGroup only
- op: add
  path: /spec/template/spec/containers/0/volumeMounts/-
  value:
    name: tls
    mountPath: /etc/rpc-tls
    readOnly: true
- op: add
  path: /spec/template/spec/securityContext/fsGroup
  value: 1000
`,
);
insertAfterLast(
  "k8s/components/mtls/kustomization.yaml",
  /^ {2}- target:\n {6}kind: Deployment\n {6}name: [\w-]+\n {4}path: mount-[\w-]+\.yaml$/m,
  `\n  - target:\n      kind: Deployment\n      name: ${name}\n    path: mount-${name}.yaml`,
);

// The deploy tests' call graph.
if (ups.length > 0) {
  edit("tests/deploy/src/k8s.test.ts", (s) =>
    s.replace(
      /^const CHAIN = \[(.*)\];$/m,
      (_, list) => `const CHAIN = [${list}, ${ups.map((u) => JSON.stringify(`${name}→${u.name}`)).join(", ")}];`,
    ),
  );
}

// The README's services table.
insertAfterLast(
  "README.md",
  /^\| `[\w-]+` +\|.*\| `proto\/demo\/.*\.proto` *\|$/m,
  `\n| \`${name}\` | ${ups.length ? `checks ids with ${upstreamList}` : "answers by id"} | ${port} | ${adminPort} | ${upstreamList || "—"} | \`${protoFile}\` |`,
);

// ------------------------------------------------------------------- write

function rollback() {
  for (const [path, content] of originals) {
    if (content === null) rmSync(join(root, path), { force: true });
    else writeFileSync(join(root, path), content);
  }
  for (const dir of [app, k8sFolder, `proto/demo/${seg}`, `packages/proto/src/demo/${seg}`]) {
    rmSync(join(root, dir), { recursive: true, force: true });
  }
}

function run(command, commandArgs) {
  try {
    execFileSync(command, commandArgs, { cwd: root, stdio: ["ignore", "inherit", "pipe"], encoding: "utf8" });
  } catch (err) {
    rollback();
    fail(`${[command, ...commandArgs].join(" ")} failed, every file is as it was:\n${err.stderr ?? err.message}`, 1);
  }
}

for (const [path, content] of writes) {
  mkdirSync(dirname(join(root, path)), { recursive: true });
  writeFileSync(join(root, path), content);
}
run("npx", ["--no-install", "buf", "lint"]);
run("npx", ["--no-install", "buf", "generate"]);
run("npx", [
  "--no-install",
  "biome",
  "check",
  "--write",
  app,
  "README.md",
  "scripts/start.mjs",
  "tests/deploy/src/k8s.test.ts",
]);
if (args.install) run("npm", ["install", "--no-audit", "--no-fund", "--loglevel=error"]);

process.stdout.write(
  [
    `new-service: ${name} on port ${port} (admin ${adminPort})${ups.length ? `, calling ${upstreamList}` : ""}:`,
    `  ${protoFile} and packages/proto/src/demo/${seg}/ (generated)`,
    `  ${app}/ (main, handlers, their test)`,
    `  ${k8sFolder}/ and k8s/base/kustomization.yaml${ups.length ? ", NetworkPolicies" : ""}, production overlay, mtls component`,
    "  scripts/start.mjs, docker-compose.yml, observability/prometheus.yml, README.md",
    ...(ups.length ? ["  tests/deploy/src/k8s.test.ts (the chain)"] : []),
    args.install ? "next: npm test" : "next: npm install, then npm test",
    "",
  ].join("\n"),
);
