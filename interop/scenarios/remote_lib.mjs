// Helpers for the remote-SQL scenarios (Hrana clients against syncdb serve):
// assertions, and a @tursodatabase/sync replica that checks what a pull
// brings after a transaction.
import { strict as assert } from "node:assert";
import { SERVER, dbUrl, open, all, metrics } from "./lib.mjs";

export { assert };

/** URL of database `name` as `NAME.localhost:PORT` (see localhost_dns.mjs). */
export function hostUrl(name, scheme = "http") {
  const u = new URL(SERVER);
  return `${scheme}://${name}.localhost:${u.port}`;
}

/** URL of database `name` with the path form and a trailing slash. */
export function pathUrl(name, scheme = "http") {
  return dbUrl(name).replace(/^http/, scheme) + "/";
}

/** The server's revision counter, over all databases. */
export async function revisions() {
  return (await metrics()).get("syncdb_revisions_total") ?? 0;
}

/** The error's Hrana code as a client reports it (code, or cause's code). */
export function codeOf(e) {
  return e?.code ?? e?.cause?.code;
}

/**
 * A @tursodatabase/sync replica of database `db`. check(table, want, what)
 * pulls once and compares the table's ids with want; it also returns
 * whether the pull changed anything.
 */
export async function replica(db, name = `replica-${db}`) {
  const r = await open(name, { db });
  return {
    async check(table, want, what) {
      const changed = await r.pull();
      const rows = (await all(r, `SELECT id FROM ${table} ORDER BY id`)).map((x) => Number(x.id));
      assert.deepEqual(rows, want, `${what}: the replica has ${JSON.stringify(rows)} after one pull`);
      return changed;
    },
    close: () => r.close(),
  };
}

/** Runs fn and checks that the server recorded exactly n revisions meanwhile. */
export async function expectRevisions(n, what, fn) {
  const before = await revisions();
  const r = await fn();
  const got = (await revisions()) - before;
  assert.equal(got, n, `${what}: ${got} revisions recorded, want ${n}`);
  return r;
}

/** The server process's peak resident memory in bytes (VmHWM), Linux only. */
export async function serverRSS() {
  // Anonymous memory only: the server's readers map the database file
  // (mmap_size), and mapped file pages (the OS page cache) count in VmRSS
  // and VmHWM without being the server's memory.
  const { readFile } = await import("node:fs/promises");
  const status = await readFile(`/proc/${process.env.SYNCDB_SERVER_PID}/status`, "utf8");
  return Number(/RssAnon:\s+(\d+) kB/.exec(status)[1]) * 1024;
}
