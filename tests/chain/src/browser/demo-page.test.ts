/**
 * The demo page in a real browser: Debian's Chromium driven by
 * playwright-core, against the three services as real processes. Run with
 * `npm run test:browser` (CHROMIUM_PATH overrides /usr/bin/chromium);
 * screenshots land in test-results/browser/.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type Browser, type BrowserContext, chromium, type Locator, type Page } from "playwright-core";
import { type Chain, repoRoot, startChain } from "../processes.ts";
import { startOtherOrigin } from "./other-origin.ts";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
export const ARTIFACTS = join(repoRoot, "test-results", "browser");
const SEEDED = ["u-1", "u-2", "u-3"];
/** Bounds every wait on the page: a call that never shows fails the test instead of hanging it. */
const WAIT_MS = 15_000;

interface Hop {
  service: string;
  code: string;
  ms: number;
}

/** The newest call shown for `method`, once it appears after `before` calls were shown. */
async function nextCall(page: Page, before: number, method: string): Promise<Locator> {
  await page.locator("#calls > li").nth(before).waitFor({ timeout: WAIT_MS });
  const call = page.locator("#calls > li").first();
  assert.equal(await call.getAttribute("data-method"), method);
  return call;
}

async function hopsOf(call: Locator): Promise<Hop[]> {
  return call.locator(".hop").evaluateAll((items) =>
    items.map((li) => ({
      service: li.getAttribute("data-service") ?? "",
      code: li.getAttribute("data-code") ?? "",
      ms: Number(li.getAttribute("data-ms")),
    })),
  );
}

async function elapsedMs(call: Locator): Promise<number> {
  const text = (await call.locator('[data-role="elapsed"]').textContent()) ?? "";
  const m = /([\d.]+) ms end to end/.exec(text);
  assert.ok(m, `an end-to-end time in "${text}"`);
  return Number(m[1]);
}

/**
 * The call crossed gateway → profiles → users, each answering `code`, and
 * users' database (whose query succeeds, a miss included), each hop's time
 * inside its caller's.
 */
function assertWholeChain(hops: Hop[], code: string): void {
  assert.deepEqual(
    hops.map((h) => [h.service, h.code]),
    [
      ["gateway", code],
      ["profiles", code],
      ["users", code],
      ["postgres", "ok"],
    ],
  );
  assertNested(hops);
}

/**
 * The answer shown under the button that made the call: the same call as the
 * newest in the list, no further below the button than `maxGapPx`.
 */
async function answerBeside(page: Page, region: string, button: string, maxGapPx: number): Promise<Locator> {
  const panel = page.getByRole("region", { name: region });
  const answer = panel.locator(".call-beside");
  await answer.waitFor({ timeout: WAIT_MS });
  const buttonBox = await panel.getByRole("button", { name: button }).boundingBox();
  const answerBox = await answer.boundingBox();
  assert.ok(buttonBox && answerBox, "the button and its answer are on the page");
  const gap = answerBox.y - (buttonBox.y + buttonBox.height);
  assert.ok(gap >= 0 && gap <= maxGapPx, `the answer starts ${gap} px below its button (at most ${maxGapPx})`);
  return answer;
}

/** The hops drawn as a trace view draws spans: each bar lies within the bar of the hop before it, its caller. */
async function assertDrawnNested(call: Locator): Promise<void> {
  const bars = await call.locator(".hop-bar").evaluateAll((els) =>
    els.map((e) => {
      const r = e.getBoundingClientRect();
      return { left: r.left, right: r.right };
    }),
  );
  assert.ok(bars.length >= 2, `${bars.length} bars`);
  for (let i = 1; i < bars.length; i++) {
    const outer = bars[i - 1] as { left: number; right: number };
    const inner = bars[i] as { left: number; right: number };
    assert.ok(
      inner.left >= outer.left - 0.5 && inner.right <= outer.right + 0.5,
      `hop ${i} [${inner.left}, ${inner.right}] inside hop ${i - 1} [${outer.left}, ${outer.right}]`,
    );
  }
}

/** Each hop contains the next: the gateway's time includes profiles', which includes users', which includes its queries'. */
function assertNested(hops: Hop[]): void {
  for (let i = 1; i < hops.length; i++) {
    const outer = hops[i - 1] as Hop;
    const inner = hops[i] as Hop;
    assert.ok(
      outer.ms >= inner.ms,
      `${outer.service} (${outer.ms} ms) takes at least ${inner.service} (${inner.ms} ms)`,
    );
  }
  for (const hop of hops) assert.ok(hop.ms > 0, `${hop.service} has a time`);
}

describe("the demo page, in Chromium", { timeout: 180_000 }, () => {
  let chain: Chain;
  let browser: Browser;
  let allowed: Awaited<ReturnType<typeof startOtherOrigin>>;
  let refused: Awaited<ReturnType<typeof startOtherOrigin>>;

  before(async () => {
    assert.ok(existsSync(CHROMIUM), `Chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)`);
    mkdirSync(ARTIFACTS, { recursive: true });
    allowed = await startOtherOrigin();
    refused = await startOtherOrigin();
    chain = await startChain({
      all: { FAULT_INJECTION: "on" },
      gateway: { CORS_ALLOWED_ORIGINS: allowed.origin },
    });
    browser = await chromium.launch({ executablePath: CHROMIUM });
  });
  after(async () => {
    await browser?.close();
    await chain?.stop();
    await allowed?.close();
    await refused?.close();
  });

  /** A fresh page at the gateway, every request it makes recorded, failing on any console error. */
  async function openPage(context: BrowserContext) {
    const page = await context.newPage();
    const requests: string[] = [];
    const errors: string[] = [];
    page.on("request", (r) => requests.push(r.url()));
    page.on("console", (m) => {
      // Connect answers errors with HTTP statuses (404, 504…), which Chromium logs; those are the demo.
      if (m.type() === "error" && !m.text().startsWith("Failed to load resource: the server responded with a status"))
        errors.push(m.text());
    });
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(`${chain.baseUrl}/`);
    return { page, requests, errors };
  }

  let usersCreated = 0;

  for (const protocol of ["connect", "grpc-web"] as const) {
    describe(`with ${protocol === "connect" ? "the Connect protocol" : "gRPC-Web"}`, () => {
      let context: BrowserContext;
      let page: Page;
      let requests: string[];
      let errors: string[];
      let shown = 0;

      before(async () => {
        context = await browser.newContext({ viewport: { width: 1024, height: 900 } });
        ({ page, requests, errors } = await openPage(context));
        await page.getByLabel(protocol === "connect" ? "Connect (JSON)" : "gRPC-Web (binary)").check();
      });
      after(async () => {
        await page?.screenshot({ path: join(ARTIFACTS, `demo-page-${protocol}.png`), fullPage: true });
        await context?.close();
      });

      it("shows the profile of u-1 with the four hops it crossed", async () => {
        await page.getByLabel("User id").fill("u-1");
        await page.getByRole("button", { name: "Get profile" }).click();
        const call = await nextCall(page, shown++, "GetProfile");
        assert.equal(await call.getAttribute("data-code"), "ok");
        assert.equal(await call.getAttribute("data-protocol"), protocol);
        assert.match((await call.locator(".result").textContent()) ?? "", /Ada L\. \(AL\) · u-1 · Ada Lovelace/);
        const hops = await hopsOf(call);
        assertWholeChain(hops, "ok");
        assert.ok((await elapsedMs(call)) >= (hops[0] as Hop).ms, "end to end includes the gateway's time");
        assert.match((await call.locator("[data-trace-id]").textContent()) ?? "", /^[0-9a-f]{32}$/);
        // Under the button: the same call, its hops drawn each inside its caller's.
        const answer = await answerBeside(page, "Look up a profile", "Get profile", 120);
        assert.equal(await answer.getAttribute("data-code"), "ok");
        assert.deepEqual(await hopsOf(answer), hops);
        await assertDrawnNested(answer);
        // Beside the button, one line (a live region) says what happened and links to the details.
        const status = page.getByRole("region", { name: "Look up a profile" }).getByRole("status");
        assert.match((await status.textContent()) ?? "", /^GetProfile: ok in [\d.]+ ms, 4 hops · details$/);
        assert.equal(
          await status.getByRole("link", { name: "details" }).getAttribute("href"),
          `#${await call.getAttribute("id")}`,
        );
      });

      it("shows NotFound for an unknown id, at every hop", async () => {
        await page.getByRole("button", { name: "Unknown id → NotFound" }).click();
        const call = await nextCall(page, shown++, "GetProfile");
        assert.equal(await call.getAttribute("data-code"), "not_found");
        assert.match((await call.locator(".result").first().textContent()) ?? "", /u-404/);
        const hops = await hopsOf(call);
        assertWholeChain(hops, "not_found");
      });

      it("shows the field error for a bad email, stopped at the edge", async () => {
        await page.getByRole("button", { name: "Bad email → InvalidArgument" }).click();
        const call = await nextCall(page, shown++, "CreateUser");
        assert.equal(await call.getAttribute("data-code"), "invalid_argument");
        assert.deepEqual(await call.locator("[data-field]").evaluateAll((els) => els.map((e) => e.dataset.field)), [
          "email",
        ]);
        assert.match((await call.locator("[data-field]").textContent()) ?? "", /email: must be a valid email address/);
        const said = ((await call.textContent()) ?? "").match(/must be a valid email address/g) ?? [];
        assert.equal(said.length, 1, "the field error is shown once");
        await answerBeside(page, "Failure cases", "Bad email → InvalidArgument", 400);
        const hops = await hopsOf(call);
        assert.deepEqual(
          hops.map((h) => [h.service, h.code]),
          [["gateway", "invalid_argument"]],
        );
      });

      it("creates a user through the chain", async () => {
        await page.getByLabel("Name").fill(`Katherine ${protocol}`);
        await page.getByLabel("Email").fill(`katherine.${protocol}@example.com`);
        await page.getByRole("button", { name: "Create user" }).click();
        const call = await nextCall(page, shown++, "CreateUser");
        assert.equal(await call.getAttribute("data-code"), "ok");
        usersCreated++;
        assert.match(
          (await call.locator(".result").textContent()) ?? "",
          new RegExp(`created u-\\d+ · Katherine ${protocol}`),
        );
        assert.deepEqual(
          (await hopsOf(call)).map((h) => h.service),
          ["gateway", "profiles", "users", "postgres"],
        );
      });

      it("streams every profile into the list, with the hops of the stream", async () => {
        await page.getByRole("button", { name: "List profiles" }).click();
        const call = await nextCall(page, shown++, "ListProfiles");
        assert.equal(await call.getAttribute("data-code"), "ok");
        const ids = await page
          .getByRole("list", { name: "Streamed profiles" })
          .locator("li")
          .evaluateAll((els) => els.map((e) => e.getAttribute("data-user-id")));
        assert.equal(ids.length, SEEDED.length + usersCreated);
        assert.deepEqual(ids.slice(0, 3), SEEDED);
        assert.equal(await call.locator("[data-count]").getAttribute("data-count"), String(ids.length));
        const hops = await hopsOf(call);
        assertWholeChain(hops, "ok");
      });

      it("shows DeadlineExceeded for a deadline shorter than the delay injected in users", async () => {
        const delayMs = 3_000;
        await page.getByLabel("Deadline (ms)").fill("300");
        await page.getByLabel("Delay in users (ms)").fill(String(delayMs));
        await page.getByRole("button", { name: /short deadline/ }).click();
        const call = await nextCall(page, shown++, "GetProfile");
        assert.equal(await call.getAttribute("data-code"), "deadline_exceeded");
        const elapsed = await elapsedMs(call);
        assert.ok(elapsed < delayMs, `answered at the deadline (${elapsed} ms), not after the delay`);
        assert.match(
          (await page.getByRole("region", { name: "Failure cases" }).getByRole("status").textContent()) ?? "",
          /^GetProfile: deadline_exceeded in /,
        );
        const hops = await hopsOf(call);
        // users never answers: whoever called it last timed it. That is profiles, or, when
        // profiles' answer is later than the gateway's own deadline for it (each hop keeps
        // a 10 ms margin), the gateway timing profiles.
        assert.equal(hops[0]?.service, "gateway");
        assert.ok(hops.length >= 2, `hops past the gateway: ${JSON.stringify(hops)}`);
        assert.deepEqual(
          hops.map((h) => h.code),
          hops.map(() => "deadline_exceeded"),
        );
        const last = call.locator(".hop").last();
        assert.match((await last.textContent()) ?? "", /no answer: timed by its caller/);
        assert.equal(await call.locator(".hop", { hasText: "timed by its caller" }).count(), 1);
        assertNested(hops);
        // No internal address leaks into the message a public caller reads.
        assert.doesNotMatch((await call.locator(".result").first().textContent()) ?? "", /remote_addr|127\.0\.0\.1/);
      });

      it("made no request to any host but the gateway, and logged no error (no CSP violation)", () => {
        assert.ok(requests.length >= 4, `the page's own requests were seen: ${requests.join(", ")}`);
        const foreign = requests.filter((url) => new URL(url).origin !== chain.baseUrl);
        assert.deepEqual(foreign, []);
        assert.deepEqual(errors, []);
      });
    });
  }

  describe("on a phone-sized screen, by keyboard", () => {
    let context: BrowserContext;
    let page: Page;
    let errors: string[];

    before(async () => {
      context = await browser.newContext({ viewport: { width: 360, height: 740 }, isMobile: true, hasTouch: true });
      ({ page, errors } = await openPage(context));
    });
    after(async () => {
      await page?.screenshot({ path: join(ARTIFACTS, "demo-page-phone.png"), fullPage: true });
      await context?.close();
    });

    it("fits the screen's width: nothing scrolls sideways", async () => {
      const { scrollWidth, innerWidth } = await page.evaluate(() => ({
        scrollWidth: document.documentElement.scrollWidth,
        innerWidth: window.innerWidth,
      }));
      assert.ok(scrollWidth <= innerWidth, `page is ${scrollWidth}px wide on a ${innerWidth}px screen`);
    });

    it("labels every control, and every button is reachable with Tab", async () => {
      const unlabeled = await page.evaluate(() =>
        [...document.querySelectorAll<HTMLInputElement | HTMLButtonElement>("input, button")]
          .filter((el) => (el.labels?.length ?? 0) === 0 && !el.getAttribute("aria-label") && !el.textContent?.trim())
          .map((el) => el.outerHTML),
      );
      assert.deepEqual(unlabeled, []);
      const buttons = await page.locator("button").count();
      const reached = new Set<string>();
      await page.locator("body").focus();
      for (let i = 0; i < 40; i++) {
        await page.keyboard.press("Tab");
        const label = await page.evaluate(() =>
          document.activeElement?.tagName === "BUTTON" ? (document.activeElement.textContent ?? "") : "",
        );
        if (label) reached.add(label);
      }
      assert.equal(reached.size, buttons, `buttons reached with Tab: ${[...reached].join(" | ")}`);
    });

    it("runs a lookup from the keyboard alone: type an id, press Enter", async () => {
      await page.getByLabel("User id").focus();
      await page.keyboard.press("ControlOrMeta+A");
      await page.keyboard.type("u-2");
      await page.keyboard.press("Enter");
      const call = await nextCall(page, 0, "GetProfile");
      assert.equal(await call.getAttribute("data-code"), "ok");
      assert.match((await call.locator(".result").textContent()) ?? "", /Grace H\./);
      // On a phone too, the answer is right under the button, not a screen further down.
      const answer = await answerBeside(page, "Look up a profile", "Get profile", 120);
      await assertDrawnNested(answer);
    });

    it("keeps text contrast at WCAG AA (4.5:1, 3:1 for large text)", async () => {
      const failures = await page.evaluate(() => {
        const rgba = (c: string) => {
          const m = c.match(/[\d.]+/g)?.map(Number) ?? [0, 0, 0, 0];
          return { r: m[0] ?? 0, g: m[1] ?? 0, b: m[2] ?? 0, a: m[3] ?? 1 };
        };
        const lum = ({ r, g, b }: { r: number; g: number; b: number }) => {
          const f = (v: number) => {
            const s = v / 255;
            return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
          };
          return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
        };
        const background = (el: Element | null) => {
          for (let e = el; e; e = e.parentElement) {
            const c = rgba(getComputedStyle(e).backgroundColor);
            if (c.a > 0) return c;
          }
          return { r: 255, g: 255, b: 255, a: 1 };
        };
        const out: string[] = [];
        const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
        for (let n = walker.nextNode(); n; n = walker.nextNode()) {
          const el = n.parentElement;
          if (!el || !n.textContent?.trim() || !el.checkVisibility()) continue;
          const style = getComputedStyle(el);
          const fg = lum(rgba(style.color));
          const bg = lum(background(el));
          const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
          const size = Number.parseFloat(style.fontSize);
          const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
          if (ratio < (large ? 3 : 4.5)) out.push(`${ratio.toFixed(2)}:1 "${n.textContent.trim().slice(0, 40)}"`);
        }
        return out;
      });
      assert.deepEqual(failures, []);
    });

    it("logged no error", () => {
      assert.deepEqual(errors, []);
    });
  });

  describe("CORS: the API called from a page on another origin", () => {
    /** A Connect call made by a page served from `origin`; a refused one fails as fetch fails on CORS. */
    async function callFrom(origin: string) {
      const context = await browser.newContext();
      const page = await context.newPage();
      await page.goto(`${origin}/`);
      const result = await page.evaluate(async (url) => {
        try {
          const res = await fetch(url, {
            method: "POST",
            headers: {
              "content-type": "application/json",
              "connect-protocol-version": "1",
              "x-server-timing": "on",
            },
            body: JSON.stringify({ userId: "u-1" }),
          });
          return { status: res.status, body: await res.text(), timing: res.headers.get("trailer-server-timing") };
        } catch (err) {
          return { error: String(err) };
        }
      }, `${chain.baseUrl}/demo.gateway.v1.GatewayService/GetProfile`);
      await context.close();
      return result;
    }

    const gatewayCalls = () =>
      chain.gateway.lines.filter((l) => l.rpc_method === "demo.gateway.v1.GatewayService/GetProfile").length;

    it("answers a page from an allowed origin, hop timings readable", async () => {
      const result = await callFrom(allowed.origin);
      assert.equal(result.status, 200, JSON.stringify(result));
      assert.match(result.body ?? "", /Ada Lovelace/);
      assert.match(result.timing ?? "", /gateway;dur=/);
    });

    it("refuses a page from any other origin, before the API runs", async () => {
      const callsBefore = gatewayCalls();
      const result = await callFrom(refused.origin);
      assert.match(result.error ?? "", /Failed to fetch/, JSON.stringify(result));
      assert.deepEqual(
        refused.seen.filter((r) => r.startsWith("OPTIONS") || r.startsWith("POST")),
        [],
        "the other origin's server only served its page",
      );
      // The 403 preflight stops the browser; the API never saw a call.
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(gatewayCalls(), callsBefore);
    });
  });
});
