// A client writes, closes, reopens the same local path (no network I/O on
// reopen) and pushes later; another client sees everything.
import assert from "node:assert/strict";
import { open, all, run, scenario, requestCountAnyCode } from "./lib.mjs";

const total = async () => (await requestCountAnyCode("pull")) + (await requestCountAnyCode("pipeline"));

await scenario("reopen", async () => {
  let a = await open("a");
  await a.exec("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)");
  await run(a, "INSERT INTO notes VALUES (1, 'first session')");
  await a.close();

  const before = await total();
  a = await open("a");
  assert.equal(await total(), before, "reopening an existing replica makes no request");
  assert.deepEqual(await all(a, "SELECT id, body FROM notes"), [{ id: 1, body: "first session" }]);
  await run(a, "INSERT INTO notes VALUES (2, 'second session')");
  await a.close();

  // Third session: push what both earlier sessions wrote.
  a = await open("a");
  assert.equal(await total(), before);
  await a.push();
  assert.ok(await total() > before, "push talked to the server");

  const b = await open("b");
  assert.deepEqual(await all(b, "SELECT id, body FROM notes ORDER BY id"), [
    { id: 1, body: "first session" },
    { id: 2, body: "second session" },
  ]);

  // Reopen after syncing: the replica remembers its revision; pull and
  // push keep working across a close.
  const rev = (await a.stats()).revision;
  await a.close();
  a = await open("a");
  assert.equal((await a.stats()).revision, rev, "revision survives reopen");
  await run(b, "INSERT INTO notes VALUES (3, 'from b')");
  await b.push();
  assert.equal(await a.pull(), true);
  assert.deepEqual(await all(a, "SELECT id FROM notes ORDER BY id"), [{ id: 1 }, { id: 2 }, { id: 3 }]);
  await run(a, "DELETE FROM notes WHERE id = 1");
  await a.close();
  a = await open("a");
  await a.push();
  assert.equal(await b.pull(), true);
  assert.deepEqual(await all(b, "SELECT id FROM notes ORDER BY id"), [{ id: 2 }, { id: 3 }]);
  await a.close();
  await b.close();
});
