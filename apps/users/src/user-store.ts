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

/** Raised by {@link UserStore.create} when the store holds its maximum of users. */
export class StoreFullError extends Error {
  override name = "StoreFullError";
}

/** Users a store holds at most unless told otherwise (the `MAX_USERS` setting). */
export const DEFAULT_MAX_USERS = 10_000;

export interface UserStoreOptions {
  /** The users the store starts with: {@link SEED_USERS} unless given. */
  readonly seed?: readonly { name: string; email: string; createdAt: string }[];
  /** The clock that stamps creation times. */
  readonly now?: () => Date;
  /** Most users held, seed included: {@link DEFAULT_MAX_USERS} unless given. */
  readonly maxUsers?: number;
}

/**
 * Users in memory, ids `u-1`, `u-2`, … in creation order. Emails are unique,
 * compared case-insensitively. At most `maxUsers` users, seed included: with
 * authentication off anyone can create users, and an unbounded store grows
 * until ListUsers no longer fits any caller's deadline. A real service would
 * put a database here; the handlers would not change.
 */
export class UserStore {
  private readonly byId = new Map<string, User>();
  private readonly emails = new Set<string>();
  private nextId = 1;
  private readonly now: () => Date;
  readonly maxUsers: number;

  constructor({ seed = SEED_USERS, now = () => new Date(), maxUsers = DEFAULT_MAX_USERS }: UserStoreOptions = {}) {
    this.now = now;
    this.maxUsers = maxUsers;
    for (const s of seed) this.insert(s.name, s.email, new Date(s.createdAt));
  }

  /** How many users the store holds. */
  get size(): number {
    return this.byId.size;
  }

  get(id: string): User | undefined {
    return this.byId.get(id);
  }

  /**
   * Adds a user; throws {@link EmailTakenError} when the email is taken, and
   * {@link StoreFullError} when the store already holds `maxUsers` users.
   */
  create(name: string, email: string): User {
    if (this.emails.has(email.toLowerCase())) throw new EmailTakenError("email is taken");
    if (this.byId.size >= this.maxUsers) throw new StoreFullError("the user store is full");
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
