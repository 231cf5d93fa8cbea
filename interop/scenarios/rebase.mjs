// A local, unpushed change survives pulling another client's push (the
// client rebases it on top of the pulled pages), and is pushed afterwards.
import assert from "node:assert/strict";
import { open, all, run, scenario } from "./lib.mjs";

const rows = (db) => all(db, "SELECT id, v FROM t ORDER BY id");

await scenario("rebase", async () => {
  const a = await open("a");
  await a.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");
  await run(a, "INSERT INTO t VALUES (1, 'one'), (2, 'two'), (3, 'three')");
  await a.push();
  const b = await open("b");
  assert.equal((await rows(b)).length, 3);

  // B: unpushed insert, update and delete.
  await run(b, "INSERT INTO t VALUES (10, 'b-local')");
  await run(b, "UPDATE t SET v = 'b-upd' WHERE id = 2");
  await run(b, "DELETE FROM t WHERE id = 3");
  const bPending = (await b.stats()).cdcOperations;
  assert.ok(bPending >= 3, `B has unpushed operations (cdcOperations=${bPending})`);

  // A: pushes other changes meanwhile.
  await run(a, "INSERT INTO t VALUES (4, 'a-new')");
  await run(a, "UPDATE t SET v = 'a-upd' WHERE id = 1");
  await a.push();

  // B pulls: it sees A's changes AND keeps its own.
  assert.equal(await b.pull(), true);
  const merged = [
    { id: 1, v: "a-upd" },
    { id: 2, v: "b-upd" },
    { id: 4, v: "a-new" },
    { id: 10, v: "b-local" },
  ];
  assert.deepEqual(await rows(b), merged, "B after pull: A's changes plus its own unpushed ones");

  // A has not seen B's changes yet.
  assert.equal(await a.pull(), true); // its own push
  assert.deepEqual(await rows(a), [
    { id: 1, v: "a-upd" },
    { id: 2, v: "two" },
    { id: 3, v: "three" },
    { id: 4, v: "a-new" },
  ]);

  // B pushes; A pulls and sees them.
  await b.push();
  assert.equal(await a.pull(), true);
  assert.deepEqual(await rows(a), merged, "A after B's push");
  assert.equal(await b.pull(), true);
  assert.deepEqual(await rows(b), merged, "B after pulling its own push");
  assert.equal(await b.pull(), false);

  // Pushing again sends nothing new: a fresh client sees exactly the merged state.
  await b.push();
  const c = await open("c");
  assert.deepEqual(await rows(c), merged, "fresh client");
  for (const db of [a, b, c]) await db.close();
});
