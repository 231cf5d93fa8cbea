// Shared helpers of the Turso-client drivers. Each driver is run by the Go
// harness (bench/scenarios.go) as `node bench/turso/NAME.mjs --flag value
// ...`, does one measured operation with @tursodatabase/sync 0.7.2 (the copy
// installed for the interop tests, `npm install --prefix interop`), and
// prints one JSON object as its last stdout line. Times are taken inside
// the process, around the operation only (node's start-up and the loading
// of the native module are not counted), like the Go worker's.
export { connect } from "../../interop/node_modules/@tursodatabase/sync/dist/promise.js";

/** --name value pairs of the command line, as strings. */
export function args() {
  const out = {};
  const a = process.argv.slice(2);
  for (let i = 0; i < a.length; i++) {
    if (!a[i].startsWith("--")) throw new Error(`unexpected argument ${a[i]}`);
    out[a[i].slice(2)] = a[++i];
  }
  return out;
}

/** Milliseconds, monotonic. */
export const now = () => performance.now();

/** Seconds since t0 (from now()). */
export const since = (t0) => (now() - t0) / 1000;

/** Prints the result line. */
export function done(result) {
  process.stdout.write(JSON.stringify(result) + "\n");
}

/** The row both clients insert in the push benchmark (see pushRow in worker.go). */
export function pushRow(tag, id) {
  return [id, tag, `row ${String(id).padStart(10, "0")} ${"abcdefghij".repeat(9)}`];
}

/**
 * Marks the start of the measured operation for the harness, which counts
 * the requests of the operation on its shaped links: with
 * SYNCDB_BENCH_MARKERS set, prints "measure-start" and waits for the
 * harness's reply line, so that it has read its counters before the first
 * request.
 */
export async function measureStart() {
  if (!process.env.SYNCDB_BENCH_MARKERS) return;
  process.stdout.write("measure-start\n");
  await new Promise((resolve) => {
    process.stdin.once("data", () => {
      process.stdin.destroy(); // else the open pipe keeps node running
      resolve();
    });
  });
}

/** Marks the end of the first part of the measured operation. */
export function measureMark() {
  if (process.env.SYNCDB_BENCH_MARKERS) process.stdout.write("measure-mark\n");
}

/** Marks the end of the measured operation. */
export function measureEnd() {
  if (process.env.SYNCDB_BENCH_MARKERS) process.stdout.write("measure-end\n");
}
