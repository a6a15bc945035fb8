import { type Client, Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { ProfileService } from "@demo/proto/demo/profiles/v1/profiles_pb";
import type { UserService } from "@demo/proto/demo/users/v1/users_pb";
import { invalidArgument, relayUpstreamError } from "@demo/rpc-kit";
import { profileOf } from "./profile.ts";

/** Codes of users' CreateUser that reach profiles' caller as they are. */
const RELAYED_CREATE_CODES: ReadonlySet<Code> = new Set([Code.InvalidArgument, Code.ResourceExhausted]);

export interface ProfileServiceDeps {
  readonly users: Client<typeof UserService>;
}

/**
 * demo.profiles.v1.ProfileService: reads users through demo.users.v1. The
 * users client's deadline and cancellation come from the inbound call
 * (the call's record, which rpc-kit keeps current); upstream errors follow rpc-kit's error policy.
 */
export function createProfileService({ users }: ProfileServiceDeps): ServiceImpl<typeof ProfileService> {
  return {
    async getProfile(req) {
      if (req.userId.length === 0) throw invalidArgument([{ field: "user_id", description: "must not be empty" }]);
      const { user } = await users.getUser({ id: req.userId });
      if (user === undefined) throw new ConnectError("users returned no user", Code.Internal);
      return { profile: profileOf(user) };
    },

    async createProfile(req) {
      try {
        const { user } = await users.createUser({ name: req.name, email: req.email });
        if (user === undefined) throw new ConnectError("users returned no user", Code.Internal);
        return { profile: profileOf(user) };
      } catch (err) {
        // The fields are the caller's, forwarded verbatim: the owner's verdict on them is the caller's to see.
        // So is a full store (ResourceExhausted): not an outage of users, which the kit's translation to
        // Unavailable would make it, but a refusal the caller must see as such.
        if (err instanceof ConnectError && RELAYED_CREATE_CODES.has(err.code)) throw relayUpstreamError(err);
        throw err;
      }
    },

    async *listProfiles() {
      for await (const { user } of users.listUsers({})) {
        if (user) yield { profile: profileOf(user) };
      }
    },
  };
}
