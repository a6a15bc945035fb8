#!/usr/bin/env node
// `npm start`: runs the services below (built by turbo), one process each, in
// dependency order (`npm run new-service` appends to the list), each started once the previous one is
// ready, with their log lines interleaved on this terminal. Ctrl-C (or
// SIGTERM) shuts them down gracefully; a second one, 0.5 s or more later,
// stops them at once.
import { spawn } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";

const services = [
  { name: "users", adminPort: "9051", env: { PORT: "50051", ADMIN_PORT: "9051" } },
  {
    name: "profiles",
    adminPort: "9052",
    env: { PORT: "50052", ADMIN_PORT: "9052", USERS_ADDR: "localhost:50051" },
  },
  {
    name: "gateway",
    adminPort: "9080",
    env: { PORT: "8080", ADMIN_PORT: "9080", PROFILES_ADDR: "localhost:50052" },
  },
];

const children = new Map();
let stopping = false;
let firstSignalAt = 0;

function say(line) {
  process.stderr.write(`start | ${line}\n`);
}

function stopAll(signal) {
  for (const child of children.values()) {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  }
}

async function waitReady(name, adminPort, child) {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${name} exited before it was ready`);
    try {
      const res = await fetch(`http://localhost:${adminPort}/readyz`);
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  throw new Error(`${name} was not ready after 30 s (http://localhost:${adminPort}/readyz)`);
}

function onSignal(signal) {
  const now = Date.now();
  if (stopping) {
    // npm and the terminal both deliver Ctrl-C; only a later one means "now".
    if (now - firstSignalAt >= 500) {
      say("stopping now");
      stopAll("SIGKILL");
    }
    return;
  }
  stopping = true;
  firstSignalAt = now;
  say(`${signal}: shutting down (again to stop at once)`);
  stopAll("SIGTERM");
}
process.on("SIGINT", onSignal);
process.on("SIGTERM", onSignal);

try {
  for (const s of services) {
    if (stopping) break;
    const child = spawn(process.execPath, [`apps/${s.name}/dist/main.js`], {
      // Own process group: a terminal's Ctrl-C reaches only this launcher, which passes it on once.
      detached: true,
      stdio: "inherit",
      env: { FAULT_INJECTION: "on", ...process.env, ...s.env },
    });
    children.set(s.name, child);
    child.on("exit", (code, signal) => {
      if (!stopping) {
        say(`${s.name} exited unexpectedly (${signal ?? `status ${code}`}); stopping the others`);
        stopping = true;
        process.exitCode = 1;
        stopAll("SIGTERM");
      }
    });
    await waitReady(s.name, s.adminPort, child);
  }
  if (!stopping) {
    say(`all ${services.length} services are ready; gateway on http://localhost:8080`);
    say(
      `try: curl -s localhost:8080/demo.gateway.v1.GatewayService/GetProfile -H 'content-type: application/json' -d '{"userId":"u-1"}'`,
    );
  }
} catch (err) {
  say(err.message);
  stopping = true;
  process.exitCode = 1;
  stopAll("SIGTERM");
}

await Promise.all(
  [...children.values()].map((c) =>
    c.exitCode !== null || c.signalCode !== null ? undefined : new Promise((r) => c.once("exit", r)),
  ),
);
