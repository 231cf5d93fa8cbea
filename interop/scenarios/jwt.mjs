// Scoped, expiring JWTs (syncdb serve --auth-jwt-key-file), minted by the Go
// test with sqld's claims: a read-write token for database "app" works for
// bootstrap, push and pull; a read-only one pulls but cannot push (403); a
// token for another database and an expired token are refused.
import assert from "node:assert/strict";
import { open, all, run, scenario, rejects } from "./lib.mjs";

const env = (k) => {
  const v = process.env[k];
  assert.ok(v, `the Go test passes ${k}`);
  return v;
};

await scenario("jwt", async () => {
  const rw = env("SYNCDB_JWT_RW"), ro = env("SYNCDB_JWT_RO");
  const otherDb = env("SYNCDB_JWT_OTHER"), expired = env("SYNCDB_JWT_EXPIRED");

  const a = await open("a", { db: "app", authToken: rw });
  await a.exec("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)");
  await run(a, "INSERT INTO notes VALUES (1, 'signed')");
  await a.push();

  const r = await open("r", { db: "app", authToken: ro });
  assert.deepEqual(await all(r, "SELECT id, body FROM notes"), [{ id: 1, body: "signed" }]);
  await run(a, "INSERT INTO notes VALUES (2, 'more')");
  await a.push();
  assert.equal(await r.pull(), true, "a read-only JWT pulls");
  await run(r, "INSERT INTO notes VALUES (99, 'from reader')");
  let err = await rejects(r.push(), "push with a read-only JWT");
  assert.match(err.message, /status=403/);

  err = await rejects(open("o", { db: "app", authToken: otherDb }), "a JWT for another database");
  assert.match(err.message, /status=403/);
  assert.match(err.message, /not valid for database/);
  err = await rejects(open("e", { db: "app", authToken: expired }), "an expired JWT");
  assert.match(err.message, /status=401/);
  assert.match(err.message, /expired/);

  await a.pull();
  assert.deepEqual(await all(a, "SELECT id FROM notes ORDER BY id"), [{ id: 1 }, { id: 2 }]);
  for (const db of [a, r]) await db.close();
});
