/**
 * Finding 9 (medium): no connection cap and no idle bounds. ~20k idle TCP
 * connections exhausted the gateway's fds, after which new connections on
 * :8080 and the admin port's /healthz (the liveness probe) were accepted
 * and dropped; a connection sending nothing, a partial HTTP/1.1 head or only
 * the HTTP/2 preface stayed open for more than 150 s.
 *
 * Spec, with the small values these tests set (SMALL_LIMITS in harness.ts):
 * MAX_CONNECTIONS=300 per process and MAX_CONNECTIONS_PER_CLIENT=100 per
 * address at the edge (past them: closed at once); HEADERS_TIMEOUT_MS=1000
 * to a preface+SETTINGS or a complete HTTP/1.1 head (h1: 408 and close);
 * IDLE_TIMEOUT_MS=1500 for an HTTP/2 connection with no stream (GOAWAY
 * NO_ERROR, close); KEEP_ALIVE_TIMEOUT_MS=1000; the admin port: head
 * timeout 5 s, keep-alive 1 s (fixed). The timeouts are checked about
 * every second.
 */
import { it } from "node:test";
import { h1Request, RawH1 } from "../raw-h1.ts";
import { H2_ERROR, H2_PREFACE, RawH2 } from "../raw-h2.ts";
import {
  assertHeld,
  attackerAddress,
  type HostileChain,
  observe,
  refusalCounted,
  SMALL_LIMITS,
  violations,
  withHostileChain,
} from "./harness.ts";

const MAX_CONNECTIONS = Number(SMALL_LIMITS.MAX_CONNECTIONS);
const MAX_CONNECTIONS_PER_CLIENT = Number(SMALL_LIMITS.MAX_CONNECTIONS_PER_CLIENT);
/** Attacking connections per address: 150 from the first (50 past its cap), 100 from three more (past the process cap). */
const PLAN: readonly number[] = [150, 100, 100, 100];
/** How long the idle connections are held, their counts sampled. */
const HOLD_MS = 5_000;
/** The gateway's fds: its MAX_CONNECTIONS, plus ~60 of its own (files, pipes, admin and upstream sockets). */
const FD_BOUND = MAX_CONNECTIONS + 64;
/** "Checked about every second": a timeout is seen at most this late. */
const CHECK_SLACK_MS = 1_500;

it("the gateway caps connections per client address and per process, and /healthz keeps answering", {
  timeout: 60_000,
}, async (t) => {
  await withHostileChain({}, async (chain) => {
    const o = await observe(
      chain,
      async (ctx) => {
        const byAddress: RawH2[][] = PLAN.map(() => []);
        // Well-formed, idle HTTP/2 connections (preface and SETTINGS sent, no stream): no timeout applies to them here.
        const connectFrom = async (a: number) => {
          for (let i = 0; i < (PLAN[a] ?? 0) && !ctx.stop(); i++) {
            try {
              const c = await RawH2.connect({ port: chain.gateway.port, localAddress: attackerAddress(a) });
              byAddress[a]?.push(c);
              ctx.onEnd(() => c.destroy());
            } catch {
              // refused outright: fine
            }
          }
        };
        // The first address alone (past its own cap, under the process's), then the others together.
        await connectFrom(0);
        await Promise.all(PLAN.slice(1).map((_, a) => connectFrom(a + 1)));
        const open = () => byAddress.map((conns) => conns.filter((c) => !c.isClosed).length);
        // Sampled from 250 ms on: a connection closed at accept needs a moment to be seen closed here.
        const maxOpen = PLAN.map(() => 0);
        let maxTotal = 0;
        while (!ctx.stop()) {
          await new Promise((r) => setTimeout(r, 250));
          const now = open();
          now.forEach((n, a) => {
            maxOpen[a] = Math.max(maxOpen[a] ?? 0, n);
          });
          maxTotal = Math.max(
            maxTotal,
            now.reduce((x, y) => x + y, 0),
          );
        }
        // Connections the server closed within 500 ms of accepting them.
        const closedAtOnce = byAddress.map(
          (conns) => conns.filter((c) => !c.closedByUs && (c.closedAtMs ?? Number.POSITIVE_INFINITY) < 500).length,
        );
        return { opened: byAddress.map((c) => c.length), maxOpen, maxTotal, closedAtOnce };
      },
      { attackMs: HOLD_MS },
    );
    const r = o.result;
    const perAddress = PLAN.map(
      (n, a) =>
        `${attackerAddress(a)}: ${r.opened[a]} of ${n} connected, at most ${r.maxOpen[a]} open at once, ${r.closedAtOnce[a]} closed at once`,
    );
    t.diagnostic([...perAddress, `at most ${r.maxTotal} attacking connections open at once`].join("\n"));
    // Four addresses × 100 is more than the process takes (300): new connections are refused while it is
    // full, the legitimate HTTP/1.1 client's among them (the gRPC client keeps the connection it has).
    const problems = violations(o, {
      fds: { gateway: FD_BOUND },
      legitFailuresAllowed: ["Aborted", "Unavailable", "Internal"],
    });
    r.maxOpen.forEach((n, a) => {
      if (n > MAX_CONNECTIONS_PER_CLIENT) {
        problems.push(
          `${attackerAddress(a)} held ${n} connections at once, over MAX_CONNECTIONS_PER_CLIENT=${MAX_CONNECTIONS_PER_CLIENT}`,
        );
      }
    });
    if (r.maxTotal > MAX_CONNECTIONS) {
      problems.push(`the attackers held ${r.maxTotal} connections at once, over MAX_CONNECTIONS=${MAX_CONNECTIONS}`);
    }
    if (!chain.deaths.has("gateway")) {
      problems.push(...(await refusalCounted(chain.gateway, "connections_per_client")));
      problems.push(...(await refusalCounted(chain.gateway, "connections")));
    }
    assertHeld(t, o, problems, `${PLAN.reduce((a, b) => a + b, 0)} idle connections from ${PLAN.length} addresses`);
  });
});

interface Probe {
  readonly name: string;
  /** The server must have closed it within this many ms of connecting. */
  readonly withinMs: number;
  /** What it must have seen before the close. */
  readonly expect?: "408" | "goaway-no-error";
  readonly open: () => Promise<RawH1 | RawH2>;
}

function probes(chain: HostileChain, headersMs: number, idleMs: number, keepAliveMs: number): Probe[] {
  const from = attackerAddress();
  const h1 = (port: number) => RawH1.connect({ port, localAddress: from });
  const h2 = (port: number, preface: boolean) => RawH2.connect({ port, localAddress: from, preface });
  const list: Probe[] = [];
  const headersBound = headersMs + CHECK_SLACK_MS;
  for (const p of [chain.gateway, chain.profiles, chain.users]) {
    list.push(
      { name: `${p.name} :${p.port}, nothing sent`, withinMs: headersBound, open: () => h1(p.port) },
      {
        name: `${p.name} :${p.port}, only the HTTP/2 preface (no SETTINGS)`,
        withinMs: headersBound,
        open: async () => {
          const c = await h2(p.port, false);
          c.writeNow(H2_PREFACE);
          return c;
        },
      },
      {
        name: `${p.name} :${p.port}, HTTP/2 preface and SETTINGS, then no stream`,
        withinMs: idleMs + CHECK_SLACK_MS,
        expect: "goaway-no-error",
        open: () => h2(p.port, true),
      },
    );
  }
  const gw = chain.gateway.port;
  list.push(
    {
      name: `gateway :${gw}, a partial HTTP/1.1 head`,
      withinMs: headersBound,
      expect: "408",
      open: async () => {
        const c = await h1(gw);
        c.writeNow("POST /demo.gateway.v1.GatewayService/GetProfile HTTP/1.1\r\nHost: localhost\r\n");
        return c;
      },
    },
    {
      name: `gateway :${gw}, an HTTP/1.1 head trickled a byte every 200 ms`,
      withinMs: headersBound,
      expect: "408",
      open: async () => {
        const c = await h1(gw);
        c.writeNow("GET / HTTP/1.1\r\nHost: localhost\r\n");
        const timer = setInterval(() => {
          if (c.isClosed) clearInterval(timer);
          else c.writeNow("X");
        }, 200);
        void c.closed.then(() => clearInterval(timer));
        return c;
      },
    },
    {
      name: `gateway :${gw}, an idle HTTP/1.1 keep-alive connection after one answered request`,
      withinMs: keepAliveMs + CHECK_SLACK_MS,
      open: async () => {
        const c = await h1(gw);
        c.writeNow(
          h1Request(
            "POST",
            "/demo.gateway.v1.GatewayService/GetProfile",
            { "Content-Type": "application/json" },
            '{"userId":"u-1"}',
          ),
        );
        return c;
      },
    },
  );
  for (const p of [chain.gateway, chain.profiles, chain.users]) {
    const port = p.adminPort;
    list.push(
      // Admin port (fixed): head timeout 5 s, keep-alive 1 s.
      { name: `${p.name} admin :${port}, nothing sent`, withinMs: 5_000 + CHECK_SLACK_MS, open: () => h1(port) },
      {
        name: `${p.name} admin :${port}, a partial HTTP/1.1 head`,
        withinMs: 5_000 + CHECK_SLACK_MS,
        expect: "408",
        open: async () => {
          const c = await h1(port);
          c.writeNow("GET /healthz HTTP/1.1\r\nHost: localhost\r\n");
          return c;
        },
      },
      {
        name: `${p.name} admin :${port}, an idle keep-alive connection after /healthz`,
        withinMs: 1_000 + CHECK_SLACK_MS,
        open: async () => {
          const c = await h1(port);
          c.writeNow(h1Request("GET", "/healthz", {}));
          return c;
        },
      },
    );
  }
  return list;
}

it("silent, half-sent and idle connections are closed on every port within their timeouts", {
  timeout: 60_000,
}, async (t) => {
  const idleMs = 1_500;
  await withHostileChain({ all: { IDLE_TIMEOUT_MS: String(idleMs) } }, async (chain) => {
    const list = probes(
      chain,
      Number(SMALL_LIMITS.HEADERS_TIMEOUT_MS),
      idleMs,
      Number(SMALL_LIMITS.KEEP_ALIVE_TIMEOUT_MS),
    );
    const waitMs = Math.max(...list.map((p) => p.withinMs)) + 500;
    const o = await observe(
      chain,
      async (ctx) => {
        const conns = await Promise.all(list.map((p) => p.open()));
        for (const c of conns) ctx.onEnd(() => c.destroy());
        await Promise.all(conns.map((c) => c.waitClosed(waitMs)));
        return conns.map((c, i) => {
          const p = list[i] as Probe;
          const closedAt = c.closedByUs ? undefined : c.closedAtMs;
          const saw =
            c instanceof RawH1
              ? c.statuses.join(",") || "no response"
              : c.goaway
                ? `GOAWAY code ${c.goaway.code}`
                : "no GOAWAY";
          const problems: string[] = [];
          if (closedAt === undefined) problems.push(`still open after ${(waitMs / 1000).toFixed(1)} s`);
          else if (closedAt > p.withinMs) problems.push(`closed only after ${closedAt.toFixed(0)} ms`);
          if (p.expect === "408" && !(c instanceof RawH1 && c.statuses.includes(408))) problems.push("no 408");
          if (p.expect === "goaway-no-error" && !(c instanceof RawH2 && c.goaway?.code === H2_ERROR.NO_ERROR)) {
            problems.push("no GOAWAY(NO_ERROR)");
          }
          return {
            line: `${p.name}: ${closedAt === undefined ? "open" : `closed at ${closedAt.toFixed(0)} ms`} (bound ${p.withinMs} ms), ${saw}`,
            problems: problems.map((x) => `${p.name}: ${x} (bound ${p.withinMs} ms; saw ${saw})`),
          };
        });
      },
      { attackMs: waitMs + 2_000 },
    );
    t.diagnostic(o.result.map((r) => r.line).join("\n"));
    const problems = [...violations(o), ...o.result.flatMap((r) => r.problems)];
    if (!chain.deaths.has("gateway")) problems.push(...(await refusalCounted(chain.gateway, "headers_timeout")));
    assertHeld(t, o, problems, "silent, half-sent and idle connections");
  });
});
