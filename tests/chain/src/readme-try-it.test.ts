/**
 * The README's "Try it" section, run as written against the chain started as
 * `npm start` starts it (fault injection on, a fresh database): every command
 * in order, its answer compared with the one the README shows. Ports are the
 * chain's own; the times of users created here are masked.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type Chain, repoRoot, startChain } from "./processes.ts";
import { sh } from "./shell.ts";

interface Step {
  readonly command: string;
  /** The answers shown after it: one per run of the command. */
  readonly answers: string[];
}

function tryItSteps(): Step[] {
  const readme = readFileSync(join(repoRoot, "README.md"), "utf8");
  const start = readme.indexOf("\n## Try it\n");
  const section = readme.slice(start, readme.indexOf("\n## ", start + 1));
  const steps: Step[] = [];
  for (const [, lang, body] of section.matchAll(/```(\w*)\n([\s\S]*?)```/g)) {
    if (lang === "sh") steps.push({ command: body as string, answers: [] });
    else if (lang === "") steps.at(-1)?.answers.push(body as string);
  }
  return steps;
}

/** Created users' times differ run to run; the seeded users' do not, but are masked alike. */
const masked = (text: string) =>
  text
    .trimEnd()
    .replace(/\r\n/g, "\n")
    .replace(/("createdAt":\s*")[^"]+"/g, '$1…"');

describe("README: Try it, as written", () => {
  let chain: Chain;
  const steps = tryItSteps();

  before(async () => {
    chain = await startChain({ all: { FAULT_INJECTION: "on" } });
  });
  after(() => chain.stop());

  it("has the commands it is expected to have", () => {
    assert.ok(steps.length >= 8, `${steps.length} commands`);
  });

  it("answers every command as the README shows, in order", async () => {
    const ports: Record<string, number> = {
      "8080": chain.gateway.port,
      "9080": chain.gateway.adminPort,
      "50052": chain.profiles.port,
      "9052": chain.profiles.adminPort,
      "50051": chain.users.port,
      "9051": chain.users.adminPort,
    };
    for (const step of steps) {
      const command = step.command.replace(/localhost:(\d+)/g, (m, port: string) =>
        ports[port] === undefined ? m : `localhost:${ports[port]}`,
      );
      for (const answer of step.answers.length > 0 ? step.answers : [undefined]) {
        const { code, stdout, stderr } = await sh(command);
        assert.equal(code, 0, `${step.command}\n${stderr}`);
        if (answer === undefined) continue;
        const elided = /^\.\.\. .*\.\.\.$/m.exec(answer);
        if (elided === null) {
          assert.equal(masked(stdout), masked(answer), step.command);
          continue;
        }
        // "... one message per user: u-1, … ..." stands for the rest: what precedes it is shown as is.
        assert.ok(
          masked(stdout).startsWith(masked(answer.slice(0, elided.index)).trimEnd()),
          `${step.command}\n${stdout}`,
        );
        for (const id of elided[0].match(/u-\d+/g) ?? []) assert.ok(stdout.includes(`"${id}"`), `${id} listed`);
      }
    }
  });
});
