/**
 * Finding 6 (high): HTTP/1.1 pipelining had no concurrency bound. 60k
 * pipelined requests on one connection all started at once (gateway
 * 445-542 MB; 12 of 25 legitimate calls failed). Spec:
 * MAX_PIPELINED_REQUESTS (16, default here) requests in progress per
 * connection; later ones wait unread and are then served in order, none lost.
 */
import { it } from "node:test";
import { h1Request, RawH1 } from "../raw-h1.ts";
import { PATH } from "./attacks.ts";
import { assertHeld, attackerAddress, MiB, observe, violations, withHostileChain } from "./harness.ts";

/** As in the finding: 60k requests written at once on one connection. */
const PIPELINED = 60_000;
/** Bound on the attack: the connection is closed after this, answered or not. */
const ATTACK_MS = 12_000;
/**
 * Peak RSS of the gateway: ~120 MB idle, plus 16 requests in progress and
 * a paused socket's buffers, with room; today it reaches 445-542 MB.
 */
const RSS_BOUND = 256 * MiB;

it(`the gateway serves ${PIPELINED} pipelined HTTP/1.1 requests a few at a time, in order`, {
  timeout: 60_000,
}, async (t) => {
  await withHostileChain({}, async (chain) => {
    const one = h1Request(
      "POST",
      PATH.gatewayGetProfile,
      { "Content-Type": "application/json" },
      JSON.stringify({ userId: "u-2" }),
    );
    const all = Buffer.concat(Array.from({ length: PIPELINED }, () => one));
    const o = await observe(
      chain,
      async (ctx) => {
        const c = await RawH1.connect({ port: chain.gateway.port, localAddress: attackerAddress() });
        c.keepResponses = 100;
        ctx.onEnd(() => c.destroy());
        const written = await c.writeAll(all, { deadline: ctx.deadline, stop: () => ctx.stop() });
        await c.waitFor(() => c.isClosed || ctx.stop() || c.statuses.length >= PIPELINED, ctx.deadline);
        const statuses = new Map<number, number>();
        for (const s of c.statuses) statuses.set(s, (statuses.get(s) ?? 0) + 1);
        const wrongAnswers = c.responses.filter((r) => r.status === 200 && !r.body.includes("Grace Hopper")).length;
        return { written, answered: c.statuses.length, statuses, wrongAnswers, seen: c.describe(), garbled: c.garbled };
      },
      { attackMs: ATTACK_MS, tailMs: 3_000 },
    );
    const r = o.result;
    t.diagnostic(
      `${(r.written / MiB).toFixed(1)} MiB of requests written, ${r.answered} answered in ${((o.attackEnd - o.attackStart) / 1000).toFixed(1)} s: ${r.seen}`,
    );
    const problems = violations(o, { rss: { gateway: RSS_BOUND } });
    // Pipelined requests are legitimate HTTP/1.1: each one answered is answered OK, in order.
    const notOk = [...r.statuses].filter(([s]) => s !== 200);
    if (notOk.length > 0) {
      problems.push(`pipelined requests answered with errors: ${notOk.map(([s, n]) => `${s}×${n}`).join(", ")}`);
    }
    if (r.wrongAnswers > 0) problems.push(`${r.wrongAnswers} pipelined answers were not u-2's profile`);
    if (r.garbled) problems.push("the pipelined answers could not be parsed as HTTP/1.1 responses in order");
    assertHeld(t, o, problems, `${PIPELINED} pipelined requests on one connection`);
  });
});
