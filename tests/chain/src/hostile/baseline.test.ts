/**
 * The harness itself, with no attack: the chain started as the image runs
 * it holds every bound the hostile tests assert, so that a failure there is
 * the attack's doing, not the bounds'.
 */
import { it } from "node:test";
import { assertHeld, observe, violations, withHostileChain } from "./harness.ts";

it("with no attack, the chain holds every bound the hostile tests assert", { timeout: 60_000 }, async (t) => {
  await withHostileChain({}, async (chain) => {
    const o = await observe(
      chain,
      async (ctx) => {
        while (!ctx.stop()) await new Promise((r) => setTimeout(r, 100));
      },
      { attackMs: 4_000 },
    );
    assertHeld(t, o, violations(o, { poolsKept: true }), "no attack");
  });
});
