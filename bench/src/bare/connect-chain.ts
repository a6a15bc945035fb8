/**
 * The bare @connectrpc/connect-node chain, written only for the benchmark:
 * the same three services and work as the demo, each an h2c server with
 * connectNodeAdapter, each hop a connect-node transport, nothing else.
 *
 *   ROLE=users|profiles|gateway PORT=… [UPSTREAM=http://127.0.0.1:port]
 *   PROTOCOL=grpc (default) | connect     the protocol between hops
 *   PER_REQUEST_CLIENT=1                  the anti-pattern: a new transport (connection) per call
 */
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { connectNodeAdapter, createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { GatewayService } from "@demo/proto/demo/gateway/v1/gateway_pb";
import { ProfileService } from "@demo/proto/demo/profiles/v1/profiles_pb";
import { UserService } from "@demo/proto/demo/users/v1/users_pb";
import { profileFields, seededUsers } from "./seed.ts";

const role = process.env.ROLE ?? "users";
const port = Number(process.env.PORT ?? 0);
const upstream = process.env.UPSTREAM ?? "";
const protocol = process.env.PROTOCOL === "connect" ? "connect" : "grpc";
const perRequestClient = process.env.PER_REQUEST_CLIENT === "1";

function transport(): Transport {
  return protocol === "connect"
    ? createConnectTransport({ baseUrl: upstream, httpVersion: "2", useBinaryFormat: true })
    : createGrpcTransport({ baseUrl: upstream });
}
let shared: Transport | undefined;
function upstreamTransport(): Transport {
  if (perRequestClient) return transport();
  shared ??= transport();
  return shared;
}

const handler = connectNodeAdapter({
  routes(router) {
    if (role === "users") {
      router.service(UserService, {
        getUser(req) {
          const user = seededUsers.get(req.id);
          if (!user) throw new ConnectError(`user ${req.id} not found`, Code.NotFound);
          return { user };
        },
      });
    } else if (role === "profiles") {
      router.service(ProfileService, {
        async getProfile(req) {
          const { user } = await createClient(UserService, upstreamTransport()).getUser({ id: req.userId });
          return { profile: { ...(user && { user }), ...profileFields(user?.name ?? "") } };
        },
      });
    } else {
      router.service(GatewayService, {
        async getProfile(req) {
          const { profile } = await createClient(ProfileService, upstreamTransport()).getProfile({
            userId: req.userId,
          });
          return profile ? { profile } : {};
        },
      });
    }
  },
});

const server = http2.createServer(handler);
server.listen(port, "127.0.0.1", () => {
  process.stdout.write(
    `${JSON.stringify({ msg: `${role} listening`, port: (server.address() as AddressInfo).port })}\n`,
  );
});
process.on("SIGTERM", () => {
  server.close();
  process.exit(0);
});
