import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type User, UserSchema } from "@demo/proto/demo/users/v1/users_pb";
import { type Database, type Statement, UniqueViolation } from "@demo/rpc-kit/postgres";

/** Raised by {@link UserStore.create} when the email belongs to another user. */
export class EmailTakenError extends Error {
  override name = "EmailTakenError";
}

/** Raised by {@link UserStore.create} when the store holds its maximum of users. */
export class StoreFullError extends Error {
  override name = "StoreFullError";
}

/** Users the store holds at most unless told otherwise (the `MAX_USERS` setting). */
export const DEFAULT_MAX_USERS = 10_000;

/** Users per query while listing: a page, never the whole table. */
export const PAGE_SIZE = 100;

export interface UserStoreOptions {
  /** Most users held, the seeded three included: {@link DEFAULT_MAX_USERS} unless given. */
  readonly maxUsers?: number;
  /** Users per page of {@link UserStore.list}. */
  readonly pageSize?: number;
}

interface UserRow {
  readonly id: string;
  readonly name: string;
  readonly email: string;
  readonly created_at: Date;
}

const COLUMNS = "id, name, email, created_at";

const GET_USER: Statement = {
  key: "users.get",
  operation: "SELECT",
  collection: "users",
  text: `SELECT ${COLUMNS} FROM users WHERE id = $1`,
};

/**
 * Inserts unless the table holds `$3` users already (no row comes back then).
 * Concurrent inserts on several replicas can pass the count together: the
 * bound is approximate by a few rows, which is what it is for (a store that
 * anyone may write to cannot grow without end).
 */
const CREATE_USER: Statement = {
  key: "users.create",
  operation: "INSERT",
  collection: "users",
  text: `INSERT INTO users (name, email) SELECT $1, $2 WHERE (SELECT count(*) FROM users) < $3 RETURNING ${COLUMNS}`,
};

const EMAIL_TAKEN: Statement = {
  key: "users.email-taken",
  operation: "SELECT",
  collection: "users",
  text: "SELECT 1 FROM users WHERE lower(email) = lower($1)",
};

/** Keyset pages in id order: each page an index range scan, however far the list has got. */
const PAGE_OF_USERS: Statement = {
  key: "users.page",
  operation: "SELECT",
  collection: "users",
  text: `SELECT ${COLUMNS} FROM users WHERE id > $1 ORDER BY id LIMIT $2`,
};

/** `u-42` → 42n; anything else is no id of ours. */
function idNumber(id: string): bigint | undefined {
  const m = /^u-([1-9]\d{0,17})$/.exec(id);
  return m ? BigInt(m[1] as string) : undefined;
}

function toUser(row: UserRow): User {
  return create(UserSchema, {
    id: `u-${row.id}`,
    name: row.name,
    email: row.email,
    createdAt: timestampFromDate(row.created_at),
  });
}

/**
 * Users in PostgreSQL (migrations/): ids `u-<n>` from the table's identity
 * sequence, so unique across every replica; emails unique whatever their
 * case (a unique index on lower(email)); at most `maxUsers` rows. Every
 * query runs within the deadline and cancellation of the call it serves
 * (@demo/rpc-kit/postgres).
 */
export class UserStore {
  readonly #db: Database;
  readonly maxUsers: number;
  readonly #pageSize: number;

  constructor(db: Database, { maxUsers = DEFAULT_MAX_USERS, pageSize = PAGE_SIZE }: UserStoreOptions = {}) {
    this.#db = db;
    this.maxUsers = maxUsers;
    this.#pageSize = pageSize;
  }

  async get(id: string): Promise<User | undefined> {
    const n = idNumber(id);
    if (n === undefined) return undefined;
    const [row] = await this.#db.query<UserRow>(GET_USER, [n.toString()]);
    return row && toUser(row);
  }

  /**
   * Adds a user; throws {@link EmailTakenError} when the email is taken, and
   * {@link StoreFullError} when the store already holds `maxUsers` users.
   */
  async create(name: string, email: string): Promise<User> {
    let rows: UserRow[];
    try {
      rows = await this.#db.query<UserRow>(CREATE_USER, [name, email, this.maxUsers]);
    } catch (err) {
      if (err instanceof UniqueViolation) throw new EmailTakenError("email is taken");
      throw err;
    }
    const [row] = rows;
    if (row !== undefined) return toUser(row);
    // Nothing inserted: the store is full, but a taken email is still the answer for a taken email.
    if ((await this.#db.query(EMAIL_TAKEN, [email])).length > 0) throw new EmailTakenError("email is taken");
    throw new StoreFullError("the user store is full");
  }

  /** Every user in id (creation) order, a page at a time, as the reader asks for them. */
  async *list(): AsyncGenerator<User> {
    let after = "0";
    for (;;) {
      const rows = await this.#db.query<UserRow>(PAGE_OF_USERS, [after, this.#pageSize]);
      for (const row of rows) yield toUser(row);
      if (rows.length < this.#pageSize) return;
      after = (rows.at(-1) as UserRow).id;
    }
  }
}
