import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { UserService } from "@demo/proto/demo/users/v1/users_pb";
import { callerIdentity, invalidArgument, requestLogger } from "@demo/rpc-kit";
import { EmailTakenError, StoreFullError, type UserStore } from "./user-store.ts";
import { checkEmail, checkName, checkUserId } from "./validation.ts";

export { DEFAULT_MAX_USERS, UserStore, type UserStoreOptions } from "./user-store.ts";

/** demo.users.v1.UserService over a store. */
export function createUserService(store: UserStore): ServiceImpl<typeof UserService> {
  return {
    async getUser(req) {
      const violations = checkUserId(req.id);
      if (violations.length > 0) throw invalidArgument(violations);
      const user = await store.get(req.id);
      if (user === undefined) throw new ConnectError(`user ${req.id} not found`, Code.NotFound);
      return { user };
    },

    async createUser(req, ctx) {
      const violations = [...checkName(req.name), ...checkEmail(req.email)];
      if (violations.length > 0) throw invalidArgument(violations);
      try {
        const user = await store.create(req.name.trim(), req.email);
        // created_by: the verified subject of the caller's token, carried from the edge (none with auth off).
        requestLogger(ctx).info({ user_id: user.id, created_by: callerIdentity(ctx)?.subject }, "user created");
        return { user };
      } catch (err) {
        if (err instanceof EmailTakenError) {
          throw new ConnectError("a user with this email already exists", Code.AlreadyExists);
        }
        if (err instanceof StoreFullError) {
          throw new ConnectError("the user store is full", Code.ResourceExhausted);
        }
        throw err;
      }
    },

    async *listUsers(_req, ctx) {
      // Pages are read as the stream is written: a slow reader holds no connection, and a reader
      // that leaves (or the deadline) ends the next page's query.
      for await (const user of store.list()) {
        if (ctx.signal.aborted) return;
        yield { user };
      }
    },
  };
}
