// Schema changes travel both ways: ALTER TABLE ... ADD COLUMN and CREATE
// INDEX made by A reach B, B writes the new column, A sees it.
import assert from "node:assert/strict";
import { open, all, get, run, scenario } from "./lib.mjs";

const columns = async (db, table) => (await all(db, `PRAGMA table_info(${table})`)).map((c) => c.name);
const indexes = (db) =>
  all(db, "SELECT name, tbl_name FROM sqlite_schema WHERE type = 'index' AND name NOT LIKE 'sqlite_%' ORDER BY name");

await scenario("schema", async () => {
  const a = await open("a");
  await a.exec("CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT NOT NULL)");
  await run(a, "INSERT INTO people VALUES (1, 'ann'), (2, 'bob'), (3, 'cid')");
  await a.push();
  const b = await open("b");
  assert.deepEqual(await columns(b, "people"), ["id", "name"]);

  // A changes the schema and uses it.
  await a.exec("ALTER TABLE people ADD COLUMN score INTEGER DEFAULT 7");
  await a.exec("CREATE INDEX people_name ON people (name)");
  await a.exec("CREATE TABLE tags (id INTEGER PRIMARY KEY, person INTEGER, tag TEXT)");
  await a.exec("CREATE UNIQUE INDEX tags_person_tag ON tags (person, tag)");
  await run(a, "UPDATE people SET score = 100 WHERE id = 1");
  await run(a, "INSERT INTO people (id, name) VALUES (4, 'dee')");
  await run(a, "INSERT INTO tags VALUES (1, 1, 'admin')");
  await a.push();

  assert.equal(await b.pull(), true);
  assert.deepEqual(await columns(b, "people"), ["id", "name", "score"], "B sees the new column");
  assert.deepEqual(await indexes(b), [
    { name: "people_name", tbl_name: "people" },
    { name: "tags_person_tag", tbl_name: "tags" },
  ], "B has the indexes in sqlite_schema");
  assert.deepEqual(await all(b, "SELECT id, name, score FROM people ORDER BY id"), [
    { id: 1, name: "ann", score: 100 },
    { id: 2, name: "bob", score: 7 },
    { id: 3, name: "cid", score: 7 },
    { id: 4, name: "dee", score: 7 },
  ]);
  // The pulled index is usable and consistent with the table.
  assert.deepEqual(await all(b, "SELECT id FROM people WHERE name = 'cid'"), [{ id: 3 }]);
  assert.deepEqual(await all(b, "SELECT name FROM people ORDER BY name DESC LIMIT 2"), [{ name: "dee" }, { name: "cid" }]);

  // B writes to the new column and table; the unique index is enforced on B.
  await run(b, "UPDATE people SET score = 42 WHERE id = 2");
  await run(b, "INSERT INTO people (id, name, score) VALUES (5, 'eve', 5)");
  await run(b, "INSERT INTO tags VALUES (2, 2, 'dev')");
  await assert.rejects(run(b, "INSERT INTO tags VALUES (3, 1, 'admin')"), /UNIQUE|constraint/i);
  await b.push();

  assert.equal(await a.pull(), true);
  assert.deepEqual(await all(a, "SELECT id, name, score FROM people ORDER BY id"), [
    { id: 1, name: "ann", score: 100 },
    { id: 2, name: "bob", score: 42 },
    { id: 3, name: "cid", score: 7 },
    { id: 4, name: "dee", score: 7 },
    { id: 5, name: "eve", score: 5 },
  ]);
  assert.deepEqual(await all(a, "SELECT id, person, tag FROM tags ORDER BY id"), [
    { id: 1, person: 1, tag: "admin" },
    { id: 2, person: 2, tag: "dev" },
  ]);

  // A fresh client gets the final schema and data in its bootstrap.
  const c = await open("c");
  assert.deepEqual(await columns(c, "people"), ["id", "name", "score"]);
  assert.equal((await indexes(c)).length, 2);
  assert.deepEqual(await get(c, "SELECT count(*) AS n, sum(score) AS s FROM people"), { n: 5, s: 161 });
  for (const db of [a, b, c]) await db.close();
});
