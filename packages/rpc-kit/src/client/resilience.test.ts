import assert from "node:assert/strict";
import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import { describe, it } from "node:test";
import { Code, ConnectError, createClient as createConnectClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { UserService } from "@demo/proto/demo/users/v1/users_pb";
import { NO_RETRY_PUSHBACK } from "../grpc/grpc-metadata.ts";
import { serveUsers, userFixture } from "../test-support/users.ts";
import { connectionLocalPorts, waitFor } from "../testing/index.ts";
import { createClient } from "./client.ts";
import { UpstreamPool } from "./upstream-pool.ts";

/** A users server whose GetUser answers with `answer` and counts the calls that reach it. */
async function usersAnswering(answer: () => void) {
  const counter = { reached: 0 };
  const server = await serveUsers({
    impl: {
      ...userFixture().impl,
      getUser(req) {
        counter.reached++;
        answer();
        return { user: { id: req.id, name: "Ada" } };
      },
    },
  });
  return Object.assign(counter, { server });
}

const isCode = (code: Code) => (e: unknown) => e instanceof ConnectError && e.code === code;

/** Local ports of this process's established TCP connections to `port`: one per connection. */
const localPortsTo = (port: number) => connectionLocalPorts(process.pid, port);

/** One client of the load; `ports`, when given, receives the local port of each connection it opens. */
interface LoadClient {
  readonly client: { getUser(req: { id: string }): Promise<unknown> };
  readonly ports?: Set<number>;
}

/** Dials `port` on 127.0.0.1 and records the connection's local port in `ports`: a client that reports its connections. */
function dialRecording(port: number, ports: Set<number>): net.Socket {
  const socket = net.connect(port, "127.0.0.1");
  socket.once("connect", () => {
    if (socket.localPort !== undefined) ports.add(socket.localPort);
  });
  return socket;
}

/**
 * Calls GetUser from each client, `perClient` calls at a time, until every
 * client has had `minCalls` calls answered and has seen `minConnections`
 * connections to `port`: a behavioural end, not a time. Bounded by
 * `timeoutMs` and by `maxCalls` attempts per client, so that a test whose
 * condition never holds fails with what it saw rather than hanging.
 *
 * Connections are sampled from /proc every 20 ms. A client given `ports`
 * records its own; the one client without (grpc-js, which gives no hook on
 * its sockets) owns the others seen. A port is attributed one sample after
 * it was first seen: /proc can show a connection established before its
 * 'connect' event has recorded it, never a sample later.
 */
async function loadUntilRotated(
  port: number,
  clients: readonly LoadClient[],
  { perClient = 4, minCalls = 20, minConnections = 3, timeoutMs = 30_000, maxCalls = 50_000 } = {},
): Promise<{ ok: number[]; failures: string[]; connections: number[]; ms: number }> {
  const seen = new Set<number>();
  const settled = new Set<number>();
  const settle = () => {
    for (const p of seen) settled.add(p);
  };
  const connectionsPerClient = () => {
    const recorded = new Set(clients.flatMap((c) => [...(c.ports ?? [])]));
    const others = [...settled].filter((p) => !recorded.has(p)).length;
    return clients.map((c) => c.ports?.size ?? others);
  };
  const ok = clients.map(() => 0);
  const attempts = clients.map(() => 0);
  const failures: string[] = [];
  const satisfied = () => connectionsPerClient().every((n) => n >= minConnections) && ok.every((n) => n >= minCalls);
  const started = Date.now();
  let stop = false;
  const sampler = setInterval(() => {
    settle();
    for (const p of localPortsTo(port)) seen.add(p);
    if (satisfied() || Date.now() - started > timeoutMs) stop = true;
  }, 20);
  try {
    await Promise.all(
      clients.flatMap(({ client }, i) =>
        Array.from({ length: perClient }, async () => {
          while (!stop && (attempts[i] ?? 0) < maxCalls) {
            attempts[i] = (attempts[i] ?? 0) + 1;
            try {
              await client.getUser({ id: "u-1" });
              ok[i] = (ok[i] ?? 0) + 1;
            } catch (err) {
              failures.push(`client ${i}: ${String(err)}`);
            }
          }
        }),
      ),
    );
  } finally {
    clearInterval(sampler);
  }
  const ms = Date.now() - started;
  await new Promise((r) => setTimeout(r, 20)); // the last 'connect' events
  settle();
  return { ok, failures, connections: connectionsPerClient(), ms };
}

describe("retries stay within the budget", () => {
  it("with users answering Unavailable to everything, calls reaching it ≤ (1 + 10%) × calls + the bucket's tokens", async () => {
    const overloaded = await usersAnswering(() => {
      throw new ConnectError("overloaded", Code.Unavailable);
    });
    const users = overloaded.server;
    const pool = new UpstreamPool();
    try {
      const client = createClient(UserService, `localhost:${users.port}`, { pool, timeoutMs: 1_000 });
      const calls = 500;
      for (let i = 0; i < calls; i++) {
        const started = Date.now();
        await assert.rejects(client.getUser({ id: "u-1" }), isCode(Code.Unavailable));
        assert.ok(Date.now() - started < 1_000, "answered within its deadline");
      }
      const { reached } = overloaded;
      assert.ok(reached >= calls, `${reached} reached users`);
      const [snapshot] = pool.snapshot();
      const initialTokens = snapshot?.retryBudget.maxTokens ?? 0;
      assert.ok(reached <= 1.1 * calls + initialTokens, `${reached} calls reached users for ${calls} sent`);
      assert.ok(reached > calls + initialTokens / 2, `${reached}: retries were made while the budget lasted`);
      assert.ok((snapshot?.retryBudget.tokens ?? 99) < 1, "the budget is spent");
    } finally {
      pool.close();
      await users.shutdown();
    }
  });
});

describe("a call that may have been processed", () => {
  it("is never sent twice when it is not idempotent, and retried when it is", async () => {
    const seen = new Map<string, number>();
    // Accepts each call, then drops the connection before answering.
    const server = http2.createServer();
    server.on("stream", (stream, headers) => {
      const path = String(headers[":path"]);
      seen.set(path, (seen.get(path) ?? 0) + 1);
      stream.on("data", () => undefined);
      stream.on("end", () => stream.session?.destroy());
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as net.AddressInfo).port;
    const pool = new UpstreamPool();
    try {
      const client = createClient(UserService, `static:///127.0.0.1:${port}`, { pool, timeoutMs: 3_000 });
      await assert.rejects(client.createUser({ name: "A", email: "a@example.com" }), isCode(Code.Unavailable));
      assert.equal(seen.get("/demo.users.v1.UserService/CreateUser"), 1);
      await assert.rejects(client.getUser({ id: "u-1" }), isCode(Code.Unavailable));
      assert.equal(seen.get("/demo.users.v1.UserService/GetUser"), 3, "GetUser is idempotent: three attempts");
    } finally {
      pool.close();
      server.close();
    }
  });
});

describe("an address that never answers", () => {
  it("costs a call at most the connect timeout, retries included, then Unavailable", async () => {
    const accepted = new Set<net.Socket>();
    const blackHole = net.createServer((socket) => accepted.add(socket));
    await new Promise<void>((r) => blackHole.listen(0, "127.0.0.1", r));
    const port = (blackHole.address() as net.AddressInfo).port;
    const pool = new UpstreamPool();
    try {
      const client = createClient(UserService, `static:///127.0.0.1:${port}`, {
        pool,
        connectTimeoutMs: 300,
        timeoutMs: 5_000,
      });
      const started = Date.now();
      await assert.rejects(client.getUser({ id: "u-1" }), isCode(Code.Unavailable));
      const took = Date.now() - started;
      assert.ok(took >= 250 && took < 600, `took ${took} ms`);
    } finally {
      pool.close();
      for (const socket of accepted) socket.destroy();
      blackHole.close();
    }
  });
});

describe("a server with a short max connection age", () => {
  it("rotates connections under steady load without failing a call", async (t) => {
    const users = await serveUsers({ settings: { maxConnectionAgeMs: 300 } });
    const pool = new UpstreamPool();
    try {
      // A generous connect timeout: on a starved machine a reconnect can take longer than the default
      // second, which would fail a call for want of CPU, not because of the rotation under test.
      const client = createClient(UserService, `localhost:${users.port}`, { pool, connectTimeoutMs: 10_000 });
      const { ok, failures, connections, ms } = await loadUntilRotated(users.port, [{ client }], { perClient: 8 });
      t.diagnostic(`${ok} calls, ${connections} connections in ${ms} ms`);
      assert.deepEqual(failures, []);
      assert.ok((ok[0] ?? 0) >= 20, `${ok} calls answered: the client made progress`);
      assert.ok((connections[0] ?? 0) >= 3, `${connections} connections seen in ${ms} ms with a 300 ms max age`);
    } finally {
      pool.close();
      await users.shutdown();
    }
  });
});

describe("outlier ejection", () => {
  it("takes an endpoint that keeps answering Unavailable out of rotation, probes it back, and doubles the next ejection", async () => {
    const bad = await usersAnswering(() => {
      throw new ConnectError("overloaded", Code.Unavailable);
    });
    const good = await usersAnswering(() => undefined);
    const pool = new UpstreamPool();
    try {
      // Timed against the clock, not with fixed sleeps: on a busy machine calls and timers run late. Each
      // ejection is bracketed by the clock before and after the calls that caused it; what is asserted
      // holds whatever the delays.
      const baseMs = 1_500;
      const client = createClient(UserService, `static:///127.0.0.1:${bad.server.port},127.0.0.1:${good.server.port}`, {
        pool,
        connectTimeoutMs: 10_000,
        ejection: { consecutiveFailures: 3, baseMs, maxMs: 10_000 },
      });
      const snapshot = () => pool.snapshot()[0]?.endpoints.find((e) => e.address.endsWith(`:${bad.server.port}`));
      /** Polls until the bad endpoint is back in rotation (within `ms`); returns the last time it was seen ejected. */
      const lastSeenEjected = async (ms: number) => {
        const deadline = Date.now() + ms;
        let last = 0;
        for (;;) {
          const now = Date.now(); // the snapshot's clock reads no earlier: ejected then, ejected now
          if (snapshot()?.ejected !== true) return last;
          last = now;
          assert.ok(now < deadline, `back in rotation within ${ms} ms`);
          await new Promise((r) => setTimeout(r, 10));
        }
      };
      await waitFor(() => pool.snapshot()[0]?.endpoints.every((e) => e.state === "READY") === true, 10_000);
      // Every call succeeds: a failed attempt on the bad endpoint is retried on the good one.
      const firstFrom = Date.now(); // the first ejection begins no earlier
      for (let i = 0; i < 8; i++) await client.getUser({ id: "u-1" });
      assert.equal(bad.reached, 3, "ejected after 3 Unavailable in a row");
      assert.deepEqual([snapshot()?.ejected, snapshot()?.ejections], [true, 1]);
      // Calls started within half the ejection's time of its earliest start: it surely lasts through them.
      let during = 0;
      while (during < 20 && Date.now() - firstFrom < baseMs / 2) {
        await client.getUser({ id: "u-1" });
        during++;
      }
      assert.ok(during > 0, "calls were made while the endpoint was ejected");
      assert.equal(bad.reached, 3, `no call reaches an ejected endpoint (${during} calls)`);
      await lastSeenEjected(4 * baseMs);
      for (let i = 0; i < 8; i++) await client.getUser({ id: "u-1" });
      const secondBy = Date.now(); // the second ejection began no later
      assert.equal(bad.reached, 6, "back in rotation: probed by real calls, and ejected again");
      assert.equal(snapshot()?.ejections, 2);
      const lasted = (await lastSeenEjected(8 * baseMs)) - secondBy;
      assert.ok(lasted > baseMs, `the second ejection lasts twice as long: seen ejected ${lasted} ms on, > ${baseMs}`);
    } finally {
      pool.close();
      await bad.server.shutdown();
      await good.server.shutdown();
    }
  });
});

describe("one retry layer", () => {
  it("does not retry, nor eject, an endpoint that passes on its upstream's Unavailable", async () => {
    const relaying = await usersAnswering(() => {
      throw new ConnectError("a dependency is unavailable", Code.Unavailable, NO_RETRY_PUSHBACK);
    });
    const pool = new UpstreamPool();
    try {
      const client = createClient(UserService, `static:///127.0.0.1:${relaying.server.port}`, {
        pool,
        ejection: { consecutiveFailures: 3 },
      });
      for (let i = 0; i < 10; i++) {
        await assert.rejects(client.getUser({ id: "u-1" }), isCode(Code.Unavailable));
      }
      assert.equal(relaying.reached, 10, "one attempt per call");
      assert.equal(pool.snapshot()[0]?.endpoints[0]?.ejections, 0);
    } finally {
      pool.close();
      await relaying.server.shutdown();
    }
  });
});

describe("the edge server with a short max connection age", () => {
  it("rotates gRPC, Connect and HTTP/1.1 connections under steady load; only connect-node's h2 client sees refused streams", async (t) => {
    const edge = await serveUsers({ engine: "connect", settings: { maxConnectionAgeMs: 300 } });
    const pool = new UpstreamPool();
    const h2Ports = new Set<number>();
    const h1Ports = new Set<number>();
    const h1Agent = new http.Agent({ keepAlive: true });
    h1Agent.createConnection = () => dialRecording(edge.port, h1Ports);
    try {
      const baseUrl = `http://127.0.0.1:${edge.port}`;
      const { ok, failures, connections, ms } = await loadUntilRotated(edge.port, [
        // A generous connect timeout, as above.
        { client: createClient(UserService, `127.0.0.1:${edge.port}`, { pool, connectTimeoutMs: 10_000 }) },
        {
          client: createConnectClient(
            UserService,
            createConnectTransport({
              baseUrl,
              httpVersion: "2",
              nodeOptions: { createConnection: () => dialRecording(edge.port, h2Ports) },
            }),
          ),
          ports: h2Ports,
        },
        {
          client: createConnectClient(
            UserService,
            createConnectTransport({ baseUrl, httpVersion: "1.1", nodeOptions: { agent: h1Agent } }),
          ),
          ports: h1Ports,
        },
      ]);
      t.diagnostic(`calls per client ${ok}, connections per client ${connections}, in ${ms} ms`);
      // gRPC (grpc-js retries refused streams) and HTTP/1.1 (connection: close) lose nothing; connect-node's
      // h2 client may see a stream refused in the GOAWAY race (never processed), and nothing else.
      assert.deepEqual(
        failures.filter((f) => !f.startsWith("client 1: ") || !f.includes("REFUSED_STREAM")),
        [],
      );
      assert.ok(
        ok.every((n) => n >= 20),
        `calls answered per client ${ok}: every client made progress`,
      );
      assert.ok(
        connections.every((n) => n >= 3),
        `connections per client (gRPC, Connect h2, Connect HTTP/1.1) ${connections} in ${ms} ms with a 300 ms max age`,
      );
    } finally {
      h1Agent.destroy();
      pool.close();
      await edge.shutdown();
    }
  });
});

describe("an upstream with no endpoint to take a call", () => {
  it("reaches the caller as Unavailable, marked not to be retried, naming no internal address", async () => {
    const closed = await new Promise<number>((resolve) => {
      const probe = net.createServer().listen(0, "127.0.0.1", () => {
        const { port } = probe.address() as net.AddressInfo;
        probe.close(() => resolve(port));
      });
    });
    const pool = new UpstreamPool();
    const users = createClient(UserService, `static:///127.0.0.1:${closed}`, { pool });
    // A front service whose GetUser calls the dead upstream, as profiles calls users.
    const front = await serveUsers({ impl: { ...userFixture().impl, getUser: (req) => users.getUser(req) } });
    const callerPool = new UpstreamPool();
    try {
      const caller = createClient(UserService, `127.0.0.1:${front.port}`, { pool: callerPool });
      let trailer: Headers | undefined;
      await assert.rejects(caller.getUser({ id: "u-1" }), (e) => {
        const err = ConnectError.from(e);
        trailer = err.metadata;
        return err.code === Code.Unavailable && err.rawMessage === "a dependency is unavailable";
      });
      assert.equal(trailer?.get("grpc-retry-pushback-ms"), "-1");
      assert.doesNotMatch(JSON.stringify([...(trailer ?? new Headers())]), /127\.0\.0\.1/);
    } finally {
      callerPool.close();
      pool.close();
      await front.shutdown();
    }
  });
});
