// Chunked bootstrap (pullBytesThreshold): a database of several hundred KB
// is downloaded in many /pull-updates calls, all pinned to one revision, and
// arrives intact.
import assert from "node:assert/strict";
import { open, get, run, scenario, requestCount, recordingFetch } from "./lib.mjs";

const ROWS = 600;
const text = (id) => `${id}:`.padEnd(700, String.fromCharCode(97 + (id % 26)));

await scenario("chunked_bootstrap", async () => {
  const a = await open("a");
  await a.exec("CREATE TABLE docs (id INTEGER PRIMARY KEY, body TEXT NOT NULL)");
  await a.exec("CREATE INDEX docs_body ON docs (substr(body, 1, 8))");
  await a.exec("BEGIN");
  for (let id = 1; id <= ROWS; id++) await run(a, "INSERT INTO docs VALUES (?, ?)", id, text(id));
  await a.exec("COMMIT");
  await a.push();
  await a.pull();
  const pages = (await get(a, "PRAGMA page_count")).page_count;
  assert.ok(pages * 4096 >= 400_000, `the database should be several hundred KB, it has ${pages} pages`);

  const agg = "SELECT count(*) AS n, sum(length(body)) AS len, sum(unicode(substr(body, 690, 1)) * id) AS chk FROM docs";
  const want = await get(a, agg);
  assert.equal(want.n, ROWS);

  // While B bootstraps in chunks, A pushes again: every chunk must stay
  // pinned to the revision of the first one.
  const rec = recordingFetch();
  const pulls0 = await requestCount("pull");
  let pushedDuring = false;
  const fetchThenPush = async (url, init) => {
    const res = await rec(url, init);
    if (!pushedDuring && rec.log.length === 3) {
      pushedDuring = true;
      await run(a, "UPDATE docs SET body = 'changed' WHERE id <= 300");
      await a.push();
    }
    return res;
  };
  const b = await open("b", { pullBytesThreshold: 8192, fetch: fetchThenPush });
  const pulls = (await requestCount("pull")) - pulls0;
  assert.ok(pushedDuring, "A pushed during B's bootstrap");
  assert.ok(pulls >= pages / 4, `bootstrap of ${pages} pages with an 8 KiB threshold took ${pulls} pull requests`);
  assert.equal(rec.log.length, pulls, "every pull request came from B");
  assert.ok(rec.log.every((r) => r.status === 200 && r.pull.hasSelector), "every chunk selects pages, every answer is 200");
  const pinned = rec.log.slice(1).map((r) => r.pull.serverRevision);
  assert.ok(pinned[0] !== "", "chunks after the first are pinned to a revision");
  assert.ok(pinned.every((r) => r === pinned[0]), `all chunks pinned to one revision: ${[...new Set(pinned)]}`);

  // B holds the state of the pinned revision exactly, not a mix.
  assert.deepEqual(await get(b, agg), want, "B's contents after a chunked bootstrap");
  assert.equal((await get(b, "PRAGMA integrity_check")).integrity_check, "ok");

  // Then it catches up with A's concurrent push.
  assert.equal(await b.pull(), true);
  assert.equal((await get(b, "SELECT count(*) AS n FROM docs WHERE body = 'changed'")).n, 300);
  assert.deepEqual(await get(b, agg), await get(a, agg));

  // For comparison, a bootstrap without the threshold is a single request.
  const p1 = await requestCount("pull");
  const c = await open("c");
  assert.equal(await requestCount("pull") - p1, 1);
  assert.deepEqual(await get(c, agg), await get(a, agg));
  console.log(`${pages} pages bootstrapped in ${pulls} requests`);
  for (const db of [a, b, c]) await db.close();
});
