// Partial-sync cold start: a prefix bootstrap, then one point lookup.
import { connect, args, now, since, done, measureStart, measureMark, measureEnd } from "./lib.mjs";

const a = args();
const id = Number(a.id);
await measureStart();
const t0 = now();
const db = await connect({
  path: a.path, url: a.url, clientName: "bench",
  partialSyncExperimental: {
    bootstrapStrategy: { kind: "prefix", length: Number(a.prefix) },
    segmentSize: Number(a.segment),
    prefetch: false,
  },
});
const open_seconds = since(t0);
measureMark();
const st = await db.stats();
const t1 = now();
const row = await (await db.prepare(`SELECT k FROM ${a.table} WHERE id = ?`)).get(id);
const lookup_seconds = since(t1);
measureEnd();
const want = `key-${String(id).padStart(10, "0")}`;
if (!row || row.k !== want) throw new Error(`lookup of id ${id}: ${JSON.stringify(row)}, want ${want}`);
const st2 = await db.stats();
await db.close();
done({
  seconds: open_seconds + lookup_seconds, open_seconds, lookup_seconds,
  bytes: st2.networkReceivedBytes, open_bytes: st.networkReceivedBytes,
});
