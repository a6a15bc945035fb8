import { create } from "@bufbuild/protobuf";
import { type Profile, ProfileSchema } from "@demo/proto/demo/profiles/v1/profiles_pb";
import type { User } from "@demo/proto/demo/users/v1/users_pb";

/** A user's public profile: "Ada Lovelace" shows as "Ada L.", initials "AL". */
export function profileOf(user: User): Profile {
  const words = user.name
    .trim()
    .split(/\s+/)
    .filter((w) => w.length > 0);
  const first = words[0] ?? "";
  const last = words.length > 1 ? words[words.length - 1] : undefined;
  return create(ProfileSchema, {
    user,
    displayName: last ? `${first} ${last.charAt(0).toUpperCase()}.` : first,
    initials: words
      .slice(0, 1)
      .concat(last ? [last] : [])
      .map((w) => w.charAt(0).toUpperCase())
      .join(""),
  });
}
