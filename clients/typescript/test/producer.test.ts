/** The producer: jobs it writes follow the protocol, are atomic, and degrade to the spool as the Python producer's do. */
import { tableFromIPC, tableToIPC, vectorFromArray, Table, Int8, Utf8, TimestampSecond } from "apache-arrow";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { beforeEach, describe, test } from "node:test";
import { readParquet } from "parquet-wasm";
import {
  BusUnavailable, job, KindError, ManifestError, SchemaMismatch, flush, spooledJobs, submit,
  type Manifest, type Row,
} from "artifact-bus";
import { cleanEnv, ls, tempDir } from "./helpers.js";
import { validateManifest, verifyJob } from "./verify.js";

const rows: Row[] = [
  { ts: 1_704_205_800_123_456n, symbol: "AAA", side: 1, qty: 10n, price: 101.25, note: null },
  { ts: 1_704_205_860_000_000n, symbol: "BBB", side: -1, qty: 3_000_000_000_000n, price: null, note: "x" },
];
const types = { ts: "timestamp[us]", side: "int8", note: "string" };

let spool: string;
let root: string;
beforeEach(() => {
  spool = cleanEnv();
  root = path.join(tempDir(), "bus");
});

function manifestOf(dir: string): Manifest {
  return JSON.parse(fs.readFileSync(path.join(dir, "manifest.json"), "utf8")) as Manifest;
}

function spoolOf(r: string): string {
  return path.join(spool, createHash("sha1").update(r).digest("hex").slice(0, 16));
}

describe("submit", () => {
  test("commits one job: Parquet, manifest.json, COMMIT, nothing left in .tmp", async () => {
    const r = await submit(rows, { kind: "fills", runId: "sim-001", producer: "test", meta: { a: 1 }, key: "k1", root, types });
    assert.equal(r.status, "committed");
    assert.equal(r.path, path.join(root, "inbox", r.jobId));
    assert.deepEqual(ls(path.join(root, "inbox")), [r.jobId]);
    assert.deepEqual(ls(path.join(root, "inbox", ".tmp")), []);
    assert.deepEqual(ls(r.path), ["COMMIT", "fills.parquet", "manifest.json"]);
    const m = manifestOf(r.path);
    assert.ok(validateManifest(m), JSON.stringify(validateManifest.errors));
    verifyJob(r.path);
    assert.equal(m.protocol, 1);
    assert.equal(m.run_id, "sim-001");
    assert.equal(m.producer, "test");
    assert.equal(m.key, "k1");
    assert.deepEqual(m.meta, { a: 1 });
    assert.deepEqual(m.artifacts[0]?.schema.fields, [
      { name: "ts", type: "timestamp[us]", nullable: true },
      { name: "symbol", type: "string", nullable: true },
      { name: "side", type: "int8", nullable: true },
      { name: "qty", type: "int64", nullable: true },
      { name: "price", type: "double", nullable: true },
      { name: "note", type: "string", nullable: true },
    ]);
    assert.deepEqual(r.artifacts, [{ name: "fills", kind: "fills", rows: 2 }]);
  });

  test("lineage says where the job came from", async () => {
    const r = await submit(rows, { kind: "fills", root, types });
    const l = manifestOf(r.path).lineage;
    assert.equal(l.language, "typescript");
    assert.equal(l.node, process.versions.node);
    assert.equal(l.pid, process.pid);
    assert.equal(typeof l.host, "string");
    assert.ok("git_commit" in l && "user" in l && "cwd" in l);
    assert.ok(l.packages["apache-arrow"] && l.packages["parquet-wasm"] && l.packages["artifact-bus"]);
  });

  test("the data reads back with the same values", async () => {
    const r = await submit(rows, { kind: "fills", root, types: { ...types, symbol: "dictionary<values=string, indices=int8, ordered=0>" } });
    const t = tableFromIPC(readParquet(fs.readFileSync(path.join(r.path, "fills.parquet"))).intoIPCStream());
    assert.equal(t.numRows, 2);
    assert.deepEqual([...t.getChild("ts")!.toArray()], [1_704_205_800_123_456n, 1_704_205_860_000_000n]);
    assert.deepEqual([...t.getChild("symbol")!], ["AAA", "BBB"]);
    assert.deepEqual([...t.getChild("qty")!], [10n, 3_000_000_000_000n]);
    assert.deepEqual([...t.getChild("price")!], [101.25, null]);
    assert.equal(String(manifestOf(r.path).artifacts[0]?.schema.fields[1]?.type), "dictionary<values=string, indices=int8, ordered=0>");
  });

  test("accepts columns, typed arrays, Arrow tables and Arrow IPC bytes", async () => {
    const cols = { x: Float64Array.from([1, 2]), n: BigInt64Array.from([1n, 2n]), s: ["a", null], d: [new Date(0), null] };
    const table = new Table({ side: vectorFromArray([1, -1], new Int8()), s: vectorFromArray(["a", "b"], new Utf8()) });
    for (const data of [cols, table, tableToIPC(table, "stream")]) {
      const r = await submit(data, { kind: "things", root });
      verifyJob(r.path);
    }
    const types = ls(path.join(root, "inbox")).map((id) => manifestOf(path.join(root, "inbox", id)).artifacts[0]?.schema.fields.map((f) => f.type));
    assert.deepEqual(types, [["double", "int64", "string", "timestamp[us]"], ["int8", "string"], ["int8", "string"]]);
  });

  test("refuses what the bus cannot carry faithfully, before writing anything", async () => {
    const bad: [unknown, object, new (...a: never[]) => Error][] = [
      [rows, { kind: "Fills" }, KindError],
      [rows, { kind: "fills", types: { ...types, qty: "int32" } }, SchemaMismatch], // 3e12 does not fit
      [[{ a: 1 }, { a: "x" }], { kind: "t" }, SchemaMismatch], // mixed types
      [[{ a: null }], { kind: "t" }, SchemaMismatch], // only nulls: the type is unknown
      [[{ _job_id: "x" }], { kind: "t" }, SchemaMismatch], // reserved for the bus
      [[{ _RUN_ID: "x" }], { kind: "t" }, SchemaMismatch],
      [[{ t: 1 }], { kind: "t", types: { t: "timestamp[s]" } }, SchemaMismatch], // read back as int64
      [new Table({ t: vectorFromArray([1000], new TimestampSecond()) }), { kind: "t" }, SchemaMismatch],
      [{ a: [1] }, { kind: "t", types: { b: "int64" } }, SchemaMismatch], // a type for a missing column
      [[{ a: 1 }], { kind: "t", types: { a: "decimal" } }, SchemaMismatch],
      [[{ a: null }], { kind: "t", types: { a: "int64 not null" } }, SchemaMismatch],
      ["/some/file.parquet", { kind: "t" }, ManifestError],
      [rows, { kind: "fills", types, name: "../x" }, ManifestError],
      [rows, { kind: "fills", types, runId: "x".repeat(257) }, ManifestError],
      [rows, { kind: "fills", types, key: "" }, ManifestError],
    ];
    for (const [data, opts, cls] of bad) {
      await assert.rejects(submit(data as Row[], { root, ...opts } as never), cls, JSON.stringify(opts));
    }
    assert.deepEqual(ls(path.join(root, "inbox")), []);
    assert.deepEqual(ls(path.join(root, "inbox", ".tmp")), []);
  });

  test("the root comes from the option, then ARTIFACT_BUS_ROOT", async () => {
    const envRoot = path.join(tempDir(), "env-bus");
    process.env["ARTIFACT_BUS_ROOT"] = envRoot;
    const a = await submit(rows, { kind: "fills", types });
    const b = await submit(rows, { kind: "fills", types, root });
    assert.equal(path.dirname(path.dirname(a.path)), envRoot);
    assert.equal(path.dirname(path.dirname(b.path)), root);
  });
});

describe("job", () => {
  test("several artifacts in one atomic job, named kind, kind-2…", async () => {
    const r = await job({ root, runId: "sim-001" }, (j) => {
      j.add("fills", rows, { types });
      j.add("events", [{ e: "start" }]);
      j.add("events", [{ e: "end" }]);
      j.add("events", [{ e: "x" }], { name: "extra" });
    });
    assert.deepEqual(r.artifacts.map((a) => a.name), ["fills", "events", "events-2", "extra"]);
    assert.deepEqual(ls(r.path), ["COMMIT", "events-2.parquet", "events.parquet", "extra.parquet", "fills.parquet", "manifest.json"]);
    verifyJob(r.path);
  });

  test("a job whose build throws leaves nothing in the inbox", async () => {
    await assert.rejects(
      job({ root }, (j) => {
        j.add("fills", rows, { types });
        j.add("events", [{ e: "start" }]);
        throw new Error("simulation crashed");
      }),
      /simulation crashed/,
    );
    await assert.rejects(
      job({ root }, async (j) => {
        j.add("fills", rows, { types });
        await new Promise((resolve) => setTimeout(resolve, 5));
        j.add("events", [{ a: 1 }, { a: "mixed" }]); // refused: nothing of the job stays
      }),
      SchemaMismatch,
    );
    assert.deepEqual(ls(path.join(root, "inbox")), []);
    assert.deepEqual(ls(path.join(root, "inbox", ".tmp")), []);
    assert.deepEqual(ls(spool), []);
  });

  test("by hand: add, then commit or abort; an empty job cannot commit", async () => {
    const j = job({ root });
    j.add("fills", rows, { types });
    assert.deepEqual(ls(path.join(root, "inbox")), []); // invisible until the commit
    const r = await j.commit();
    assert.deepEqual(await j.commit(), r);
    assert.throws(() => j.add("fills", rows, { types }), ManifestError);
    const k = job({ root });
    k.add("fills", rows, { types });
    k.abort();
    assert.deepEqual(ls(path.join(root, "inbox", ".tmp")), []);
    await assert.rejects(k.commit(), ManifestError);
    await assert.rejects(job({ root }).commit(), ManifestError);
    assert.deepEqual(ls(path.join(root, "inbox")), [r.jobId]);
  });
});

describe("when the bus is unavailable", () => {
  test("a named root whose parent folder is missing spools the job, and flush moves it in later", async () => {
    const mount = path.join(tempDir(), "mnt");
    const missing = path.join(mount, "bus"); // the volume 'mnt' is not mounted
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on("warning", onWarning);
    const r = await submit(rows, { kind: "fills", root: missing, types });
    await new Promise((resolve) => setImmediate(resolve));
    process.off("warning", onWarning);
    assert.equal(r.status, "spooled");
    const sd = spoolOf(missing);
    assert.equal(r.path, path.join(sd, "jobs", r.jobId));
    assert.equal(fs.readFileSync(path.join(sd, "root.txt"), "utf8"), missing);
    assert.ok(!fs.existsSync(mount), "nothing may be written where the volume should be");
    assert.deepEqual(warnings, ["SpooledWarning"]);
    verifyJob(r.path);
    assert.deepEqual(spooledJobs({ root: missing }), [r.jobId]);
    await assert.rejects(flush({ root: missing }), BusUnavailable); // still unavailable: the job stays
    assert.deepEqual(spooledJobs({ root: missing }), [r.jobId]);

    fs.mkdirSync(mount); // the volume is back
    assert.deepEqual(await flush({ root: missing }), [r.jobId]);
    assert.deepEqual(spooledJobs({ root: missing }), []);
    assert.deepEqual(ls(path.join(missing, "inbox")), [r.jobId]);
    verifyJob(path.join(missing, "inbox", r.jobId));
  });

  test("the next successful submit flushes the spool", async () => {
    const mount = path.join(tempDir(), "mnt");
    const missing = path.join(mount, "bus");
    const a = await submit(rows, { kind: "fills", root: missing, types });
    assert.equal(a.status, "spooled");
    fs.mkdirSync(mount);
    const b = await submit(rows, { kind: "fills", root: missing, types });
    assert.equal(b.status, "committed");
    assert.deepEqual(ls(path.join(missing, "inbox")), [a.jobId, b.jobId].sort());
    assert.deepEqual(spooledJobs({ root: missing }), []);
  });

  test("a required bus throws instead, and writes nothing anywhere", async () => {
    const missing = path.join(tempDir(), "mnt", "bus");
    await assert.rejects(submit(rows, { kind: "fills", root: missing, types, required: true }), BusUnavailable);
    process.env["ARTIFACT_BUS_REQUIRED"] = "1";
    await assert.rejects(job({ root: missing }, (j) => void j.add("fills", rows, { types })), BusUnavailable);
    assert.deepEqual(ls(spool), []);
    assert.ok(!fs.existsSync(missing));
  });

  test("a root that is a file (not a folder) spools", async () => {
    const file = path.join(tempDir(), "bus");
    fs.writeFileSync(file, "not a folder");
    const r = await submit(rows, { kind: "fills", root: file, types });
    assert.equal(r.status, "spooled");
    assert.ok(r.path.startsWith(spoolOf(file)));
  });
});
