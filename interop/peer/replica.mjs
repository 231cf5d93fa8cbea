// A @tursodatabase/sync replica for Go tests: `node peer/replica.mjs DB
// TABLE` pulls the replica of database DB (kept in SYNCDB_CLIENT_DIR
// across runs) once and prints {"changed":bool,"ids":[...]}: the ids of
// TABLE after that one pull.
import { open, all } from "../scenarios/lib.mjs";

const [db, table] = process.argv.slice(2);
const r = await open(`replica-${db}`, { db });
const changed = await r.pull();
const ids = (await all(r, `SELECT id FROM ${table} ORDER BY id`)).map((x) => Number(x.id));
await r.close();
console.log(JSON.stringify({ changed, ids }));
