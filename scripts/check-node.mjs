// Stops `npm start` and `npm test` on a Node.js too old to run the project, in one line, before
// turbo and the apps fail on it with pages of errors (TypeScript is run by Node itself, which
// needs 22.18 or later). `npm install` is stopped by .npmrc's engine-strict. Plain old JavaScript:
// it must run on any Node.
var MIN = [22, 18];
var parts = process.versions.node.split(".").map(Number);
if (parts[0] < MIN[0] || (parts[0] === MIN[0] && parts[1] < MIN[1])) {
  process.stderr.write(
    "rpc-chain needs Node.js " +
      MIN.join(".") +
      " or later (24 LTS recommended) and this is " +
      process.version +
      ": run `nvm install` here (.nvmrc says 24) or get it from https://nodejs.org/\n",
  );
  process.exit(1);
}
