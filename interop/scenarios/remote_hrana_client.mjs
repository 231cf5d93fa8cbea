// @libsql/hrana-client 0.10.0 in Hrana 3: over HTTP it finds
// /v3-protobuf and speaks protobuf (pipelines and cursors); over WebSocket
// it gets hrana3-protobuf. The server runs with --stream-idle-timeout 15s:
// long enough for the replica checks between a stream's requests on a
// loaded machine (4 s expired the suite's stream under load 20).
import * as hrana from "@libsql/hrana-client";
import { scenario, rejects, sleep } from "./lib.mjs";
import { assert, pathUrl, codeOf, replica, expectRevisions } from "./remote_lib.mjs";

async function suite(label, client, storeOn, db) {
  assert.equal(await client.getVersion(), 3, `${label}: version`);
  const rep = await replica(db);
  const s = client.openStream();
  await s.run("CREATE TABLE h (id INTEGER PRIMARY KEY, v)");
  assert.equal(await s.getAutocommit(), true, `${label}: autocommit at first`);

  // An interactive transaction.
  await expectRevisions(1, `${label} commit`, async () => {
    await s.run("BEGIN");
    assert.equal(await s.getAutocommit(), false, `${label}: in a transaction`);
    await s.run(["INSERT INTO h VALUES (?, ?)", [1, "a"]]);
    assert.equal(await s.queryValue("SELECT count(*) FROM h").then((r) => r.value), 1, `${label}: read-your-writes`);
    await s.run("COMMIT");
  });
  await rep.check("h", [1], `${label} after commit`);

  // A batch whose steps are guarded by is_autocommit, run through a cursor:
  // the failing step leaves the transaction open, so COMMIT is skipped and
  // ROLLBACK runs.
  await expectRevisions(0, `${label} guarded batch`, async () => {
    const b = s.batch(true);
    const begin = b.step().run("BEGIN");
    const inTx = hrana.BatchCond.not(hrana.BatchCond.isAutocommit(b));
    b.step().condition(inTx).run("INSERT INTO h VALUES (2, 'b')");
    const dupStep = b.step();
    const dup = dupStep.condition(inTx).run("INSERT INTO h VALUES (1, 'dup')");
    const commit = b.step().condition(hrana.BatchCond.ok(dupStep)).run("COMMIT");
    b.step().condition(inTx).run("ROLLBACK");
    // Handled before the batch runs: over a WebSocket the step's rejection
    // can come before execute() resolves, and an unhandled one ends node.
    const dupFailed = rejects(dup, `${label} duplicate in a batch`);
    await b.execute();
    await begin;
    const e = await dupFailed;
    assert.equal(codeOf(e), "SQLITE_CONSTRAINT", `${label}: batch step code (${e})`);
    assert.equal(await commit, undefined, `${label}: COMMIT ran`);
  });
  assert.equal(await s.getAutocommit(), true, `${label}: after the guarded batch`);
  assert.equal(await rep.check("h", [1], `${label} after the guarded batch`), false);

  // A cursor over 100,000 rows.
  {
    const b = s.batch(true);
    const q = b.step().query("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000) SELECT i, 'x' || i FROM n");
    await b.execute();
    const rows = (await q).rows;
    assert.equal(rows.length, 100000, `${label}: cursor rows`);
    assert.equal(rows[99999][1], "x100000");
  }

  // describe, stored SQL, sequence, counts.
  const d = await s.describe("SELECT id AS k, ?1, :name FROM h");
  assert.equal(d.isReadonly, true);
  assert.deepEqual(d.paramNames, ["?1", ":name"], `${label}: params`);
  assert.equal(d.columns[0].name, "k");
  const stored = storeOn(s).storeSql("SELECT count(*) FROM h");
  assert.equal((await s.queryValue(stored)).value, 1, `${label}: stored SQL`);
  assert.equal((await s.queryValue(stored)).value, 1, `${label}: stored SQL again`);
  stored.close();
  await s.sequence("INSERT INTO h VALUES (5, 'e'); INSERT INTO h VALUES (6, 'f');");
  const ins = await s.run("INSERT INTO h VALUES (7, 'g')");
  assert.equal(ins.affectedRowCount, 1);
  assert.equal(ins.lastInsertRowid, 7n, `${label}: lastInsertRowid`);
  const ddl = await s.run("CREATE TABLE h2 (x)");
  assert.equal(ddl.affectedRowCount, 0);
  assert.equal(ddl.lastInsertRowid, undefined);
  await rep.check("h", [1, 5, 6, 7], `${label} at the end`);
  s.close();
  rep.close();
  console.log(`${label}: ok`);
}

await scenario("remote_hrana_client", async () => {
  const http = hrana.openHttp(pathUrl("hrhttp"), undefined, undefined, undefined, 3);
  // Stored SQL belongs to a stream over HTTP, to the connection over a
  // WebSocket.
  await suite("http v3-protobuf", http, (s) => s, "hrhttp");
  // An idle stream expires; its transaction is rolled back, and the next
  // request on it says so.
  {
    const s = http.openStream();
    await s.run("BEGIN");
    await s.run("INSERT INTO h VALUES (100, 'lost')");
    await sleep(18000);
    const e = await rejects(s.run("COMMIT"), "a request on an expired stream");
    assert.match(String(e), /expired/i, `expired stream: ${e}`);
    const rep = await replica("hrhttp", "replica-after-expiry");
    await rep.check("h", [1, 5, 6, 7], "after the expired transaction");
    rep.close();
  }
  http.close();

  const ws = hrana.openWs(pathUrl("hrws", "ws").replace(/\/$/, ""), undefined, 3);
  await suite("ws hrana3-protobuf", ws, () => ws, "hrws");
  ws.close();
});
