// Two clients update the same row offline; the one that pushes last wins,
// and both converge on its value after pulling.
import assert from "node:assert/strict";
import { open, all, run, scenario } from "./lib.mjs";

const rows = (db) => all(db, "SELECT id, v, note FROM t ORDER BY id");

await scenario("last_push_wins", async () => {
  const a = await open("a");
  await a.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, note TEXT)");
  await run(a, "INSERT INTO t VALUES (1, 'orig', 'n1'), (2, 'two', 'n2')");
  await a.push();
  const b = await open("b");
  assert.deepEqual(await rows(b), [{ id: 1, v: "orig", note: "n1" }, { id: 2, v: "two", note: "n2" }]);

  // Both update row 1 while "offline" (no sync in between).
  await run(a, "UPDATE t SET v = 'from-a' WHERE id = 1");
  await run(b, "UPDATE t SET v = 'from-b' WHERE id = 1");
  // A also changes a different column of row 2; B does not touch row 2.
  await run(a, "UPDATE t SET note = 'a-note' WHERE id = 2");

  await a.push();
  await b.push(); // last push

  assert.equal(await a.pull(), true);
  assert.equal(await b.pull(), true);
  // Row 1: B's push replays B's UPDATE after A's, so B's value wins.
  // Row 2: only A touched it, so A's change survives B's push.
  const want = [{ id: 1, v: "from-b", note: "n1" }, { id: 2, v: "two", note: "a-note" }];
  assert.deepEqual(await rows(a), want, "A converged");
  assert.deepEqual(await rows(b), want, "B converged");
  assert.equal((await a.stats()).revision, (await b.stats()).revision, "same revision");

  // A fresh client sees the same.
  const c = await open("c");
  assert.deepEqual(await rows(c), want, "fresh client");

  // Nothing left to pull or push.
  assert.equal(await a.pull(), false);
  assert.equal(await b.pull(), false);
  for (const db of [a, b, c]) await db.close();
});
