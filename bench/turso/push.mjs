// Push: bootstrap a fresh replica (not measured), insert --rows rows in
// --txs transactions (measured as local_seconds), then push (measured).
import { connect, args, now, since, done, pushRow, measureStart, measureEnd } from "./lib.mjs";

const a = args();
const rows = Number(a.rows), txs = Number(a.txs), start = Number(a.start);
const db = await connect({ path: a.path, url: a.url, clientName: "bench" });
const st = await db.prepare(`INSERT INTO ${a.table}(id, who, v) VALUES (?, ?, ?)`);
const per = rows / txs;
let t0 = now();
for (let i = 0; i < txs; i++) {
  await db.exec("BEGIN");
  for (let j = 0; j < per; j++) await st.run(...pushRow(a.tag, start + i * per + j));
  await db.exec("COMMIT");
}
const local_seconds = since(t0);
const before = await db.stats();
await measureStart();
t0 = now();
await db.push();
const seconds = since(t0);
measureEnd();
const after = await db.stats();
await db.close();
done({ seconds, local_seconds, bytes: after.networkSentBytes - before.networkSentBytes, changes: before.cdcOperations });
