/** Submit-side limits: what the writer would reject is refused before anything is committed, naming the field. */
import { Field, Float64, Struct, Table, vectorFromArray } from "apache-arrow";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { beforeEach, describe, mock, test } from "node:test";
import {
  InvalidText, job, JobIdError, jobMillis, ManifestError, ManifestTooLarge, MAX_MANIFEST_BYTES, SchemaMismatch, submit,
  type Manifest,
} from "artifact-bus";
import { cleanEnv, ls, tempDir } from "./helpers.js";
import { verifyJob } from "./verify.js";

let root: string;
let spool: string;
beforeEach(() => {
  spool = cleanEnv();
  root = path.join(tempDir(), "bus");
});

const rows = [{ x: 1.5, s: "a" }];

/** Nothing of a refused job anywhere: inbox, its .tmp, the spool. */
function nothingWritten(): void {
  assert.deepEqual(ls(path.join(root, "inbox")), []);
  assert.deepEqual(ls(path.join(root, "inbox", ".tmp")), []);
  assert.deepEqual(ls(spool), []);
}

/** `fn` rejects with an error of class `cls` whose `field` is `field`. */
async function refuses(fn: () => Promise<unknown>, cls: Function, field: string, message?: RegExp): Promise<void> {
  await assert.rejects(fn, (e: unknown) => {
    assert.ok(e instanceof cls, `${String(e)} is not a ${cls.name}`);
    assert.equal((e as ManifestError).field, field, String(e));
    if (message) assert.match((e as Error).message, message);
    return true;
  });
}

describe("text fields must be valid Unicode without NUL", () => {
  const lone = "bad\ud800text";
  test("run_id, producer, key", async () => {
    await refuses(() => submit(rows, { kind: "t", root, runId: lone }), InvalidText, "run_id", /run_id is not valid Unicode: a lone surrogate \\ud800/);
    await refuses(() => submit(rows, { kind: "t", root, producer: "p\udc00" }), InvalidText, "producer");
    await refuses(() => submit(rows, { kind: "t", root, key: "k\u0000" }), InvalidText, "key", /key holds a NUL/);
    nothingWritten();
  });

  test("meta keys and values, at any depth", async () => {
    await refuses(() => submit(rows, { kind: "t", root, meta: { a: { b: [1, lone] } } }), InvalidText, "meta.a.b[1]");
    await refuses(() => submit(rows, { kind: "t", root, meta: { [lone]: 1 } }), InvalidText, `meta key ${JSON.stringify(lone)}`);
    await refuses(() => submit(rows, { kind: "t", root, meta: { a: "x\0y" } }), InvalidText, "meta.a");
    nothingWritten();
  });

  test("column names", async () => {
    await refuses(() => submit([{ ["p\ud83d"]: 1 }], { kind: "t", root }), InvalidText, "artifacts.t.columns.p\ud83d");
    await refuses(() => submit({ ["a\0b"]: [1] }, { kind: "t", root }), InvalidText, "artifacts.t.columns.a\0b");
    const nested = new Table({ s: vectorFromArray([{ ["x\udfff"]: 1 }], new Struct([new Field("x\udfff", new Float64())])) });
    await refuses(() => submit(nested, { kind: "t", root }), InvalidText, "artifacts.t.columns.s.x\udfff");
    nothingWritten();
  });

  test("a well-formed pair (an emoji) and other scripts are fine, and survive the round trip", async () => {
    const r = await submit([{ "prix_€": 1, "名前": "😀" }], { kind: "t", root, runId: "run 😀", meta: { "ключ": "値 😀" } });
    const m = verifyJob(r.path) as unknown as Manifest;
    assert.equal(m.run_id, "run 😀");
    assert.deepEqual(m.meta, { "ключ": "値 😀" });
    assert.deepEqual(m.artifacts[0]?.schema.fields.map((f) => f.name), ["prix_€", "名前"]);
  });
});

describe("column names", () => {
  test("names equal ignoring case clash, as in DuckDB", async () => {
    await refuses(() => submit({ Price: [1], price: [2] }, { kind: "t", root }), SchemaMismatch, "artifacts.t.columns.price",
      /columns "Price" and "price" differ only in case/);
    nothingWritten();
  });

  test("reserved names are refused in any case", async () => {
    for (const c of ["_job_id", "_RUN_ID", "_Bus_File"]) {
      await refuses(() => submit({ [c]: [1] }, { kind: "t", root }), SchemaMismatch, `artifacts.t.columns.${c}`, /reserved for the bus/);
    }
    nothingWritten();
  });

  test("the field names the artifact of a multi-artifact job", async () => {
    const j = job({ root });
    j.add("fills", rows);
    assert.throws(() => j.add("positions", { QTY: [1], qty: [2] }, { name: "pos" }), (e: unknown) =>
      e instanceof SchemaMismatch && e.field === "artifacts.pos.columns.qty");
    j.abort();
    nothingWritten();
  });
});

describe("the manifest's size limit", () => {
  test("is the protocol's 1 MiB, as the writer checks it", () => {
    assert.equal(MAX_MANIFEST_BYTES, 1_048_576);
  });

  test("a meta above 1 MiB is refused at once", async () => {
    const meta = { blob: "x".repeat(MAX_MANIFEST_BYTES) };
    await refuses(() => submit(rows, { kind: "t", root, meta }), ManifestTooLarge, "meta");
    nothingWritten();
  });

  test("a manifest that grows above 1 MiB by its artifacts is refused at commit, leaving nothing", async () => {
    // 600 columns with long names per artifact, two artifacts: each fits, the manifest does not
    const cols = Object.fromEntries(Array.from({ length: 600 }, (_, i) => [`${"c".repeat(900)}${i}`, [i]]));
    const j = job({ root, meta: { m: "y".repeat(1000) } });
    j.add("wide", cols);
    j.add("wide", cols);
    await refuses(() => j.commit(), ManifestTooLarge, "manifest", /manifest\.json would be \d+ bytes, above the protocol's 1048576/);
    nothingWritten();
  });

  test("a manifest just under the limit commits and verifies", async () => {
    const r = await submit(rows, { kind: "t", root, meta: { blob: "x".repeat(MAX_MANIFEST_BYTES - 4096) } });
    assert.ok(fs.statSync(path.join(r.path, "manifest.json")).size <= MAX_MANIFEST_BYTES);
    verifyJob(r.path);
  });
});

describe("job ids", () => {
  test("decode to the time they were made", () => {
    const before = Date.now();
    const j = job({ root });
    assert.ok(Math.abs(jobMillis(j.jobId) - before) < 5000);
    assert.equal(jobMillis("01HK4AJ600VECT0R0000000001"), 1_704_173_574_144); // what the Python writer decodes
    assert.equal(jobMillis("018cd2d9-0e40-7000-8000-000000000001"), 1_704_344_489_536);
  });

  test("a clock far off (1970, or 2200) is refused before anything is written", async (t) => {
    for (const when of [0, Date.UTC(2200, 0, 1)]) {
      const now = mock.method(Date, "now", () => when);
      try {
        await refuses(() => submit(rows, { kind: "t", root }), JobIdError, "job_id", /this machine's clock is wrong/);
      } finally {
        now.mock.restore();
      }
    }
    nothingWritten();
    t.diagnostic("refused job ids of 1970 and 2200");
  });
});

describe("replace", () => {
  test("with a key, the manifest says replace: true", async () => {
    const r = await submit(rows, { kind: "t", root, key: "slice:x", replace: true });
    const m = verifyJob(r.path) as unknown as Manifest;
    assert.equal(m.replace, true);
    assert.equal(m.key, "slice:x");
    const r2 = await job({ root, key: "k2", replace: true }, (j) => { j.add("t", rows); });
    assert.equal((verifyJob(r2.path) as unknown as Manifest).replace, true);
  });

  test("without replace (or replace: false) the manifest has no replace field", async () => {
    for (const replace of [undefined, false]) {
      const r = await submit(rows, { kind: "t", root, key: "k", replace });
      assert.ok(!("replace" in (verifyJob(r.path) as object)));
    }
  });

  test("replace without a key is an error", async () => {
    await refuses(() => submit(rows, { kind: "t", root, replace: true }), ManifestError, "replace", /needs a key/);
    assert.throws(() => job({ root, replace: true }), ManifestError);
    nothingWritten();
  });
});
