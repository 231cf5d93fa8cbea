// Server restart (run twice by the Go test: SYNCDB_PHASE=1, then the server
// is stopped with SIGTERM and started again on the same data directory at
// another port, then SYNCDB_PHASE=2 with the same client files). Replicas
// made before the restart keep pulling and pushing with their old revisions,
// a partial replica keeps loading pages pinned to its pre-restart revision,
// and nothing pushed before the restart is lost.
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { open, all, get, run, scenario, CLIENT_DIR, recordingFetch } from "./lib.mjs";

const phase = process.env.SYNCDB_PHASE;
const stateFile = join(CLIENT_DIR, "restart-state.json");
const body = (id) => `v1-${id}-`.padEnd(300, "r");
const partial = { bootstrapStrategy: { kind: "prefix", length: 4096 }, segmentSize: 4096, prefetch: false };

await scenario(`server_restart phase ${phase}`, async () => {
  if (phase === "1") {
    const a = await open("a");
    await a.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)");
    await a.exec("BEGIN");
    for (let id = 1; id <= 1000; id++) await run(a, "INSERT INTO t VALUES (?, ?)", id, body(id));
    await a.exec("COMMIT");
    await a.push();
    const b = await open("b");
    const p = await open("p", { partialSyncExperimental: partial });
    const bootRev = (await p.stats()).revision;
    const want = await all(a, "SELECT id, body FROM t WHERE id BETWEEN 900 AND 910");
    // A pushes again (B and P will pull it after the restart) and leaves an
    // unpushed change behind.
    await run(a, "UPDATE t SET body = 'v2' WHERE id BETWEEN 900 AND 1000");
    await a.push();
    await run(a, "INSERT INTO t VALUES (5000, 'unpushed before restart')");
    writeFileSync(stateFile, JSON.stringify({ bootRev, want }));
    for (const db of [a, b, p]) await db.close();
    return;
  }
  assert.equal(phase, "2", "SYNCDB_PHASE must be 1 or 2");
  const { bootRev, want } = JSON.parse(readFileSync(stateFile, "utf8"));

  // The partial replica reads old pages pinned to its pre-restart revision.
  const rec = recordingFetch();
  const p = await open("p", { partialSyncExperimental: partial, fetch: rec });
  assert.deepEqual(await all(p, "SELECT id, body FROM t WHERE id BETWEEN 900 AND 910"), want, "old revision after restart");
  assert.ok(rec.log.length >= 1 && rec.log.every((r) => r.status === 200 && r.pull.serverRevision === bootRev),
    "lazy loads pinned to the pre-restart revision succeed");

  const b = await open("b");
  assert.equal(await b.pull(), true, "B pulls what A pushed before the restart");
  assert.deepEqual(await get(b, "SELECT count(*) AS n, sum(body = 'v2') AS v2 FROM t"), { n: 1000, v2: 101 });

  const a = await open("a");
  await a.push();
  assert.equal(await b.pull(), true);
  assert.deepEqual(await all(b, "SELECT body FROM t WHERE id = 5000"), [{ body: "unpushed before restart" }]);
  assert.equal(await p.pull(), true);
  assert.deepEqual(await get(p, "SELECT count(*) AS n, sum(body = 'v2') AS v2 FROM t"), { n: 1001, v2: 101 });

  const c = await open("c");
  assert.deepEqual(await get(c, "SELECT count(*) AS n, sum(length(body)) AS len FROM t"),
    await get(a, "SELECT count(*) AS n, sum(length(body)) AS len FROM t"));
  for (const db of [a, b, p, c]) await db.close();
});
