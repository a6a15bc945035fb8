import { type Client, Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { GatewayService } from "@demo/proto/demo/gateway/v1/gateway_pb";
import type { ProfileService } from "@demo/proto/demo/profiles/v1/profiles_pb";
import { invalidArgument, relayUpstreamError } from "@demo/rpc-kit";
import { checkNewUser, checkUserId } from "./edge-validation.ts";

/** Codes of profiles' CreateProfile that reach the gateway's caller as they are. */
const RELAYED_CREATE_CODES: ReadonlySet<Code> = new Set([Code.InvalidArgument, Code.ResourceExhausted]);

export interface GatewayServiceDeps {
  readonly profiles: Client<typeof ProfileService>;
}

/** demo.gateway.v1.GatewayService: the public API, checked at the edge, served by profiles. */
export function createGatewayService({ profiles }: GatewayServiceDeps): ServiceImpl<typeof GatewayService> {
  return {
    async getProfile(req) {
      const violations = checkUserId(req.userId);
      if (violations.length > 0) throw invalidArgument(violations);
      const { profile } = await profiles.getProfile({ userId: req.userId });
      return { profile };
    },

    async createUser(req) {
      const violations = checkNewUser(req.name, req.email);
      if (violations.length > 0) throw invalidArgument(violations);
      try {
        const { profile } = await profiles.createProfile({ name: req.name, email: req.email });
        if (profile?.user === undefined) throw new ConnectError("profiles returned no user", Code.Internal);
        return { user: profile.user };
      } catch (err) {
        // Same fields, same names: the owner's field errors are the caller's. So is a full user store
        // (ResourceExhausted, which profiles relays): HTTP 429 for a Connect caller, not 503.
        if (err instanceof ConnectError && RELAYED_CREATE_CODES.has(err.code)) throw relayUpstreamError(err);
        throw err;
      }
    },

    async *listProfiles() {
      for await (const { profile } of profiles.listProfiles({})) {
        yield { profile };
      }
    },
  };
}
