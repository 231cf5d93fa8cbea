// @tursodatabase/serverless 1.4.0: Hrana 3 over HTTP JSON (/v3/pipeline
// with get_autocommit in every request, /v3/cursor for every statement).
import { connect } from "@tursodatabase/serverless";
import { scenario, rejects, sleep, timed } from "./lib.mjs";
import { assert, pathUrl, codeOf, replica, expectRevisions, serverRSS } from "./remote_lib.mjs";

await scenario("remote_serverless", async () => {
  const db = "sl";
  const url = pathUrl(db).replace(/\/$/, "");
  const conn = connect({ url });
  const rep = await replica(db);
  await conn.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");

  // Commit, with read-your-writes.
  await expectRevisions(1, "commit", () =>
    conn.transactionAsync(async (tx) => {
      await tx.run("INSERT INTO t VALUES (?, ?)", 1, "a");
      await tx.run("INSERT INTO t VALUES (?, ?)", 2, "b");
      const n = await tx.get("SELECT count(*) AS n FROM t");
      assert.equal(n.n, 2, "read-your-writes");
      // The connection's own stream reads meanwhile, at once, without the
      // transaction's rows.
      const [outside, ms] = await timed(() => conn.get("SELECT count(*) AS n FROM t"));
      assert.equal(outside.n, 0, "a read outside the transaction");
      assert.ok(ms < 3000, `a read outside the transaction took ${ms} ms`);
    })(),
  );
  await rep.check("t", [1, 2], "after commit");

  // Rollback (the callback throws), and a failure in the middle.
  await expectRevisions(0, "rollback", async () => {
    const e = await rejects(
      conn.transactionAsync(async (tx) => {
        await tx.run("INSERT INTO t VALUES (3, 'r')");
        const dup = await rejects(tx.run("INSERT INTO t VALUES (1, 'dup')"), "duplicate key");
        assert.equal(codeOf(dup), "SQLITE_CONSTRAINT", `constraint code (${dup})`);
        throw new Error("give up");
      })(),
      "transaction that throws",
    );
    assert.equal(e.message, "give up");
  });
  assert.equal(await rep.check("t", [1, 2], "after rollback"), false, "a pull after a rollback changed something");

  // Two transactions at once.
  await expectRevisions(2, "concurrent", async () => {
    const slow = conn.transactionAsync(async (tx) => {
      await tx.run("INSERT INTO t VALUES (10, 'a')");
      await sleep(200);
      await tx.run("INSERT INTO t VALUES (12, 'a')");
    })();
    await sleep(50);
    const other = connect({ url });
    await other.transactionAsync(async (tx) => {
      await tx.run("INSERT INTO t VALUES (11, 'b')");
    })();
    await slow;
  });
  await rep.check("t", [1, 2, 10, 11, 12], "after concurrent transactions");

  // Batches.
  await conn.batch(["INSERT INTO t VALUES (20, 'w')", "INSERT INTO t VALUES (21, 'w')"], "write");
  // (This client sends BEGIN DEFERRED for "read": it does not ask for a
  // read-only transaction.)
  const rd = await conn.batch(["SELECT count(*) AS n FROM t"], "read");
  assert.ok(rd, "read batch");
  await rejects(conn.batch(["INSERT INTO t VALUES (22, 'x')", "INSERT INTO t VALUES (1, 'dup')"], "write"), "failing write batch");
  await rep.check("t", [1, 2, 10, 11, 12, 20, 21], "after batches");

  // Values and counts.
  await conn.exec("CREATE TABLE vals (id INTEGER PRIMARY KEY, v)");
  const ins = await conn.run("INSERT INTO vals VALUES (?, ?)", 1, "héllo");
  assert.equal(ins.changes, 1);
  assert.equal(ins.lastInsertRowid, 1);
  await conn.run("INSERT INTO vals VALUES (?, ?)", 2, Buffer.from([0, 1, 255]));
  await conn.run("INSERT INTO vals VALUES (?, ?)", 3, null);
  await conn.run("INSERT INTO vals VALUES (?, ?)", 4, 1.25);
  await conn.run("INSERT INTO vals VALUES (5, 'five')");
  const big = await conn.prepare("SELECT 9223372036854775807 AS v");
  assert.equal((await big.safeIntegers(true).get()).v, 9223372036854775807n);
  const rows = await conn.all("SELECT typeof(v) AS t FROM vals ORDER BY id");
  assert.deepEqual(rows.map((r) => r.t), ["text", "blob", "null", "real", "text"]);
  const ddl = await conn.run("CREATE TABLE later (x)");
  assert.equal(ddl.changes, 0, "CREATE TABLE after an INSERT");

  // A cursor over 100,000 rows (20 MB of blobs, ~30 MB of JSON) streams:
  // the server's memory does not grow with it (buffered, it would grow by
  // more than the JSON).
  await conn.exec("CREATE TABLE big (id INTEGER PRIMARY KEY, b BLOB)");
  // In ten transactions, so that writing them does not raise the server's
  // peak memory as much as buffering the cursor would.
  for (let k = 0; k < 10; k++) {
    await conn.exec(`WITH RECURSIVE n(i) AS (SELECT ${k * 10000 + 1} UNION ALL SELECT i + 1 FROM n WHERE i < ${(k + 1) * 10000}) INSERT INTO big SELECT i, randomblob(200) FROM n`);
  }
  const rssBefore = await serverRSS();
  let count = 0, bytes = 0, rssMax = rssBefore;
  // Sampled on a timer too, so that memory the server holds before the first
  // row reaches the client is seen.
  const sampler = setInterval(async () => { rssMax = Math.max(rssMax, await serverRSS()); }, 10);
  for await (const row of (await conn.prepare("SELECT id, b FROM big ORDER BY id")).iterate()) {
    count++;
    bytes += row.b.length;
    if (count % 10000 === 0) rssMax = Math.max(rssMax, await serverRSS());
  }
  clearInterval(sampler);
  assert.equal(count, 100000);
  const growth = rssMax - rssBefore;
  console.log(`cursor: ${count} rows, ${bytes} blob bytes; server anonymous RSS ${Math.round(rssBefore / 1e6)} MB before, at most ${Math.round(rssMax / 1e6)} MB while streaming`);
  assert.ok(growth < 15e6, `the server's memory grew ${growth} bytes while streaming ${bytes} bytes`);

  await conn.close();
  rep.close();
});
