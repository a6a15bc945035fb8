/**
 * node bench/src/pitfalls/refused-streams.ts [--age-ms 300] [--calls 3000]
 *
 * How many calls a server that rotates its connections (MAX_CONNECTION_AGE_MS)
 * costs each kind of client: the rpc-kit edge (connect engine) with a short
 * age, 8 calls in flight, from connect-node's gRPC transport and from a stock
 * grpc-js client. A stream sent before the client read the GOAWAY is refused
 * (REFUSED_STREAM, never processed); grpc-js retries it by itself,
 * connect-node's client does not. Bounded by --calls (at most 100,000).
 */
import { parseArgs } from "node:util";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { GetUserRequestSchema, GetUserResponseSchema, UserService } from "@demo/proto/demo/users/v1/users_pb";
import { createLogger, serve, service } from "@demo/rpc-kit";
import { testServerSettings } from "@demo/rpc-kit/testing";
import * as grpc from "@grpc/grpc-js";

const { values } = parseArgs({ options: { "age-ms": { type: "string" }, calls: { type: "string" } } });
const ageMs = Number(values["age-ms"] ?? 300);
const calls = Math.min(Number(values.calls ?? 3000), 100_000);
const IN_FLIGHT = 8;

const server = await serve({
  name: "users",
  engine: "connect",
  settings: testServerSettings({ maxConnectionAgeMs: ageMs, logLevel: "error" }),
  logger: createLogger({ service: "users", level: "error", format: "json" }),
  services: [
    service(UserService, {
      getUser: (req) => ({ user: { id: req.id, name: "Ada", email: "ada@example.com" } }),
      createUser() {
        throw new ConnectError("read-only", Code.FailedPrecondition);
      },
      async *listUsers() {},
    }),
  ],
  ownsProcess: false,
});
const address = `127.0.0.1:${server.port}`;

async function drive(call: () => Promise<void>): Promise<Map<string, number>> {
  const outcomes = new Map<string, number>();
  let sent = 0;
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (sent < calls) {
        sent++;
        let outcome = "ok";
        try {
          await call();
        } catch (err) {
          outcome = `${Code[ConnectError.from(err).code]}: ${ConnectError.from(err).rawMessage.slice(0, 60)}`;
        }
        outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
      }
    }),
  );
  return outcomes;
}

const connectClient = createClient(
  UserService,
  createGrpcTransport({ baseUrl: `http://${address}`, httpVersion: "2" } as Parameters<typeof createGrpcTransport>[0]),
);
const connectNode = await drive(async () => {
  await connectClient.getUser({ id: "u-1" }, { timeoutMs: 5_000 });
});

const stock = new grpc.Client(address, grpc.credentials.createInsecure());
const grpcJs = await drive(
  () =>
    new Promise<void>((resolve, reject) =>
      stock.makeUnaryRequest(
        "/demo.users.v1.UserService/GetUser",
        (m: object) => Buffer.from(toBinary(GetUserRequestSchema, create(GetUserRequestSchema, m))),
        (b: Buffer) => fromBinary(GetUserResponseSchema, b),
        { id: "u-1" },
        { deadline: Date.now() + 5_000 },
        (err) => (err ? reject(new ConnectError(err.details, err.code as number as Code)) : resolve()),
      ),
    ),
);
stock.close();
await server.shutdown();

const report = (name: string, outcomes: Map<string, number>) => {
  const failed = calls - (outcomes.get("ok") ?? 0);
  say(`${name}: ${failed} of ${calls} calls failed (${((100 * failed) / calls).toFixed(2)}%)`);
  for (const [outcome, n] of outcomes) if (outcome !== "ok") say(`  ${n} × ${outcome}`);
};
say(`server connection age ${ageMs} ms, ${IN_FLIGHT} calls in flight`);
report("connect-node gRPC client", connectNode);
report("grpc-js client", grpcJs);
function say(line: string): void {
  process.stdout.write(`${line}\n`);
}
