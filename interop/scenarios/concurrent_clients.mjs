// Many clients pushing and pulling the same database at the same time
// (one of them in small batches with pushOperationsThreshold, one
// long-polling) all converge on identical contents and revision.
import assert from "node:assert/strict";
import { open, all, get, run, scenario, requestCountAnyCode, requestCount } from "./lib.mjs";

const CLIENTS = 6, ROUNDS = 3, ROWS = 30;
const TOTAL = CLIENTS * ROUNDS * ROWS;

await scenario("concurrent_clients", async () => {
  const a = await open("setup");
  await a.exec("CREATE TABLE log (id INTEGER PRIMARY KEY, client INTEGER, round INTEGER, v TEXT)");
  await a.exec("CREATE TABLE status (client INTEGER PRIMARY KEY, round INTEGER)");
  await a.push();

  const clients = await Promise.all(
    Array.from({ length: CLIENTS }, (_, c) => open(`c${c}`, c === 0 ? { pushOperationsThreshold: 5 } : {})),
  );
  // A watcher long-polls until it has seen every row.
  const watcher = await open("watcher", { longPollTimeoutMs: 5000 });
  const watching = (async () => {
    let pulls = 0;
    while ((await get(watcher, "SELECT count(*) AS n FROM log")).n < TOTAL) {
      assert.ok(++pulls < 200, "watcher did not converge");
      await watcher.pull();
    }
    return pulls;
  })();

  const pipeline0 = await requestCount("pipeline");
  for (let round = 0; round < ROUNDS; round++) {
    await Promise.all(clients.map(async (db, c) => {
      // Client 0 writes row by row (autocommit), the others in one
      // transaction each.
      if (c !== 0) await db.exec("BEGIN");
      for (let i = 0; i < ROWS; i++) {
        const id = (c * ROUNDS + round) * ROWS + i + 1;
        await run(db, "INSERT INTO log VALUES (?, ?, ?, ?)", id, c, round, `c${c}-r${round}-${i}`);
      }
      await run(db, "INSERT INTO status VALUES (?, ?) ON CONFLICT (client) DO UPDATE SET round = excluded.round", c, round);
      if (c !== 0) await db.exec("COMMIT");
      await db.push();
    }));
    await Promise.all(clients.map((db) => db.pull()));
  }
  // Client 0 pushed 31 single-row transactions per round with a threshold
  // of 5 operations: the client splits that into several batches (at
  // transaction boundaries), so more than 2 pipeline calls per push.
  const pipelineCalls = (await requestCount("pipeline")) - pipeline0;
  assert.ok(pipelineCalls > 2 * CLIENTS * ROUNDS, `pushOperationsThreshold split the pushes (${pipelineCalls} pipeline calls)`);

  // Everyone pulls once more (the last pushes of others may be newer).
  await Promise.all(clients.map((db) => db.pull()));
  const want = await all(clients[0], "SELECT id, client, round, v FROM log ORDER BY id");
  assert.equal(want.length, TOTAL);
  assert.deepEqual(await all(clients[0], "SELECT client, round FROM status ORDER BY client"),
    Array.from({ length: CLIENTS }, (_, c) => ({ client: c, round: ROUNDS - 1 })));
  const rev = (await clients[0].stats()).revision;
  for (const [c, db] of clients.entries()) {
    assert.deepEqual(await all(db, "SELECT id, client, round, v FROM log ORDER BY id"), want, `client ${c} rows`);
    assert.equal((await db.stats()).revision, rev, `client ${c} revision`);
  }
  const pulls = await watching;
  assert.deepEqual(await all(watcher, "SELECT id, client, round, v FROM log ORDER BY id"), want, "watcher rows");
  console.log(`watcher converged after ${pulls} long polls`);

  const total = (await requestCountAnyCode("pull")) + (await requestCountAnyCode("pipeline"));
  const ok = (await requestCount("pull")) + (await requestCount("pipeline"));
  assert.equal(ok, total, "no request failed");
  for (const db of [a, watcher, ...clients]) await db.close();
});
