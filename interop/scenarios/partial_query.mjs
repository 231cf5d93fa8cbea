// Partial sync, query strategy: the server picks the pages needed to answer
// the bootstrap query, so running that query afterwards needs no further
// request, and the bootstrap is a small fraction of a multi-MB table.
import assert from "node:assert/strict";
import { open, all, get, run, scenario, requestCountAnyCode } from "./lib.mjs";

const ROWS = 3000;
const body = (id) => `${id}|`.padEnd(1000, "0123456789abcdef"[id % 16]);
const tag = (id) => `tag-${id % 50}`;

await scenario("partial_query", async () => {
  const a = await open("a");
  await a.exec("CREATE TABLE big (id INTEGER PRIMARY KEY, tag TEXT NOT NULL, body TEXT NOT NULL)");
  await a.exec("CREATE TABLE other (k TEXT PRIMARY KEY, v TEXT)");
  await a.exec("BEGIN");
  for (let id = 1; id <= ROWS; id++) await run(a, "INSERT INTO big VALUES (?, ?, ?)", id, tag(id), body(id));
  for (let i = 0; i < 500; i++) await run(a, "INSERT INTO other VALUES (?, ?)", `k${i}`, "v".repeat(300));
  await a.exec("COMMIT");
  await a.exec("CREATE INDEX big_tag ON big (tag)");
  let t0 = performance.now();
  await a.push();
  console.log(`push of ${ROWS} rows: ${Math.round(performance.now() - t0)} ms`);
  await a.pull();
  const pages = (await get(a, "PRAGMA page_count")).page_count;
  const dbBytes = pages * 4096;
  assert.ok(dbBytes > 3_000_000, `database is a few MB (${dbBytes} bytes)`);

  const cases = [
    {
      name: "range",
      query: "SELECT * FROM big WHERE id BETWEEN 1000 AND 1010",
      want: Array.from({ length: 11 }, (_, i) => 1000 + i).map((id) => ({ id, tag: tag(id), body: body(id) })),
    },
    {
      name: "point",
      query: "SELECT * FROM big WHERE id = 2500",
      want: [{ id: 2500, tag: tag(2500), body: body(2500) }],
    },
    {
      name: "index",
      query: "SELECT id, tag FROM big WHERE tag = 'tag-7' ORDER BY tag, id",
      want: Array.from({ length: ROWS / 50 }, (_, i) => 7 + 50 * i).map((id) => ({ id, tag: "tag-7" })),
    },
    {
      name: "other table",
      query: "SELECT k, length(v) AS n FROM other WHERE k = 'k250'",
      want: [{ k: "k250", n: 300 }],
    },
  ];
  for (const [i, c] of cases.entries()) {
    const before = await requestCountAnyCode("pull");
    const db = await open(`q${i}`, { partialSyncExperimental: { bootstrapStrategy: { kind: "query", query: c.query } } });
    assert.equal(await requestCountAnyCode("pull") - before, 1, `${c.name}: bootstrap is one request`);
    const rows = await all(db, c.query);
    assert.deepEqual(rows, c.want, `${c.name}: query results`);
    assert.equal(await requestCountAnyCode("pull") - before, 1, `${c.name}: running the bootstrap query needed no further request`);
    const got = (await db.stats()).networkReceivedBytes;
    assert.ok(got < dbBytes / 20, `${c.name}: bootstrap received ${got} bytes of a ${dbBytes}-byte database`);
    console.log(`${c.name}: bootstrap received ${got} of ${dbBytes} bytes`);

    // Anything else is loaded lazily, and is correct.
    assert.deepEqual(await get(db, "SELECT count(*) AS n, sum(length(body)) AS len FROM big WHERE id > 2990"), { n: 10, len: 10_000 });
    assert.ok(await requestCountAnyCode("pull") - before > 1, `${c.name}: other rows were loaded lazily`);
    await db.close();
  }
  await a.close();
});
