// Partial sync, prefix strategy: a client that bootstrapped only the first
// pages loads the rest lazily, pinned to its bootstrap revision, even after
// the remote moved on; the server must serve that old revision's pages.
import assert from "node:assert/strict";
import { open, all, get, run, scenario, requestCount, recordingFetch } from "./lib.mjs";

const ROWS = 2000;
const body = (id) => `old-${id}-`.padEnd(200, "abcdefghij"[id % 10]);
const AGG = "SELECT count(*) AS n, sum(id) AS ids, sum(length(body)) AS len, sum(unicode(substr(body, 1, 1)) * id) AS chk FROM big";
const range = (db, lo, hi) => all(db, "SELECT id, body FROM big WHERE id BETWEEN ? AND ? ORDER BY id", lo, hi);

await scenario("partial_prefix", async () => {
  const a = await open("a");
  await a.exec("CREATE TABLE big (id INTEGER PRIMARY KEY, body TEXT NOT NULL)");
  await a.exec("BEGIN");
  for (let id = 1; id <= ROWS; id++) await run(a, "INSERT INTO big VALUES (?, ?)", id, body(id));
  await a.exec("COMMIT");
  await a.push();
  await a.pull();
  const pages = (await get(a, "PRAGMA page_count")).page_count;
  assert.ok(pages > 50, `table spans many pages (${pages})`);
  const oldAgg = await get(a, AGG);
  const oldRange = await range(a, 1500, 1520);
  const oldRange2 = await range(a, 700, 705);
  assert.equal(oldRange.length, 21);

  // Two partial clients: 8 KiB prefix; one loads 4 KiB segments without
  // prefetch, the other 16 KiB segments with prefetch.
  const rec1 = recordingFetch(), rec2 = recordingFetch();
  const pulls0 = await requestCount("pull");
  const c1 = await open("c1", {
    fetch: rec1,
    partialSyncExperimental: { bootstrapStrategy: { kind: "prefix", length: 8192 }, segmentSize: 4096, prefetch: false },
  });
  const c2 = await open("c2", {
    fetch: rec2,
    partialSyncExperimental: { bootstrapStrategy: { kind: "prefix", length: 8192 }, segmentSize: 16384, prefetch: true },
  });
  assert.equal(await requestCount("pull") - pulls0, 2, "one bootstrap request per partial client");
  const boot = (await c1.stats());
  const bootRev = boot.revision;
  assert.equal((await c2.stats()).revision, bootRev);
  assert.ok(boot.networkReceivedBytes < 4 * 4096, `prefix bootstrap received ${boot.networkReceivedBytes} bytes, want about 2 pages`);

  // The remote moves on: updates, deletes and inserts in some parts of the
  // table (other pages stay as they were).
  await run(a, "UPDATE big SET body = 'new-' || id WHERE id BETWEEN 1450 AND 1600 AND id % 3 = 0");
  await run(a, "DELETE FROM big WHERE id BETWEEN 100 AND 150");
  await a.exec("BEGIN");
  for (let id = ROWS + 1; id <= ROWS + 300; id++) await run(a, "INSERT INTO big VALUES (?, ?)", id, body(id));
  await a.exec("COMMIT");
  await a.push();
  await a.pull();
  const newAgg = await get(a, AGG);
  assert.notDeepEqual(newAgg, oldAgg);

  // C1 reads rows on pages it does not have: lazy loads, pinned to the
  // bootstrap revision, return the OLD contents (C1 has not pulled).
  let n0 = rec1.log.length;
  assert.deepEqual(await range(c1, 1500, 1520), oldRange, "C1 range 1500-1520 as of its bootstrap revision");
  const lazy = rec1.log.slice(n0);
  assert.ok(lazy.length >= 1, "reading unloaded rows made lazy page loads");
  for (const r of lazy) {
    assert.equal(r.status, 200);
    assert.ok(r.pull.hasSelector, "a lazy load selects pages");
    assert.equal(r.pull.serverRevision, bootRev, "a lazy load is pinned to the bootstrap revision");
  }
  assert.notEqual(bootRev, (await a.stats()).revision, "the remote has moved on from C1's revision");
  assert.deepEqual(await range(c1, 700, 705), oldRange2);

  // C2 (prefetch) reads the whole table as of the old revision.
  assert.deepEqual(await get(c2, AGG), oldAgg, "C2 whole-table aggregates as of its bootstrap revision");
  const lazy2 = rec2.log.slice(1);
  assert.ok(lazy2.length >= 1);
  assert.ok(lazy2.every((r) => r.status === 200 && r.pull.serverRevision === bootRev), "C2's loads are pinned and succeed");

  // Both pull and then agree with A over the whole table; C1 still has to
  // load most pages lazily after the pull.
  assert.equal(await c1.pull(), true);
  assert.equal(await c2.pull(), true);
  n0 = rec1.log.length;
  assert.deepEqual(await get(c1, AGG), newAgg, "C1 after pull: whole-table aggregates equal A's");
  assert.deepEqual(await get(c2, AGG), newAgg, "C2 after pull");
  assert.deepEqual(await range(c1, 1490, 1510), await range(a, 1490, 1510));
  assert.deepEqual(await range(c1, 90, 160), await range(a, 90, 160));
  assert.deepEqual(await range(c2, ROWS - 5, ROWS + 300), await range(a, ROWS - 5, ROWS + 300));
  const after = rec1.log.slice(n0).filter((r) => r.pull.hasSelector);
  assert.ok(after.length >= 1, "C1 loaded pages after its pull");
  assert.ok(after.every((r) => r.status === 200), "lazy loads after the pull succeed");
  console.log(`C1 lazy loads after pull pinned to: ${[...new Set(after.map((r) => r.pull.serverRevision))]} (bootstrap ${bootRev})`);
  assert.equal((await get(c1, "PRAGMA integrity_check")).integrity_check, "ok");

  // A partial client writes too.
  await run(c1, "UPDATE big SET body = 'from-c1' WHERE id = 1");
  await c1.push();
  assert.equal(await a.pull(), true);
  assert.deepEqual(await get(a, "SELECT body FROM big WHERE id = 1"), { body: "from-c1" });
  for (const db of [a, c1, c2]) await db.close();
});
