import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type User, UserSchema } from "@demo/proto/demo/users/v1/users_pb";

/** The users every fresh process starts with (the demo contract). */
export const SEED_USERS: readonly { name: string; email: string; createdAt: string }[] = [
  { name: "Ada Lovelace", email: "ada@example.com", createdAt: "2024-01-01T09:00:00Z" },
  { name: "Grace Hopper", email: "grace@example.com", createdAt: "2024-01-02T09:00:00Z" },
  { name: "Alan Turing", email: "alan@example.com", createdAt: "2024-01-03T09:00:00Z" },
];

/** Raised by {@link UserStore.create} when the email belongs to another user. */
export class EmailTakenError extends Error {
  override name = "EmailTakenError";
}

/**
 * Users in memory, ids `u-1`, `u-2`, … in creation order. Emails are unique,
 * compared case-insensitively. A real service would put a database here;
 * the handlers would not change.
 */
export class UserStore {
  private readonly byId = new Map<string, User>();
  private readonly emails = new Set<string>();
  private nextId = 1;
  private readonly now: () => Date;

  constructor(seed = SEED_USERS, now: () => Date = () => new Date()) {
    this.now = now;
    for (const s of seed) this.insert(s.name, s.email, new Date(s.createdAt));
  }

  get(id: string): User | undefined {
    return this.byId.get(id);
  }

  /** Adds a user; throws {@link EmailTakenError} when the email is taken. */
  create(name: string, email: string): User {
    if (this.emails.has(email.toLowerCase())) throw new EmailTakenError("email is taken");
    return this.insert(name, email, this.now());
  }

  /** Every user, ordered by id (creation order). */
  list(): User[] {
    return [...this.byId.values()];
  }

  private insert(name: string, email: string, createdAt: Date): User {
    const user = create(UserSchema, { id: `u-${this.nextId++}`, name, email, createdAt: timestampFromDate(createdAt) });
    this.byId.set(user.id, user);
    this.emails.add(email.toLowerCase());
    return user;
  }
}
