// Long poll: a pull with longPollTimeoutMs waits on the server and returns
// as soon as another client pushes; with no change it returns false after
// about its timeout.
import assert from "node:assert/strict";
import { open, all, run, scenario, sleep, timed, metrics, recordingFetch } from "./lib.mjs";

await scenario("long_poll", async () => {
  const a = await open("a");
  await a.exec("CREATE TABLE ev (id INTEGER PRIMARY KEY, what TEXT)");
  await a.push();

  const rec = recordingFetch();
  const b = await open("b", { longPollTimeoutMs: 10_000, fetch: rec });
  assert.deepEqual(await all(b, "SELECT * FROM ev"), []);

  // B waits; A pushes after ~1 s, once B's request is waiting on the server.
  const t0 = performance.now();
  let pushStart = 0, pushEnd = 0;
  const pushed = (async () => {
    await sleep(1000);
    for (let i = 0; (await metrics()).get("syncdb_long_poll_waiters") !== 1; i++) {
      assert.ok(i < 100, "B's long poll never showed up as a waiter on the server");
      await sleep(50);
    }
    pushStart = performance.now() - t0;
    await run(a, "INSERT INTO ev VALUES (1, 'wake up')");
    await a.push();
    pushEnd = performance.now() - t0;
  })();
  const [changed, ms] = await timed(() => b.pull());
  await pushed;
  assert.equal(changed, true, "long poll returned the change");
  assert.ok(ms >= pushStart, `pull returned after ${ms} ms, before A's push started at ${pushStart} ms`);
  assert.ok(ms < pushEnd + 2000, `pull returned ${ms - pushEnd} ms after A's push finished: it should be woken at once`);
  assert.ok(ms < 8000, `pull took ${ms} ms: that is close to the 10 s timeout, not a wake-up`);
  assert.deepEqual(await all(b, "SELECT id, what FROM ev"), [{ id: 1, what: "wake up" }]);
  const lp = rec.log.filter((r) => r.pull?.longPollTimeoutMs === 10_000);
  assert.equal(lp.length, 1, "the client sent long_poll_timeout_ms");
  assert.equal(lp[0].status, 200);
  console.log(`woken after ${Math.round(ms)} ms (A pushed between ${Math.round(pushStart)} and ${Math.round(pushEnd)} ms)`);
  await b.close();

  // No change: the long poll times out and pull() returns false.
  const c = await open("b", { longPollTimeoutMs: 1500 });
  const [changed2, ms2] = await timed(() => c.pull());
  assert.equal(changed2, false, "nothing changed");
  assert.ok(ms2 >= 1400, `empty long poll returned after ${ms2} ms, before its 1500 ms timeout`);
  assert.ok(ms2 < 4500, `empty long poll took ${ms2} ms for a 1500 ms timeout`);
  assert.equal((await metrics()).get("syncdb_long_poll_waiters"), 0);
  console.log(`empty long poll returned after ${Math.round(ms2)} ms`);

  // A waiting pull is woken by a push to the same database only: a push to
  // another database does not wake it.
  const other = await open("other", { db: "other" });
  await other.exec("CREATE TABLE x (a)");
  const wake = (async () => {
    await sleep(300);
    await other.push();
  })();
  const [changed3, ms3] = await timed(() => c.pull());
  await wake;
  assert.equal(changed3, false, "a push to another database is not a change");
  assert.ok(ms3 >= 1400, `woken after ${ms3} ms by another database's push`);
  for (const db of [a, c, other]) await db.close();
});
