/** The demo's seeded users and its profile rule, for the bare benchmark services. */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type User, UserSchema } from "@demo/proto/demo/users/v1/users_pb";

export { profileFields } from "./profile-rule.ts";

const SEED = [
  ["u-1", "Ada Lovelace", "ada@example.com"],
  ["u-2", "Grace Hopper", "grace@example.com"],
  ["u-3", "Alan Turing", "alan@example.com"],
] as const;

export const seededUsers: ReadonlyMap<string, User> = new Map(
  SEED.map(([id, name, email]) => [
    id,
    create(UserSchema, { id, name, email, createdAt: timestampFromDate(new Date(0)) }),
  ]),
);
