/**
 * A small UserService for rpc-kit's own tests (not exported, not built):
 * records what its handlers saw (deadlines, cancellations) so that tests can
 * assert on the far side of a hop. The kit's public testing entry
 * (`@demo/rpc-kit/testing`) knows nothing of the demo's protos.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { type User, UserSchema, UserService } from "@demo/proto/demo/users/v1/users_pb";
import { invalidArgument } from "../call/errors.ts";
import { UpstreamPool } from "../client/upstream-pool.ts";
import type { Logger } from "../observe/logger.ts";
import { type RunningServer, type ServerSettings, serve } from "../serve.ts";
import { service as registration } from "../server/service-registration.ts";
import { captureLogger, testServerSettings } from "../testing/index.ts";

export interface UserFixture {
  impl: ServiceImpl<typeof UserService>;
  /** Remaining ms each GetUser saw on arrival. */
  readonly timeouts: (number | undefined)[];
  /** GetUser calls received. */
  calls: number;
  /** Calls whose signal aborted before they finished, with the abort reason's code. */
  readonly cancelled: Code[];
  /** Streams whose generator was finalized, with the number of messages yielded. */
  readonly streamsEnded: number[];
}

export const ada: User = create(UserSchema, { id: "u-1", name: "Ada Lovelace", email: "ada@example.com" });

/**
 * GetUser ids: `u-1` → Ada; `slow-N` → waits N ms (or until cancelled);
 * `crash` → throws a plain Error; `bad` → InvalidArgument; else NotFound.
 * ListUsers streams 50 users, 10 ms apart.
 */
export function userFixture(): UserFixture {
  const fixture: UserFixture = {
    timeouts: [],
    calls: 0,
    cancelled: [],
    streamsEnded: [],
    impl: {
      async getUser(req, ctx) {
        fixture.calls++;
        fixture.timeouts.push(ctx.timeoutMs());
        if (req.id === "u-1") return { user: ada };
        if (req.id.startsWith("slow-")) {
          try {
            await sleep(Number(req.id.slice(5)), undefined, { signal: ctx.signal });
          } catch {
            fixture.cancelled.push(ConnectError.from(ctx.signal.reason).code);
            throw ctx.signal.reason;
          }
          return { user: ada };
        }
        if (req.id === "crash") throw new Error("db password=hunter2 exploded");
        if (req.id === "bad") throw invalidArgument([{ field: "id", description: "must not be bad" }]);
        throw new ConnectError(`user ${req.id} not found`, Code.NotFound);
      },
      createUser() {
        throw new ConnectError("read-only fixture", Code.FailedPrecondition);
      },
      async *listUsers(_req, ctx) {
        let n = 0;
        try {
          for (; n < 50; n++) {
            yield { user: { ...ada, id: `u-${n + 1}` } };
            await sleep(10, undefined, { signal: ctx.signal });
          }
        } finally {
          fixture.streamsEnded.push(n);
        }
      },
    },
  };
  return fixture;
}

/**
 * A UserService server on free ports for rpc-kit's own tests, owning no
 * process: the fixture's handlers (testing/fixtures.ts) unless `impl` is given.
 */
export function serveUsers(
  options: {
    readonly settings?: Partial<ServerSettings>;
    readonly engine?: "grpc" | "connect";
    readonly impl?: ServiceImpl<typeof UserService>;
    readonly logger?: Logger;
  } = {},
): Promise<RunningServer> {
  return serve({
    name: "users",
    ...(options.engine && { engine: options.engine }),
    settings: testServerSettings(options.settings),
    logger: options.logger ?? captureLogger("users").logger,
    services: [registration(UserService, options.impl ?? userFixture().impl)],
    ownsProcess: false,
    pool: new UpstreamPool(),
  });
}
