// Shared helpers for the interop scenarios. Each scenario is run by
// interop_test.go as `node scenarios/<name>.mjs` with these variables set:
//
//	SYNCDB_URL         base URL of a fresh `syncdb serve` (database "default")
//	SYNCDB_CLIENT_DIR  an empty directory for the clients' local files
//	SYNCDB_AUTH_TOKEN  read-write token, when the server was started with one
//	SYNCDB_READ_TOKEN  read-only token, when the server was started with one
//
// A scenario fails by throwing (an assert or any other error): node then exits
// non-zero and the Go test prints its output.
import { connect } from "@tursodatabase/sync";
import { join } from "node:path";

function required(name) {
  const v = process.env[name];
  if (!v) throw new Error(`environment variable ${name} is not set (run the scenarios through go test ./interop/)`);
  return v;
}

export const SERVER = required("SYNCDB_URL").replace(/\/+$/, "");
export const CLIENT_DIR = required("SYNCDB_CLIENT_DIR");
export const AUTH_TOKEN = process.env.SYNCDB_AUTH_TOKEN || undefined;
export const READ_TOKEN = process.env.SYNCDB_READ_TOKEN || undefined;

/** URL of database `name` on the server ("default" is the bare server URL). */
export function dbUrl(name = "default") {
  return name === "default" ? SERVER : `${SERVER}/db/${name}`;
}

/** Local path of client `name`. */
export function clientPath(name) {
  return join(CLIENT_DIR, `${name}.db`);
}

/**
 * Opens (bootstrapping if new) client `name` of database `db`. Extra options
 * are passed to the client's connect() unchanged.
 */
export async function open(name, { db = "default", ...opts } = {}) {
  return connect({
    path: clientPath(name),
    url: dbUrl(db),
    clientName: name,
    authToken: AUTH_TOKEN,
    ...opts,
  });
}

/** All rows of a query, as objects. */
export async function all(db, sql, ...args) {
  return (await db.prepare(sql)).all(...args);
}

/** The first row of a query. */
export async function get(db, sql, ...args) {
  return (await db.prepare(sql)).get(...args);
}

/** All rows of a query with 64-bit integers returned as BigInt. */
export async function allBig(db, sql, ...args) {
  const st = await db.prepare(sql);
  st.safeIntegers(true);
  return st.all(...args);
}

/** Runs a write statement. */
export async function run(db, sql, ...args) {
  return (await db.prepare(sql)).run(...args);
}

/**
 * Reads the server's Prometheus metrics and returns a map from
 * `name{label="v",...}` (labels sorted by name) to the value.
 */
export async function metrics() {
  const headers = {};
  const tok = AUTH_TOKEN ?? READ_TOKEN;
  if (tok) headers.Authorization = `Bearer ${tok}`;
  const res = await fetch(`${SERVER}/metrics`, { headers });
  if (res.status !== 200) throw new Error(`GET /metrics: status ${res.status}: ${await res.text()}`);
  const out = new Map();
  for (const line of (await res.text()).split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!m) continue;
    const labels = [...(m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)]
      .map(([, k, v]) => [k, v])
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const key = labels.length ? `${m[1]}{${labels.map(([k, v]) => `${k}="${v}"`).join(",")}}` : m[1];
    out.set(key, Number(m[3]));
  }
  return out;
}

/** syncdb_http_requests_total for one endpoint ("pull", "pipeline") and status code. */
export async function requestCount(endpoint, code = 200) {
  const m = await metrics();
  return m.get(`syncdb_http_requests_total{code="${code}",endpoint="${endpoint}"}`) ?? 0;
}

/** Sum of syncdb_http_requests_total over every status code of one endpoint. */
export async function requestCountAnyCode(endpoint) {
  let n = 0;
  for (const [k, v] of await metrics()) {
    if (k.startsWith("syncdb_http_requests_total{") && k.includes(`endpoint="${endpoint}"`)) n += v;
  }
  return n;
}

/**
 * A fetch wrapper for the client's `fetch` option that records every request
 * (path, headers, decoded /pull-updates body, status). It does not change anything the
 * client sends or receives.
 */
export function recordingFetch() {
  const log = [];
  const f = async (url, init) => {
    const path = new URL(url).pathname;
    const entry = { path, status: null, headers: new Headers(init?.headers ?? {}) };
    if (path.endsWith("/pull-updates")) entry.pull = decodePullRequest(init?.body ?? new Uint8Array());
    log.push(entry);
    const res = await fetch(url, init);
    entry.status = res.status;
    return res;
  };
  f.log = log;
  return f;
}

/**
 * Decodes the fields of a PullUpdatesReqProtoBody that the scenarios look at.
 * A tiny protobuf reader: varints and length-delimited fields only.
 */
export function decodePullRequest(body) {
  const b = body instanceof Uint8Array ? body : new Uint8Array(body);
  const out = { serverRevision: "", clientRevision: "", longPollTimeoutMs: 0, hasSelector: false, query: "" };
  let i = 0;
  const varint = () => {
    let v = 0n, shift = 0n;
    for (;;) {
      const c = b[i++];
      if (c === undefined) throw new Error("truncated varint");
      v |= BigInt(c & 0x7f) << shift;
      if (!(c & 0x80)) return v;
      shift += 7n;
    }
  };
  const dec = new TextDecoder();
  while (i < b.length) {
    const key = Number(varint());
    const field = key >> 3, wt = key & 7;
    if (wt === 0) {
      const v = Number(varint());
      if (field === 4) out.longPollTimeoutMs = v;
    } else if (wt === 2) {
      const n = Number(varint());
      const data = b.subarray(i, i + n);
      i += n;
      if (field === 2) out.serverRevision = dec.decode(data);
      else if (field === 3) out.clientRevision = dec.decode(data);
      else if (field === 5) out.hasSelector = true;
      else if (field === 7) out.query = dec.decode(data);
    } else {
      throw new Error(`unexpected wire type ${wt} in pull request`);
    }
  }
  return out;
}

/** Runs fn and returns [its result, elapsed milliseconds]. */
export async function timed(fn) {
  const t0 = performance.now();
  const r = await fn();
  return [r, performance.now() - t0];
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Awaits p, which must reject; returns the error. */
export async function rejects(p, what) {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error(`${what}: expected an error, but it succeeded`);
}

/** Runs the scenario body and turns an exception into exit status 1. */
export async function scenario(name, body) {
  const t0 = performance.now();
  try {
    await body();
  } catch (e) {
    console.error(`scenario ${name} FAILED:`, e);
    process.exit(1);
  }
  console.log(`scenario ${name} ok (${Math.round(performance.now() - t0)} ms)`);
  process.exit(0);
}
