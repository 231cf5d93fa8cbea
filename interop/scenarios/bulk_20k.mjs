// 20,000 rows inserted in one transaction are pushed in one batch, and a
// fresh client bootstraps all of them with the right contents.
import assert from "node:assert/strict";
import { open, get, run, scenario, requestCount, timed } from "./lib.mjs";

const N = 20_000;
const payload = (id) => `row-${id}-${"x".repeat(id % 97)}`;

await scenario("bulk_20k", async () => {
  const a = await open("a");
  await a.exec("CREATE TABLE bulk (id INTEGER PRIMARY KEY, payload TEXT NOT NULL, n INTEGER)");
  let wantLen = 0, wantN = 0;
  const [, insertMs] = await timed(async () => {
    await a.exec("BEGIN");
    const st = await a.prepare("INSERT INTO bulk VALUES (?, ?, ?)");
    for (let id = 1; id <= N; id++) {
      const p = payload(id);
      wantLen += Buffer.byteLength(p);
      wantN += id * 3;
      await st.run(id, p, id * 3);
    }
    await a.exec("COMMIT");
  });
  const want = { count: N, sumId: (N * (N + 1)) / 2, sumLen: wantLen, sumN: wantN };
  const agg = "SELECT count(*) AS count, sum(id) AS sumId, sum(length(payload)) AS sumLen, sum(n) AS sumN FROM bulk";
  assert.deepEqual(await get(a, agg), want, "A's own table");

  const p0 = await requestCount("pipeline");
  const [, pushMs] = await timed(() => a.push());
  assert.equal(await requestCount("pipeline") - p0, 2, "the whole transaction went in one batch (2 pipeline calls)");

  const pulls0 = await requestCount("pull");
  const [b, bootMs] = await timed(() => open("b"));
  assert.equal(await requestCount("pull") - pulls0, 1, "bootstrap is one /pull-updates");
  assert.deepEqual(await get(b, agg), want, "fresh client after bootstrap");
  // Spot checks on content, including the last row.
  for (const id of [1, 2, 97, 9999, N]) {
    assert.deepEqual(await get(b, "SELECT payload, n FROM bulk WHERE id = ?", id), { payload: payload(id), n: id * 3 });
  }
  // Content checksum over every row, not just sums.
  const digest = await get(b, "SELECT sum(length(payload) * id % 1000003) AS d FROM bulk");
  let wantDigest = 0;
  for (let id = 1; id <= N; id++) wantDigest += (Buffer.byteLength(payload(id)) * id) % 1000003;
  assert.equal(digest.d, wantDigest);

  const stats = await b.stats();
  assert.ok(stats.networkReceivedBytes > wantLen, `bootstrap received ${stats.networkReceivedBytes} bytes`);
  console.log(`insert ${Math.round(insertMs)} ms, push ${Math.round(pushMs)} ms, bootstrap ${Math.round(bootMs)} ms (${stats.networkReceivedBytes} bytes)`);
  await a.close();
  await b.close();
});
