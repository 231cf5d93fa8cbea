// Deferred sync: a client whose URL function returns null works offline,
// makes no request and cannot push; once the URL is set, pull() keeps the
// local rows (and brings the remote's), push() delivers them.
import assert from "node:assert/strict";
import { connect } from "@tursodatabase/sync";
import { open, all, run, scenario, dbUrl, clientPath, requestCountAnyCode, rejects } from "./lib.mjs";

const total = async () => (await requestCountAnyCode("pull")) + (await requestCountAnyCode("pipeline"));

await scenario("deferred", async () => {
  // The remote already has data of its own.
  const a = await open("a");
  await a.exec("CREATE TABLE remote_t (id INTEGER PRIMARY KEY, v TEXT)");
  await run(a, "INSERT INTO remote_t VALUES (1, 'from the server')");
  await a.push();

  const before = await total();
  let enabled = false;
  const d = await connect({ path: clientPath("d"), url: () => (enabled ? dbUrl() : null), clientName: "d" });
  await d.exec("CREATE TABLE local_t (id INTEGER PRIMARY KEY, v TEXT)");
  await run(d, "INSERT INTO local_t VALUES (1, 'offline 1'), (2, 'offline 2')");
  const err = await rejects(d.push(), "push() while the URL is null");
  assert.match(String(err.message), /url is empty|sync is paused/, "push error while offline");
  assert.equal(await total(), before, "no request while the URL is null");
  assert.deepEqual(await all(d, "SELECT id, v FROM local_t ORDER BY id"), [
    { id: 1, v: "offline 1" },
    { id: 2, v: "offline 2" },
  ]);

  enabled = true;
  assert.equal(await d.pull(), true, "first pull after enabling brings the remote's data");
  assert.deepEqual(await all(d, "SELECT id, v FROM local_t ORDER BY id"), [
    { id: 1, v: "offline 1" },
    { id: 2, v: "offline 2" },
  ], "local rows survive the first pull");
  assert.deepEqual(await all(d, "SELECT id, v FROM remote_t"), [{ id: 1, v: "from the server" }]);
  assert.ok(await total() > before, "the client talks to the server now");

  await run(d, "INSERT INTO remote_t VALUES (2, 'from d')");
  await d.push();

  const b = await open("b");
  assert.deepEqual(await all(b, "SELECT id, v FROM local_t ORDER BY id"), [
    { id: 1, v: "offline 1" },
    { id: 2, v: "offline 2" },
  ], "another client sees D's offline rows");
  assert.deepEqual(await all(b, "SELECT id, v FROM remote_t ORDER BY id"), [
    { id: 1, v: "from the server" },
    { id: 2, v: "from d" },
  ]);
  assert.equal(await a.pull(), true);
  assert.equal((await all(a, "SELECT * FROM local_t")).length, 2);

  // Going offline again: pushes fail, local writes continue, and are
  // delivered when back online.
  enabled = false;
  await run(d, "INSERT INTO local_t VALUES (3, 'offline again')");
  await assert.rejects(d.push(), /url is empty|sync is paused/);
  enabled = true;
  await d.push();
  assert.equal(await b.pull(), true);
  assert.deepEqual(await all(b, "SELECT id FROM local_t ORDER BY id"), [{ id: 1 }, { id: 2 }, { id: 3 }]);
  for (const db of [a, b, d]) await db.close();
});
