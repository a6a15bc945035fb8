/**
 * The bare @grpc/grpc-js chain, written only for the benchmark: the same
 * three services and the same work as the demo (users looks up a user,
 * profiles composes a profile from it, gateway passes it on), with nothing
 * else: no deadlines, no logs, no metrics, no tracing.
 *
 *   ROLE=users|profiles|gateway PORT=… [UPSTREAM=host:port] node grpc-js-chain.ts
 *   PER_REQUEST_CLIENT=1: the anti-pattern, a new client (and connection) per call.
 *   DATABASE_URL=postgres://… (users): users reads PostgreSQL through a plain pg.Pool
 *     (users-db.ts: migrations at start, one query per GetUser) instead of memory.
 */

import type { DescMessage } from "@bufbuild/protobuf";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  GetProfileRequestSchema as GatewayRequest,
  GetProfileResponseSchema as GatewayResponse,
} from "@demo/proto/demo/gateway/v1/gateway_pb";
import {
  GetProfileRequestSchema,
  GetProfileResponseSchema,
  ProfileSchema,
} from "@demo/proto/demo/profiles/v1/profiles_pb";
import { GetUserRequestSchema, GetUserResponseSchema, UserSchema } from "@demo/proto/demo/users/v1/users_pb";
import * as grpc from "@grpc/grpc-js";
import { profileFields, seededUsers } from "./seed.ts";

const role = process.env.ROLE ?? "users";
const port = Number(process.env.PORT ?? 0);
const upstream = process.env.UPSTREAM ?? "";
const perRequestClient = process.env.PER_REQUEST_CLIENT === "1";
const databaseUrl = process.env.DATABASE_URL;

/** users' lookup in PostgreSQL when given a database (pg loaded only then); the seeded map otherwise. */
const fromDatabase = await (async () => {
  if (role !== "users" || !databaseUrl) return undefined;
  const db = await import("./users-db.ts");
  const pool = await db.openUsersDatabase(databaseUrl);
  return async (id: string) => {
    const row = await db.findUser(pool, id);
    return (
      row &&
      create(UserSchema, {
        id: `u-${row.id}`,
        name: row.name,
        email: row.email,
        createdAt: timestampFromDate(row.created_at),
      })
    );
  };
})();

const ser = (desc: DescMessage) => (m: unknown) => Buffer.from(toBinary(desc, m as never));
const de = (desc: DescMessage) => (b: Buffer) => fromBinary(desc, b);

let shared: grpc.Client | undefined;
function client(): grpc.Client {
  if (perRequestClient)
    return new grpc.Client(upstream, grpc.credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 });
  shared ??= new grpc.Client(upstream, grpc.credentials.createInsecure());
  return shared;
}

function callUpstream<Req, Res>(path: string, reqDesc: DescMessage, resDesc: DescMessage, request: Req): Promise<Res> {
  return new Promise((resolve, reject) => {
    client().makeUnaryRequest(path, ser(reqDesc), de(resDesc), request, (err, value) =>
      err ? reject(err) : resolve(value as Res),
    );
  });
}

const server = new grpc.Server();
const method = (
  path: string,
  reqDesc: DescMessage,
  resDesc: DescMessage,
  handler: (req: never) => Promise<unknown>,
) => ({
  definition: {
    path,
    requestStream: false,
    responseStream: false,
    requestSerialize: ser(reqDesc),
    requestDeserialize: de(reqDesc),
    responseSerialize: ser(resDesc),
    responseDeserialize: de(resDesc),
  },
  handler: (call: grpc.ServerUnaryCall<never, unknown>, callback: grpc.sendUnaryData<unknown>) => {
    handler(call.request).then(
      (res) => callback(null, res),
      (err: grpc.ServiceError) =>
        callback({ code: err.code ?? grpc.status.INTERNAL, details: err.details ?? String(err) }),
    );
  },
});

const m =
  role === "users"
    ? method(
        "/demo.users.v1.UserService/GetUser",
        GetUserRequestSchema,
        GetUserResponseSchema,
        async (req: { id: string }) => {
          const user = fromDatabase ? await fromDatabase(req.id) : seededUsers.get(req.id);
          if (!user) throw { code: grpc.status.NOT_FOUND, details: `user ${req.id} not found` };
          return create(GetUserResponseSchema, { user });
        },
      )
    : role === "profiles"
      ? method(
          "/demo.profiles.v1.ProfileService/GetProfile",
          GetProfileRequestSchema,
          GetProfileResponseSchema,
          async (req: { userId: string }) => {
            const { user } = await callUpstream<unknown, { user: { name: string } }>(
              "/demo.users.v1.UserService/GetUser",
              GetUserRequestSchema,
              GetUserResponseSchema,
              create(GetUserRequestSchema, { id: req.userId }),
            );
            return create(GetProfileResponseSchema, {
              profile: create(ProfileSchema, { user: user as never, ...profileFields(user.name) }),
            });
          },
        )
      : method(
          "/demo.gateway.v1.GatewayService/GetProfile",
          GatewayRequest,
          GatewayResponse,
          async (req: { userId: string }) => {
            const { profile } = await callUpstream<unknown, { profile: unknown }>(
              "/demo.profiles.v1.ProfileService/GetProfile",
              GetProfileRequestSchema,
              GetProfileResponseSchema,
              create(GetProfileRequestSchema, { userId: req.userId }),
            );
            return create(GatewayResponse, { profile: profile as never });
          },
        );

server.addService({ GetX: m.definition } as never, { GetX: m.handler } as never);
server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, bound) => {
  if (err) throw err;
  process.stdout.write(`${JSON.stringify({ msg: `${role} listening`, port: bound })}\n`);
});
process.on("SIGTERM", () => server.tryShutdown(() => process.exit(0)));
