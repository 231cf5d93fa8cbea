// @libsql/client 0.18.0 over HTTP (Hrana v2 pipelines with batons) and over
// WebSocket (hrana2), against databases named by NAME.localhost, by
// /db/NAME/ and by /db/NAME (WebSocket).
import "./localhost_dns.mjs";
import { createClient } from "@libsql/client";
import { scenario, rejects, sleep } from "./lib.mjs";
import { assert, hostUrl, pathUrl, codeOf, replica, expectRevisions } from "./remote_lib.mjs";

async function suite(label, url, db) {
  const c = createClient({ url });
  const c2 = createClient({ url });
  const big = createClient({ url, intMode: "bigint" });
  const rep = await replica(db);
  await c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");
  await rep.check("t", [], `${label} setup`);

  // Commit: read-your-writes inside, exactly one revision, one pull.
  await expectRevisions(1, `${label} commit`, async () => {
    const tx = await c.transaction("write");
    await tx.execute({ sql: "INSERT INTO t VALUES (?, ?)", args: [1, "a"] });
    await tx.execute({ sql: "INSERT INTO t VALUES (?, ?)", args: [2, "b"] });
    const n = await tx.execute("SELECT count(*) AS n FROM t");
    assert.equal(Number(n.rows[0].n), 2, `${label}: read-your-writes`);
    await tx.commit();
  });
  await rep.check("t", [1, 2], `${label} after commit`);

  // Rollback: nothing of it, anywhere; rollback itself succeeds.
  await expectRevisions(0, `${label} rollback`, async () => {
    const tx = await c.transaction("write");
    for (const id of [3, 4, 5]) await tx.execute({ sql: "INSERT INTO t VALUES (?, 'r')", args: [id] });
    await tx.rollback();
  });
  assert.equal(await rep.check("t", [1, 2], `${label} after rollback`), false, `${label}: a pull after a rollback changed something`);

  // A failure in the middle: the error is the client's to handle; nothing
  // commits.
  {
    const tx = await c.transaction("write");
    await tx.execute("INSERT INTO t VALUES (6, 'x')");
    const e = await rejects(tx.execute("INSERT INTO t VALUES (1, 'dup')"), `${label} duplicate key`);
    assert.equal(codeOf(e), "SQLITE_CONSTRAINT", `${label}: constraint code (${e})`);
    await tx.rollback();
    const e2 = await rejects(c.batch(["INSERT INTO t VALUES (7, 'x')", "INSERT INTO t VALUES (2, 'dup')", "INSERT INTO t VALUES (8, 'x')"], "write"), `${label} failing batch`);
    assert.equal(codeOf(e2), "SQLITE_CONSTRAINT", `${label}: batch constraint code (${e2})`);
  }
  await rep.check("t", [1, 2], `${label} after failures`);

  // Two transactions at once on one database: the second waits for the
  // first and both commit, one revision each.
  await expectRevisions(2, `${label} concurrent`, async () => {
    const a = await c.transaction("write");
    await a.execute("INSERT INTO t VALUES (10, 'a')");
    const b = (async () => {
      const tx = await c2.transaction("write");
      await tx.execute("INSERT INTO t VALUES (11, 'b')");
      await tx.commit();
    })();
    await sleep(200);
    await a.execute("INSERT INTO t VALUES (12, 'a')");
    await a.commit();
    await b;
  });
  await rep.check("t", [1, 2, 10, 11, 12], `${label} after concurrent transactions`);

  // Batches in every mode; "read" refuses writes.
  const rw = await c.batch(["INSERT INTO t VALUES (20, 'w')", "SELECT count(*) AS n FROM t"], "write");
  assert.equal(Number(rw[1].rows[0].n), 6, `${label}: write batch`);
  await c.batch(["INSERT INTO t VALUES (21, 'd')"], "deferred");
  const rd = await c.batch(["SELECT count(*) AS n FROM t"], "read");
  assert.equal(Number(rd[0].rows[0].n), 7, `${label}: read batch`);
  const ro = await rejects(c.batch(["INSERT INTO t VALUES (22, 'no')"], "read"), `${label} write in a read batch`);
  assert.equal(codeOf(ro), "SQLITE_READONLY", `${label}: read batch code (${ro})`);
  await rep.check("t", [1, 2, 10, 11, 12, 20, 21], `${label} after batches`);

  // migrate and executeMultiple.
  await c.migrate(["CREATE TABLE m (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES t(id))", "INSERT INTO m VALUES (1, 1)"]);
  await c.executeMultiple("INSERT INTO m VALUES (2, 2); INSERT INTO m VALUES (3, 10);");
  await rep.check("m", [1, 2, 3], `${label} after migrate`);

  // Every value type, 64-bit integers included.
  await big.execute("CREATE TABLE vals (id INTEGER PRIMARY KEY, v)");
  const blob = new Uint8Array([0, 1, 254, 255]);
  const values = [null, 9223372036854775807n, -9223372036854775808n, 0.5, -1e308, "héllo 🌍", "", blob];
  for (const [i, v] of values.entries()) await big.execute({ sql: "INSERT INTO vals VALUES (?, ?)", args: [i, v] });
  const got = await big.execute("SELECT v, typeof(v) AS t FROM vals ORDER BY id");
  const types = got.rows.map((r) => r.t);
  assert.deepEqual(types, ["null", "integer", "integer", "real", "real", "text", "text", "blob"], `${label}: types`);
  assert.equal(got.rows[1].v, 9223372036854775807n);
  assert.equal(got.rows[2].v, -9223372036854775808n);
  assert.equal(got.rows[3].v, 0.5);
  assert.equal(got.rows[5].v, "héllo 🌍");
  assert.deepEqual(new Uint8Array(got.rows[7].v), blob, `${label}: blob`);

  // Counts are per statement.
  const ins = await c.execute("INSERT INTO t VALUES (30, 'c')");
  assert.equal(ins.rowsAffected, 1);
  assert.equal(ins.lastInsertRowid, 30n);
  const ddl = await c.execute("CREATE TABLE later (x)");
  assert.equal(ddl.rowsAffected, 0, `${label}: CREATE TABLE rowsAffected`);
  assert.equal(ddl.lastInsertRowid, undefined, `${label}: CREATE TABLE lastInsertRowid`);
  const upd = await c.execute("UPDATE t SET v = 'u' WHERE id < 3");
  assert.equal(upd.rowsAffected, 2);
  const syn = await rejects(c.execute("SELEC 1"), `${label} syntax error`);
  assert.equal(codeOf(syn), "SQL_PARSE_ERROR", `${label}: syntax error code (${syn})`);

  c.close();
  c2.close();
  big.close();
  rep.close();
  console.log(`${label}: ok`);
}

await scenario("remote_libsql_client", async () => {
  await suite("http NAME.localhost", hostUrl("lchost"), "lchost");
  await suite("http /db/NAME/", pathUrl("lcpath"), "lcpath");
  await suite("ws /db/NAME", pathUrl("lcws", "ws").replace(/\/$/, ""), "lcws");
});
