// Bootstrap plus a push/pull round trip with inserts, updates and deletes,
// and pull()'s return value (true when something changed, false when not).
import assert from "node:assert/strict";
import { open, all, run, scenario, requestCount } from "./lib.mjs";

const rows = (db) => all(db, "SELECT id, name, qty FROM items ORDER BY id");

await scenario("roundtrip", async () => {
  const a = await open("a");
  assert.equal(await a.pull(), false, "pull on a freshly bootstrapped client of an empty database");

  await a.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty INTEGER)");
  for (let i = 1; i <= 5; i++) await run(a, "INSERT INTO items VALUES (?, ?, ?)", i, `item-${i}`, i * 10);
  const pipelineBefore = await requestCount("pipeline");
  await a.push();
  assert.equal(await requestCount("pipeline") - pipelineBefore, 2, "one push = two /v2/pipeline calls, both 200");
  const revA1 = (await a.stats()).revision;

  // B bootstraps from the server and sees A's rows.
  const b = await open("b");
  const revB = (await b.stats()).revision;
  assert.equal(typeof revB, "string");
  assert.ok(revB.length > 0);
  assert.deepEqual(await rows(b), [1, 2, 3, 4, 5].map((i) => ({ id: i, name: `item-${i}`, qty: i * 10 })));
  assert.equal(await b.pull(), false, "B is up to date right after bootstrap");

  // A's own push comes back once as pages (its own rows and its
  // turso_sync_last_change_id row), then A is up to date; its data is intact.
  assert.equal(await a.pull(), true, "A pulls the revision its own push created");
  assert.equal(await a.pull(), false, "second pull of A is empty");
  assert.notEqual((await a.stats()).revision, revA1, "A's revision moved after pulling");
  assert.equal((await a.stats()).revision, revB, "A and B are at the same server revision");
  assert.equal((await rows(a)).length, 5);

  // Deletes and updates.
  await run(a, "DELETE FROM items WHERE id IN (2, 4)");
  await run(a, "UPDATE items SET name = 'renamed', qty = NULL WHERE id = 3");
  await run(a, "INSERT INTO items VALUES (6, 'item-6', 60)");
  await a.push();

  assert.equal(await b.pull(), true, "B's pull after A's second push");
  const want = [
    { id: 1, name: "item-1", qty: 10 },
    { id: 3, name: "renamed", qty: null },
    { id: 5, name: "item-5", qty: 50 },
    { id: 6, name: "item-6", qty: 60 },
  ];
  assert.deepEqual(await rows(b), want);
  assert.equal(await b.pull(), false, "nothing new after that");
  assert.notEqual((await b.stats()).revision, revB);

  assert.equal(await a.pull(), true);
  assert.deepEqual(await rows(a), want);
  assert.equal((await a.stats()).revision, (await b.stats()).revision);

  // Databases are isolated: another database on the same server is empty.
  const other = await open("other", { db: "other" });
  assert.deepEqual(await all(other, "SELECT name FROM sqlite_schema WHERE name = 'items'"), []);

  // Every /pull-updates and /v2/pipeline call succeeded.
  assert.equal(await requestCount("pull", 500), 0);
  for (const db of [a, b, other]) await db.close();
});
