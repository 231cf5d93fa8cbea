// Every SQLite value type survives push (Hrana JSON) and pull (pages)
// exactly: 64-bit integer extremes, floats, unicode text, a 300 KB blob,
// NULL, the empty string and the empty blob.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { open, allBig, run, scenario } from "./lib.mjs";

const bigBlob = randomBytes(300 * 1024);

// [id, value, expected typeof() in SQLite, optional SQL literal]. Integers
// are BigInt so that the extremes are exact; the rows are read back in
// safeIntegers mode. A JS number with an integral value binds as an INTEGER,
// so integral REALs are written as SQL literals.
const values = [
  [1, -9223372036854775808n, "integer"],
  [2, 9223372036854775807n, "integer"],
  [3, 0n, "integer"],
  [4, -1n, "integer"],
  [5, 9007199254740993n, "integer"], // 2^53 + 1: not representable as a double
  [6, 0.1, "real"],
  [7, 1e308, "real"],
  [8, -1.5, "real"],
  [9, 2.0, "real", "2.0"], // integral float must stay a REAL
  [22, -1e20, "real", "-1e20"],
  [10, 5e-324, "real"], // smallest subnormal
  [11, -0.0, "real", "-0.0"],
  [12, "😀 👩‍👩‍👧 🏳️‍🌈", "text"], // emoji incl. ZWJ sequences and astral plane
  [13, "中文字符 日本語 한국어", "text"], // CJK
  [14, "e\u0301 a\u0308 \u0915\u094d\u0937", "text"], // combining marks (NFD), Devanagari conjunct
  [15, "quote ' \" backslash \\ newline \n tab \t", "text"],
  [16, bigBlob, "blob"],
  [17, null, "null"],
  [18, "", "text"],
  [19, Buffer.alloc(0), "blob"],
  [20, Buffer.from([0, 255, 0, 1]), "blob"],
  [21, "x".repeat(100_000), "text"], // text spilling into overflow pages
  [23, "nul \u0000 inside", "text"], // embedded NUL character
];

await scenario("types", async () => {
  const a = await open("a");
  await a.exec("CREATE TABLE v (id INTEGER PRIMARY KEY, val)"); // no affinity: values keep their type
  await insertAll(a, "v");

  // Sanity: A itself stores what we think it stores.
  await check(a, "A (local)");
  await a.push();

  const b = await open("b");
  await check(b, "B (bootstrap)");

  // The same values again through an incremental pull instead of a bootstrap.
  await a.exec("CREATE TABLE v2 (id INTEGER PRIMARY KEY, val)");
  await insertAll(a, "v2");
  await a.push();
  assert.equal(await b.pull(), true);
  await check(b, "B (incremental pull)", "v2");

  // And back: B pushes the values it received (re-encoded by B's client),
  // A pulls them.
  await b.exec("CREATE TABLE v3 (id INTEGER PRIMARY KEY, val)");
  await b.exec("INSERT INTO v3 SELECT id, val FROM v2");
  await b.push();
  assert.equal(await a.pull(), true);
  await check(a, "A (pulled from B's push)", "v3");

  await a.close();
  await b.close();
});

async function insertAll(db, table) {
  for (const [id, val, , literal] of values) {
    if (literal) await run(db, `INSERT INTO ${table} VALUES (?, ${literal})`, id);
    else await run(db, `INSERT INTO ${table} VALUES (?, ?)`, id, val);
  }
}

async function check(db, who, table = "v") {
  const rows = await allBig(db, `SELECT id, val, typeof(val) AS t FROM ${table} ORDER BY id`);
  const sorted = [...values].sort((x, y) => x[0] - y[0]);
  assert.equal(rows.length, sorted.length, `${who}: row count`);
  for (let i = 0; i < sorted.length; i++) {
    const [id, want, wantType] = sorted[i];
    const row = rows[i];
    const msg = `${who}: ${table} row ${id}`;
    assert.equal(row.id, BigInt(id), msg);
    assert.equal(row.t, wantType, `${msg}: typeof`);
    if (wantType === "blob") {
      assert.ok(Buffer.isBuffer(row.val) || row.val instanceof Uint8Array, `${msg}: blob is a ${typeof row.val}`);
      assert.equal(row.val.length, want.length, `${msg}: blob length`);
      assert.ok(Buffer.from(row.val).equals(want), `${msg}: blob contents`);
    } else if (wantType === "real") {
      assert.ok(Object.is(row.val, want), `${msg}: got ${row.val}, want ${want}`);
    } else {
      assert.equal(row.val, want, msg);
    }
  }
}
