// Bearer tokens: no token or a wrong token is refused with 401 and the
// server's message; the read-write token works (also in function form); a
// read-only token can bootstrap and pull but its push is refused with 403.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { open, all, run, scenario, clientPath, rejects, requestCount, AUTH_TOKEN, READ_TOKEN } from "./lib.mjs";

await scenario("auth", async () => {
  assert.ok(AUTH_TOKEN && READ_TOKEN, "the Go test passes both tokens");

  // No token at all: the bootstrap (inside connect) fails.
  let err = await rejects(open("none", { authToken: undefined }), "connect without a token");
  assert.match(err.message, /status=401/, "no token: status");
  assert.match(err.message, /authorization required/, "no token: server message");
  assert.ok(!existsSync(clientPath("none") + "-info"), "no replica metadata after a refused bootstrap");

  // Wrong token.
  err = await rejects(open("wrong", { authToken: "not-the-token" }), "connect with a wrong token");
  assert.match(err.message, /status=401/);
  assert.match(err.message, /invalid token/);
  // A token that merely starts with the right one is refused as well.
  err = await rejects(open("wrong2", { authToken: `${AUTH_TOKEN}x` }), "connect with a longer token");
  assert.match(err.message, /status=401/);
  assert.equal(await requestCount("pull", 401), 3, "the server counted three 401 pulls");

  // The read-write token works.
  const a = await open("a", { authToken: AUTH_TOKEN });
  await a.exec("CREATE TABLE secrets (id INTEGER PRIMARY KEY, v TEXT)");
  await run(a, "INSERT INTO secrets VALUES (1, 'one')");
  await a.push();

  // Function form of the token.
  const f = await open("f", { authToken: async () => AUTH_TOKEN });
  assert.deepEqual(await all(f, "SELECT id, v FROM secrets"), [{ id: 1, v: "one" }]);
  await run(f, "INSERT INTO secrets VALUES (2, 'two')");
  await f.push();

  // The read token can bootstrap and pull...
  const r = await open("r", { authToken: READ_TOKEN });
  assert.deepEqual(await all(r, "SELECT id, v FROM secrets ORDER BY id"), [{ id: 1, v: "one" }, { id: 2, v: "two" }]);
  await run(a, "INSERT INTO secrets VALUES (3, 'three')");
  await a.push();
  assert.equal(await r.pull(), true, "read token pulls");
  assert.equal((await all(r, "SELECT * FROM secrets")).length, 3);

  // ...but not push.
  await run(r, "INSERT INTO secrets VALUES (99, 'from reader')");
  err = await rejects(r.push(), "push with the read token");
  assert.match(err.message, /status=403/, "read token push: status");
  assert.match(err.message, /may pull but not push/, "read token push: server message");
  assert.ok(await requestCount("pipeline", 403) >= 1);

  // The refused push changed nothing on the server.
  assert.equal(await a.pull(), true);
  assert.deepEqual(await all(a, "SELECT id FROM secrets ORDER BY id"), [{ id: 1 }, { id: 2 }, { id: 3 }]);
  // And the reader keeps its local row.
  assert.deepEqual(await all(r, "SELECT v FROM secrets WHERE id = 99"), [{ v: "from reader" }]);

  // A token that goes bad later: pull fails with 401, the replica stays usable.
  let tok = AUTH_TOKEN;
  const g = await open("g", { authToken: async () => tok });
  tok = "revoked";
  err = await rejects(g.pull(), "pull with a revoked token");
  assert.match(err.message, /status=401/);
  assert.equal((await all(g, "SELECT * FROM secrets")).length, 3);
  tok = AUTH_TOKEN;
  assert.equal(await g.pull(), false);

  // /metrics needs a token too.
  const res = await fetch(`${process.env.SYNCDB_URL}/metrics`);
  assert.equal(res.status, 401);
  for (const db of [a, f, r, g]) await db.close();
});
