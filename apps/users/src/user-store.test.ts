import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import type { Database } from "@demo/rpc-kit/postgres";
import { realServerSkipReason, type TestServer } from "@demo/rpc-kit/testing";
import { openTestUserStore, type TestUserStore } from "./testing.ts";
import { EmailTakenError, StoreFullError, UserStore } from "./user-store.ts";

/**
 * The store's behaviour, the same suite on the embedded PostgreSQL and on a
 * real server (TEST_DATABASE_URL; CI starts Debian's PostgreSQL and sets
 * REQUIRE_TEST_DATABASE=1 so that these cannot skip there).
 */
const SERVERS: readonly { server: TestServer; skip: string | undefined }[] = [
  { server: "embedded", skip: undefined },
  { server: "real", skip: realServerSkipReason() },
];

for (const { server, skip } of SERVERS) {
  describe(`UserStore on PostgreSQL (${server} server)`, { skip }, () => {
    const opened: TestUserStore[] = [];
    const open = async (options: { maxUsers?: number; pageSize?: number } = {}) => {
      const t = await openTestUserStore({ ...options, server });
      opened.push(t);
      return t.store;
    };
    after(() => Promise.all(opened.map((t) => t.close())));

    it("holds the seeded users u-1..u-3, with their names, emails and creation times", async () => {
      const store = await open();
      const ada = await store.get("u-1");
      assert.equal(ada?.name, "Ada Lovelace");
      assert.equal(ada?.email, "ada@example.com");
      assert.equal(ada?.createdAt?.seconds, BigInt(Date.parse("2024-01-01T09:00:00Z") / 1000));
      assert.equal((await store.get("u-3"))?.name, "Alan Turing");
    });

    it("misses ids it does not hold, and ids that are no id of its own, without a query error", async () => {
      const store = await open();
      for (const id of [
        "u-4",
        "u-999999999999",
        "u-0",
        "u-01",
        "nobody",
        "u-1; DROP TABLE users",
        "u-99999999999999999999",
      ]) {
        assert.equal(await store.get(id), undefined, id);
      }
    });

    it("creates users from u-4 on, stamped by the database", async () => {
      const store = await open();
      const before = Date.now() - 60_000;
      const barbara = await store.create("Barbara Liskov", "barbara@example.com");
      const edsger = await store.create("Edsger Dijkstra", "edsger@example.com");
      assert.deepEqual([barbara.id, edsger.id], ["u-4", "u-5"]);
      assert.ok(Number(barbara.createdAt?.seconds) * 1000 >= before);
      assert.equal((await store.get("u-5"))?.email, "edsger@example.com");
    });

    it("refuses an email that is taken in another case", async () => {
      const store = await open();
      await assert.rejects(store.create("Ada", "ADA@Example.COM"), EmailTakenError);
      await store.create("Barbara Liskov", "barbara@example.com");
      await assert.rejects(store.create("B", "Barbara@example.com"), EmailTakenError);
    });

    it("keeps values as data: names and emails with quotes and SQL stay what they are", async () => {
      const store = await open();
      const name = "Robert'); DROP TABLE users;--";
      const user = await store.create(name, "bobby@example.com");
      assert.equal((await store.get(user.id))?.name, name);
      assert.equal((await store.get("u-1"))?.name, "Ada Lovelace");
    });

    it("lists every user in id order, a page at a time, across page boundaries", async () => {
      const store = await open({ pageSize: 2 });
      for (let i = 0; i < 4; i++) await store.create(`User ${i}`, `user${i}@example.com`);
      const ids: string[] = [];
      for await (const user of store.list()) ids.push(user.id);
      assert.deepEqual(ids, ["u-1", "u-2", "u-3", "u-4", "u-5", "u-6", "u-7"]);
    });

    it("reads the next page only when the reader has taken the last one, and no more once it stops", async () => {
      const t = await openTestUserStore({ server, pageSize: 2 });
      opened.push(t);
      for (let i = 0; i < 4; i++) await t.store.create(`User ${i}`, `user${i}@example.com`);
      // The same database, its queries counted: 7 users are 4 pages of 2.
      let pages = 0;
      const counted = new UserStore(
        {
          query: (...args: Parameters<Database["query"]>) => {
            pages++;
            return t.db.query(...args);
          },
        } as unknown as Database,
        { pageSize: 2 },
      );
      const list = counted.list();
      assert.equal((await list.next()).value?.id, "u-1");
      assert.equal(pages, 1, "one page read for the first user");
      await list.next();
      assert.equal(pages, 1, "the second user came from the same page");
      await list.next();
      assert.equal(pages, 2, "the third user needed the next page");
      await list.return(undefined); // the reader stops (a cancelled stream)
      assert.equal(pages, 2, "no page read after the reader stopped");
    });

    it("stops at MAX_USERS, the seeded three included", async () => {
      const store = await open({ maxUsers: 4 });
      await store.create("Barbara Liskov", "barbara@example.com");
      await assert.rejects(store.create("Edsger Dijkstra", "edsger@example.com"), StoreFullError);
      await assert.rejects(store.create("Ada", "ada@example.com"), EmailTakenError, "a taken email is still taken");
    });
  });
}
