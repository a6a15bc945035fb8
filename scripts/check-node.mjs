// Stops `npm start` and `npm test` on a Node.js too old to run the project, in one line, before
// turbo and the apps fail on it with pages of errors (TypeScript is run by Node itself). The
// version needed is package.json's engines.node, which also makes .npmrc's engine-strict stop
// `npm install`. Plain old JavaScript: it must run on any Node.
import { readFileSync } from "node:fs";

var wanted = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")).engines.node;
var min = (/^>=\s*(\d+)\.(\d+)/.exec(wanted) || [0, 0, 0]).slice(1).map(Number);
var parts = process.versions.node.split(".").map(Number);
if (parts[0] < min[0] || (parts[0] === min[0] && parts[1] < min[1])) {
  process.stderr.write(
    "rpc-chain needs Node.js " +
      min.join(".") +
      " or later (24 LTS recommended) and this is " +
      process.version +
      ": run `nvm install` here (.nvmrc says 24) or get it from https://nodejs.org/\n",
  );
  process.exit(1);
}
