// Bootstrap: connect() on a new path downloads the whole database.
import { connect, args, now, since, done, measureStart, measureEnd } from "./lib.mjs";

const a = args();
await measureStart();
const t0 = now();
const db = await connect({ path: a.path, url: a.url, clientName: "bench" });
const seconds = since(t0);
measureEnd();
const st = await db.stats();
const row = await (await db.prepare(`SELECT max(id) AS m FROM ${a.table}`)).get();
await db.close();
done({ seconds, bytes: st.networkReceivedBytes, max_id: row.m });
