// Incremental pull: open an existing replica (no network I/O) and pull once.
import { connect, args, now, since, done, measureStart, measureEnd } from "./lib.mjs";

const a = args();
const db = await connect({ path: a.path, url: a.url, clientName: "bench" });
const before = await db.stats();
await measureStart();
const t0 = now();
const changed = await db.pull();
const seconds = since(t0);
measureEnd();
const after = await db.stats();
await db.close();
if (!changed) throw new Error("pull brought no change");
done({ seconds, bytes: after.networkReceivedBytes - before.networkReceivedBytes, changed });
