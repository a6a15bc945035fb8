/**
 * Finding 11 (low), four parts, one test each:
 * - MAX_HEADER_BYTES (16 KiB) was not enforced on the first stream of an
 *   HTTP/2 connection: a 20 KB, even 60 KB, header was served. Spec:
 *   RST_STREAM(ENHANCE_YOUR_CALM) on the first stream too.
 * - WINDOW_UPDATE floods were never limited (legitimate throughput halved).
 *   Spec: MAX_CONTROL_BYTES_PER_SECOND (128 KiB/s, default here), over it
 *   two seconds running: GOAWAY(ENHANCE_YOUR_CALM) and close.
 * - JSON nested 2M deep cost ~630 ms of CPU and 120 MB per request. Spec:
 *   MAX_JSON_DEPTH (100, default here), deeper: InvalidArgument (HTTP 400)
 *   before it is parsed.
 * - PINGs every millisecond were answered forever. Spec: grpc-go's
 *   keepalive enforcement, MIN_PING_INTERVAL_MS (10 s, default here), more
 *   than 2 strikes: GOAWAY(ENHANCE_YOUR_CALM, "too_many_pings") and close;
 *   rpc-kit's own clients never trip it.
 */
import { it } from "node:test";
import { cpuMicros } from "@demo/rpc-kit/testing";
import type { ServiceProcess } from "../processes.ts";
import { h1Request, RawH1 } from "../raw-h1.ts";
import { codeName, envelope, field1String, grpcRequestHeaders, H2, H2_ERROR, h2Frame, RawH2, utf8 } from "../raw-h2.ts";
import { PATH } from "./attacks.ts";
import {
  assertHeld,
  attackerAddress,
  type HostileChain,
  MiB,
  observe,
  refusalCounted,
  violations,
  withHostileChain,
} from "./harness.ts";

const paths = (chain: HostileChain): [ServiceProcess, string][] => [
  [chain.gateway, PATH.gatewayGetProfile],
  [chain.profiles, PATH.profilesGetProfile],
  [chain.users, PATH.usersGetUser],
];

// ---------------------------------------------------------------------------

/** Header sizes from the finding: past MAX_HEADER_BYTES (16 KiB by default). */
const HEADER_SIZES = [20_000, 60_000];

it("MAX_HEADER_BYTES holds on the first stream of an HTTP/2 connection, on every service", {
  timeout: 60_000,
}, async (t) => {
  await withHostileChain({}, async (chain) => {
    const o = await observe(
      chain,
      async (ctx) => {
        const results: { target: string; size: number; served: boolean; seen: string }[] = [];
        for (const [p, path] of paths(chain)) {
          for (const size of HEADER_SIZES) {
            // The first stream, sent right behind the preface: before the server's SETTINGS can arrive.
            const c = await RawH2.connect({ port: p.port, localAddress: attackerAddress() });
            ctx.onEnd(() => c.destroy());
            const id = c.openStream(grpcRequestHeaders(path, [["x-pad", "a".repeat(size)]]));
            await c.sendData(id, envelope(field1String(utf8("u-1"))), { endStream: true });
            await c.waitFor(() => {
              const s = c.streams.get(id);
              return c.isClosed || s?.remoteEnded === true || s?.rstCode !== undefined || c.goaway !== undefined;
            }, performance.now() + 3_000);
            const s = c.streams.get(id);
            results.push({
              target: p.name,
              size,
              // Served: an answer with a message in it.
              served: (s?.dataBytes ?? 0) > 5,
              seen: `status ${s?.status ?? "-"}, ${s?.dataBytes ?? 0} data bytes, rst ${s?.rstCode === undefined ? "-" : codeName(s.rstCode)}; ${c.describe()}`,
            });
            c.destroy();
          }
        }
        return results;
      },
      { attackMs: 20_000, tailMs: 1_000 },
    );
    t.diagnostic(o.result.map((r) => `${r.target}, ${r.size}-byte header on stream 1: ${r.seen}`).join("\n"));
    const problems = violations(o);
    for (const r of o.result.filter((x) => x.served)) {
      problems.push(`${r.target} served a ${r.size}-byte header on the first stream (${r.seen})`);
    }
    for (const [p] of paths(chain)) {
      if (!chain.deaths.has(p.name)) problems.push(...(await refusalCounted(p, "header_bytes")));
    }
    assertHeld(t, o, problems, "oversized headers on the first HTTP/2 stream");
  });
});

// ---------------------------------------------------------------------------

/** Bounds on the flood: 10 s, and 100M frames (1.3 GB) per connection, so that increments of 1 never take
 * the window past 2^31-1 (a FLOW_CONTROL_ERROR would end the flood for another reason). */
const FLOOD_MS = 10_000;
const FLOOD_MAX_BYTES = 100_000_000 * 13;
/** Spec: over MAX_CONTROL_BYTES_PER_SECOND for 2 s running, then GOAWAY; with a second's checking slack, 4 s. */
const FLOOD_CUT_WITHIN_MS = 4_000;

it("a WINDOW_UPDATE flood is cut off with GOAWAY(ENHANCE_YOUR_CALM) at the gateway and at users", {
  timeout: 60_000,
}, async (t) => {
  await withHostileChain({}, async (chain) => {
    // 5,041 WINDOW_UPDATE frames (increment 1 on the connection) per 64 KiB write.
    const one = h2Frame(H2.WINDOW_UPDATE, 0, 0, new Uint8Array([0, 0, 0, 1]));
    const batch = Buffer.concat(Array.from({ length: Math.floor(65_536 / one.length) }, () => one));
    const o = await observe(
      chain,
      async (ctx) =>
        Promise.all(
          [chain.gateway, chain.users].map(async (p) => {
            const c = await RawH2.connect({ port: p.port, localAddress: attackerAddress() });
            ctx.onEnd(() => c.destroy());
            while (!ctx.stop() && !c.isClosed && c.goaway === undefined && c.bytesSent < FLOOD_MAX_BYTES) {
              await c.write(batch, ctx.deadline);
            }
            await c.waitClosed(500);
            return { target: p.name, conn: c, sentMiB: c.bytesSent / MiB };
          }),
        ),
      { attackMs: FLOOD_MS },
    );
    const problems = violations(o);
    for (const r of o.result) {
      const c = r.conn;
      t.diagnostic(`${r.target}: ${r.sentMiB.toFixed(0)} MiB of WINDOW_UPDATE sent; ${c.describe()}`);
      if (c.goaway?.code !== H2_ERROR.ENHANCE_YOUR_CALM) {
        problems.push(`${r.target} sent no GOAWAY(ENHANCE_YOUR_CALM) to the flood (${c.describe()})`);
      } else if (c.goaway.atMs > FLOOD_CUT_WITHIN_MS) {
        problems.push(`${r.target} sent GOAWAY only after ${c.goaway.atMs.toFixed(0)} ms > ${FLOOD_CUT_WITHIN_MS} ms`);
      }
      if (c.closedByUs || c.closedAtMs === undefined)
        problems.push(`${r.target} did not close the flooding connection`);
      const p = chain[r.target as "gateway" | "users"];
      if (!chain.deaths.has(p.name)) problems.push(...(await refusalCounted(p, "control_bytes")));
    }
    assertHeld(t, o, problems, "WINDOW_UPDATE flood");
  });
});

// ---------------------------------------------------------------------------

/** The finding's case: a user id nested 2M arrays deep, 4 MB of JSON (under MAX_MESSAGE_BYTES). */
const DEPTH = 2_000_000;
/** 4 connections from the attacker, 3 requests each, one after the other. */
const JSON_CONNECTIONS = 4;
const JSON_PER_CONNECTION = 3;
/**
 * Gateway CPU per deep request: finding the depth past 100 in 4 MB is a
 * linear scan of tens of ms (reading the body included); parsing it cost
 * ~630 ms. The legitimate client's calls during the attack count in too.
 */
const CPU_PER_REQUEST_MS = 150;
/** Peak RSS of the gateway: ~120 MB idle plus 4 bodies of 4 MB being read; parsing each took 120 MB. */
const JSON_RSS_BOUND = 256 * MiB;

it("JSON nested 2M deep is refused before it is parsed: little CPU, little memory, HTTP 400", {
  timeout: 60_000,
}, async (t) => {
  await withHostileChain({}, async (chain) => {
    const body = `{"userId":${"[".repeat(DEPTH)}${"]".repeat(DEPTH)}}`;
    const request = h1Request("POST", PATH.gatewayGetProfile, { "Content-Type": "application/json" }, body);
    let cpuBefore = 0;
    let cpuAfter = 0;
    const o = await observe(
      chain,
      async (ctx) => {
        cpuBefore = cpuMicros(chain.gateway.pid);
        const statuses = await Promise.all(
          Array.from({ length: JSON_CONNECTIONS }, async () => {
            const out: number[] = [];
            let c = await RawH1.connect({ port: chain.gateway.port, localAddress: attackerAddress() });
            ctx.onEnd(() => c.destroy());
            for (let i = 0; i < JSON_PER_CONNECTION && !ctx.stop(); i++) {
              if (c.isClosed) {
                c = await RawH1.connect({ port: chain.gateway.port, localAddress: attackerAddress() });
                ctx.onEnd(() => c.destroy());
              }
              const before = c.statuses.length;
              await c.writeAll(request, { deadline: ctx.deadline });
              await c.waitFor(() => c.statuses.length > before || c.isClosed || ctx.stop(), ctx.deadline);
              out.push(c.statuses[before] ?? 0);
            }
            return out;
          }),
        );
        if (!chain.deaths.has("gateway")) cpuAfter = cpuMicros(chain.gateway.pid);
        return statuses.flat();
      },
      { attackMs: 30_000 },
    );
    const statuses = o.result;
    const cpuMsPerRequest = (cpuAfter - cpuBefore) / 1000 / Math.max(1, statuses.length);
    t.diagnostic(
      `${statuses.length} requests of ${(body.length / MiB).toFixed(1)} MiB, answered ${statuses.join(",")}; ` +
        `gateway CPU ${cpuMsPerRequest.toFixed(0)} ms per request`,
    );
    const problems = violations(o, { rss: { gateway: JSON_RSS_BOUND } });
    const not400 = statuses.filter((s) => s !== 400);
    if (not400.length > 0)
      problems.push(`${not400.length} deep requests were not answered 400 (got ${not400.join(",")})`);
    if (!chain.deaths.has("gateway")) {
      if (cpuMsPerRequest > CPU_PER_REQUEST_MS) {
        problems.push(
          `the gateway spent ${cpuMsPerRequest.toFixed(0)} ms of CPU per deep request > ${CPU_PER_REQUEST_MS} ms`,
        );
      }
      problems.push(...(await refusalCounted(chain.gateway, "json_depth")));
    }
    assertHeld(t, o, problems, `JSON nested ${DEPTH} deep`);
  });
});

// ---------------------------------------------------------------------------

/** Bound on the flood: 10 s of a PING a millisecond. */
const PING_MS = 10_000;
/** Three PINGs too soon, then GOAWAY: it must come within this, with few PINGs answered. */
const PING_CUT_WITHIN_MS = 2_000;
/**
 * PINGs answered before the GOAWAY: three strikes, plus the first PINGs of a connection, which are
 * no strikes while the server is still writing its SETTINGS and their ACK (as grpc-go, a PING after
 * anything else was written starts over), plus what the client sent before it read the GOAWAY.
 */
const MAX_PING_ACKS = 20;

it("PINGs every millisecond get GOAWAY(ENHANCE_YOUR_CALM, too_many_pings) on every service", {
  timeout: 60_000,
}, async (t) => {
  await withHostileChain({}, async (chain) => {
    const o = await observe(
      chain,
      async (ctx) =>
        Promise.all(
          paths(chain).map(async ([p]) => {
            const c = await RawH2.connect({ port: p.port, localAddress: attackerAddress() });
            ctx.onEnd(() => c.destroy());
            let pings = 0;
            while (!ctx.stop() && !c.isClosed && pings < PING_MS) {
              const payload = Buffer.alloc(8);
              payload.writeUInt32BE(pings++, 4);
              c.ping(payload);
              await new Promise((r) => setTimeout(r, 1));
            }
            await c.waitClosed(500);
            return { target: p.name, conn: c, pings };
          }),
        ),
      { attackMs: PING_MS },
    );
    // rpc-kit's own clients (the gateway's pool to profiles, profiles' to users) must never trip the policy.
    const problems = violations(o, { poolsKept: true });
    for (const r of o.result) {
      const c = r.conn;
      t.diagnostic(`${r.target}: ${r.pings} PINGs sent, ${c.pingAcks} answered; ${c.describe()}`);
      if (c.goaway?.code !== H2_ERROR.ENHANCE_YOUR_CALM || !c.goaway.debug.includes("too_many_pings")) {
        problems.push(`${r.target} sent no GOAWAY(ENHANCE_YOUR_CALM, "too_many_pings") (${c.describe()})`);
      } else if (c.goaway.atMs > PING_CUT_WITHIN_MS) {
        problems.push(`${r.target} sent GOAWAY only after ${c.goaway.atMs.toFixed(0)} ms > ${PING_CUT_WITHIN_MS} ms`);
      }
      if (c.pingAcks > MAX_PING_ACKS)
        problems.push(`${r.target} answered ${c.pingAcks} PINGs (bound ${MAX_PING_ACKS})`);
      if (c.closedByUs || c.closedAtMs === undefined) problems.push(`${r.target} did not close the pinging connection`);
      const p = chain[r.target as "gateway" | "profiles" | "users"];
      if (!chain.deaths.has(p.name)) problems.push(...(await refusalCounted(p, "pings")));
    }
    assertHeld(t, o, problems, "a PING every millisecond");
  });
});
