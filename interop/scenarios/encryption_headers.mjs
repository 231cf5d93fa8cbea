// remoteEncryption: the client sends x-turso-encryption-key/-cipher on every
// request; the server accepts and ignores them (it stores plaintext), so
// clients with and without the option share the same data.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { open, all, run, scenario, recordingFetch, requestCountAnyCode, requestCount } from "./lib.mjs";

await scenario("encryption_headers", async () => {
  const key = randomBytes(32).toString("base64");
  const remoteEncryption = { key, cipher: "aes256gcm" };
  const rec = recordingFetch();

  const e1 = await open("e1", { remoteEncryption, fetch: rec });
  await e1.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");
  await run(e1, "INSERT INTO t VALUES (1, 'sent with encryption headers')");
  await e1.push();

  const e2 = await open("e2", { remoteEncryption, fetch: rec });
  assert.deepEqual(await all(e2, "SELECT id, v FROM t"), [{ id: 1, v: "sent with encryption headers" }]);
  await run(e2, "INSERT INTO t VALUES (2, 'e2')");
  await e2.push();
  assert.equal(await e1.pull(), true);
  assert.deepEqual(await all(e1, "SELECT id FROM t ORDER BY id"), [{ id: 1 }, { id: 2 }]);

  // The headers really were sent, on both endpoints.
  assert.ok(rec.log.some((r) => r.path.endsWith("/pull-updates")));
  assert.ok(rec.log.some((r) => r.path.endsWith("/v2/pipeline")));
  for (const r of rec.log) {
    assert.equal(r.headers.get("x-turso-encryption-key"), key, `${r.path}: key header`);
    assert.equal(r.headers.get("x-turso-encryption-cipher"), "aes256gcm", `${r.path}: cipher header`);
    assert.equal(r.status, 200, `${r.path}: status`);
  }

  // A client without the option reads the same plaintext data, and a client
  // with a different key and cipher is not refused either.
  const plain = await open("plain");
  assert.deepEqual(await all(plain, "SELECT id, v FROM t ORDER BY id"), [
    { id: 1, v: "sent with encryption headers" },
    { id: 2, v: "e2" },
  ]);
  const other = await open("other", { remoteEncryption: { key: randomBytes(16).toString("base64"), cipher: "aegis128l" } });
  assert.equal((await all(other, "SELECT * FROM t")).length, 2);
  await run(other, "INSERT INTO t VALUES (3, 'other key')");
  await other.push();
  assert.equal(await plain.pull(), true);
  assert.equal((await all(plain, "SELECT * FROM t")).length, 3);

  const total = (await requestCountAnyCode("pull")) + (await requestCountAnyCode("pipeline"));
  const ok = (await requestCount("pull")) + (await requestCount("pipeline"));
  assert.equal(ok, total, "no request was refused");
  for (const db of [e1, e2, plain, other]) await db.close();
});
