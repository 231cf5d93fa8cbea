// The JS side of TestGoAndJSShareADatabase: each run reopens (or first
// bootstraps) the JS replica and performs one step, named by argv[2]. It
// prints JSON results on stdout and fails by throwing.
import assert from "node:assert/strict";
import { open, all, allBig, run } from "../scenarios/lib.mjs";

const step = process.argv[2];
const db = await open("js");
const out = {};

// Values the JS client writes, checked exactly by the Go side.
const bigBlob = new Uint8Array(300 * 1024).map((_, i) => (i * 7) & 0xff);

switch (step) {
  case "read-go-values": {
    // Rows written by the Go client: exact values and storage classes.
    const rows = await allBig(db, "SELECT id, typeof(v) AS t, v FROM vals ORDER BY id");
    out.rows = rows.map((r) => ({
      id: Number(r.id), t: r.t,
      v: r.v instanceof Uint8Array || Buffer.isBuffer(r.v) ? { blob: Buffer.from(r.v).toString("hex").slice(0, 64), len: r.v.length } :
        typeof r.v === "bigint" ? r.v.toString() : r.v,
    }));
    break;
  }
  case "write-js-values": {
    await run(db, "INSERT INTO vals VALUES (101, 9223372036854775807), (102, -9223372036854775808), (103, 2.5), (104, 'ünï 🌍 ç'), (105, NULL), (106, ?), (107, x''), (108, ''), (109, 1e308)", bigBlob);
    await run(db, "DELETE FROM vals WHERE id = 1");
    await run(db, "UPDATE vals SET v = 'changed by js' WHERE id = 2");
    await db.push();
    break;
  }
  case "pull":
    out.changed = await db.pull();
    break;
  case "push":
    await db.push();
    break;
  case "lww-write":
    await run(db, "UPDATE vals SET v = 'js wins' WHERE id = 3");
    break;
  case "schema":
    await db.exec("ALTER TABLE vals ADD COLUMN note TEXT");
    await db.exec("CREATE INDEX vals_note ON vals(note)");
    await run(db, "UPDATE vals SET note = 'from js' WHERE id = 3");
    await db.push();
    break;
  case "rebase-push":
    await run(db, "INSERT INTO vals(id, v) VALUES (200, 'js pushed while go had a local change')");
    await db.push();
    break;
  case "notes-insert":
    // A note with an id SQLite assigns, while the Go replica has one too.
    await db.pull();
    await run(db, "INSERT INTO notes(body) VALUES ('from js')");
    await db.push();
    break;
  case "notes-add-column":
    // A column added and filled in row 1, while the Go replica has not
    // pulled it.
    await db.pull();
    await db.exec("ALTER TABLE notes ADD COLUMN note TEXT");
    await run(db, "UPDATE notes SET note = 'from js' WHERE id = 1");
    await db.push();
    break;
  case "notes-note-dump":
    await db.pull();
    out.rows = (await all(db, "SELECT id, body, note FROM notes ORDER BY id")).map((r) => `${r.id}|${r.body}|${r.note}`);
    break;
  case "notes-dump":
    await db.pull();
    out.rows = (await all(db, "SELECT id, body FROM notes ORDER BY id")).map((r) => `${r.id}|${r.body}`);
    break;
  case "dump":
    out.rows = (await all(db, "SELECT * FROM vals ORDER BY id")).map((r) => {
      for (const k of Object.keys(r)) {
        if (r[k] instanceof Uint8Array || Buffer.isBuffer(r[k])) r[k] = `blob:${r[k].length}`;
      }
      return r;
    });
    out.schema = (await all(db, "SELECT type, name FROM sqlite_schema WHERE name IN ('vals', 'vals_note', 'go_table', 'go_index') ORDER BY name")).map((r) => `${r.type}:${r.name}`);
    break;
  default:
    throw new Error(`unknown step ${step}`);
}
db.close();
console.log(JSON.stringify(out));
