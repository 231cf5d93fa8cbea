// Repro of a CLIENT bug in @tursodatabase/sync 0.7.2 (not run by go test):
// a partial-sync replica spins at 100% CPU forever in pull() after another
// client deleted rows on the remote, leaving free pages that the partial
// replica never loaded.
//
// Run against any server:
//   go run ./cmd/syncdb serve --addr 127.0.0.1:8080 --data /tmp/hang-data &
//   cd interop && SYNCDB_URL=http://127.0.0.1:8080 SYNCDB_CLIENT_DIR=$(mktemp -d) node repro/partial_delete_hang.mjs
//
// With RUST tracing (TRACE=debug) the last client lines before the spin are
//   btree_create:allocate_page:...: read_page(page=96): is_hole=true, creating generator
// followed by endless `normal_step` lines and no further HTTP request: the
// client tries to lazily load a free page while allocating a page during
// pull's apply step, and never issues the request.
import { open, run, get, all } from "../scenarios/lib.mjs";

const body = (id) => `${id}:`.padEnd(3000, "abcdefgh"[id % 8]); // one row per page
const a = await open("a");
await a.exec("CREATE TABLE pages (id INTEGER PRIMARY KEY, body TEXT NOT NULL)");
await a.exec("BEGIN");
for (let id = 1; id <= 100; id++) await run(a, "INSERT INTO pages VALUES (?, ?)", id, body(id));
await a.exec("COMMIT");
await a.push();

const p = await open("p", {
  partialSyncExperimental: { bootstrapStrategy: { kind: "prefix", length: 8192 }, segmentSize: 4096, prefetch: false },
  tracing: process.env.TRACE,
});
console.log("partial replica reads", (await all(p, "SELECT id FROM pages WHERE id BETWEEN 50 AND 55")).length, "rows");

await run(a, "DELETE FROM pages WHERE id > 90"); // frees the last pages on the remote
await a.push();

const watchdog = setTimeout(() => {
  console.log("BUG: partial replica's pull() did not return within 15 s (the client is spinning)");
  // process.exit() would wait for the spinning native thread forever.
  process.kill(process.pid, "SIGKILL");
}, 15_000);
console.log("pull returned", await p.pull());
clearTimeout(watchdog);
console.log("rows", await get(p, "SELECT count(*) AS n FROM pages"));
process.exit(0);
