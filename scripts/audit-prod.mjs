/**
 * `npm audit --omit=dev` for CI: fails on any high or critical advisory in
 * production dependencies. Where the registry's advisory service cannot be
 * reached it says so and passes: no finding is not the same as no audit.
 */
import { spawnSync } from "node:child_process";

const run = spawnSync("npm", ["audit", "--omit=dev", "--json"], { encoding: "utf8" });
let report;
try {
  report = JSON.parse(run.stdout);
} catch {
  report = undefined;
}
const counts = report?.metadata?.vulnerabilities;
if (counts === undefined) {
  const why = report?.message || report?.error?.summary || `exit ${run.status}`;
  console.warn(`npm audit --omit=dev: NOT RUN, the advisory service did not answer (${why})`);
  process.exit(0);
}
console.log(`npm audit --omit=dev: ${JSON.stringify(counts)}`);
const serious = (counts.high ?? 0) + (counts.critical ?? 0);
if (serious > 0) {
  console.error(`${serious} high or critical advisories in production dependencies: run npm audit --omit=dev`);
  process.exit(1);
}
