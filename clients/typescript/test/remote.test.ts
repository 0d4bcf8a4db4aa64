/**
 * An s3:// root: the job is staged and committed on this machine, then uploaded with its COMMIT object last;
 * spooled when object storage is unreachable, and uploaded by the next submit or flush().
 *
 * The tests that need a real S3 server run when `ARTIFACT_BUS_TEST_S3_BUCKET` names a bucket on the server
 * that `AWS_ENDPOINT_URL` (with `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`) points at; the Python test
 * suite starts one (SeaweedFS) and runs them. Without it they are skipped.
 */
import { GetObjectCommand, ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { beforeEach, describe, test } from "node:test";
import { BusUnavailable, flush, loadConfig, spooledJobs, spoolDir, submit, SPOOLED_WARNING } from "artifact-bus";
import { cleanEnv, ls, PACKAGE_DIR, tempDir } from "./helpers.js";

const BUCKET = process.env["ARTIFACT_BUS_TEST_S3_BUCKET"];
const ENDPOINT = process.env["AWS_ENDPOINT_URL"];
const needS3 = BUCKET && ENDPOINT ? false : "no S3 server: set ARTIFACT_BUS_TEST_S3_BUCKET and AWS_ENDPOINT_URL (the Python tests do)";
const rows = [{ a: 1n, s: "x" }];
const DEAD = "http://127.0.0.1:1"; // nothing listens there: connection refused

let spool: string;
beforeEach(() => {
  spool = cleanEnv();
});

const prefix = () => `ts-${createHash("sha1").update(String(Math.random())).digest("hex").slice(0, 8)}`;

function client(): S3Client {
  return new S3Client({
    region: "us-east-1", endpoint: ENDPOINT as string, forcePathStyle: true,
    credentials: { accessKeyId: process.env["AWS_ACCESS_KEY_ID"] ?? "", secretAccessKey: process.env["AWS_SECRET_ACCESS_KEY"] ?? "" },
  });
}

async function keys(p: string): Promise<string[]> {
  const out = await client().send(new ListObjectsV2Command({ Bucket: BUCKET as string, Prefix: `${p}/` }));
  return (out.Contents ?? []).map((o) => o.Key as string).sort();
}

/** Capture the SpooledWarning a commit emits. */
async function warnings<T>(fn: () => Promise<T>): Promise<[T, string[]]> {
  const seen: string[] = [];
  const on = (w: Error) => { if (w.name === SPOOLED_WARNING) seen.push(w.message); };
  process.on("warning", on);
  try {
    const r = await fn();
    await new Promise((res) => setImmediate(res));
    return [r, seen];
  } finally {
    process.off("warning", on);
  }
}

describe("an unreachable object store", () => {
  test("spools the job on this machine, with a warning; nothing stays in the staging folder", async () => {
    process.env["AWS_ENDPOINT_URL"] = DEAD;
    try {
      const root = "s3://bus/team";
      const [r, seen] = await warnings(() => submit(rows, { kind: "t", root }));
      assert.equal(r.status, "spooled");
      const c = loadConfig({ root });
      assert.equal(r.path, path.join(spoolDir(c), "jobs", r.jobId));
      assert.deepEqual(spooledJobs({ root }), [r.jobId]);
      assert.deepEqual(ls(c.inbox), []);
      assert.equal(seen.length, 1);
      assert.match(seen[0] as string, /bus root s3:\/\/bus\/team is unavailable \(object storage s3:\/\/bus\/team is unavailable/);
      await assert.rejects(flush({ root }), /1 jobs stay spooled/);
      assert.deepEqual(spooledJobs({ root }), [r.jobId]);
    } finally {
      if (ENDPOINT) process.env["AWS_ENDPOINT_URL"] = ENDPOINT; else delete process.env["AWS_ENDPOINT_URL"];
    }
  });

  test("a required bus throws and keeps nothing, neither staged nor spooled", async () => {
    process.env["AWS_ENDPOINT_URL"] = DEAD;
    try {
      const root = "s3://bus/team";
      await assert.rejects(submit(rows, { kind: "t", root, required: true }), (e: unknown) =>
        e instanceof BusUnavailable && /and the bus is required/.test(e.message));
      assert.deepEqual(spooledJobs({ root }), []);
      assert.deepEqual(ls(loadConfig({ root }).inbox), []);
    } finally {
      if (ENDPOINT) process.env["AWS_ENDPOINT_URL"] = ENDPOINT; else delete process.env["AWS_ENDPOINT_URL"];
    }
  });
});

describe("a real S3 server", { skip: needS3 }, () => {
  test("submit uploads the job's objects, COMMIT last, and removes the local copy", async () => {
    // a recording proxy in front of the server: the order of the PUTs as the server received them
    const puts: string[] = [];
    const target = new URL(ENDPOINT as string);
    const proxy = http.createServer((req, res) => {
      if (req.method === "PUT") puts.push(decodeURIComponent(req.url ?? ""));
      const up = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      });
      req.pipe(up);
    });
    await new Promise<void>((res) => proxy.listen(0, "127.0.0.1", res));
    const port = (proxy.address() as { port: number }).port;
    try {
      const p = prefix();
      const root = `s3://${BUCKET}/${p}`;
      process.env["AWS_ENDPOINT_URL"] = `http://127.0.0.1:${port}`;
      const r = await submit(rows, { kind: "fills", root, key: "k", replace: true });
      assert.equal(r.status, "committed");
      assert.equal(r.path, `${root}/inbox/${r.jobId}`);
      const base = `/${BUCKET}/${p}/inbox/${r.jobId}/`;
      assert.deepEqual(puts.map((u) => u.split("?")[0]), [`${base}fills.parquet`, `${base}manifest.json`, `${base}COMMIT`]);
      process.env["AWS_ENDPOINT_URL"] = ENDPOINT as string;
      assert.deepEqual(await keys(p), [`${p}/inbox/${r.jobId}/COMMIT`, `${p}/inbox/${r.jobId}/fills.parquet`, `${p}/inbox/${r.jobId}/manifest.json`]);
      const c = loadConfig({ root });
      assert.deepEqual(ls(c.inbox), []);
      assert.deepEqual(ls(c.tmp), []);
      const commit = await client().send(new GetObjectCommand({ Bucket: BUCKET as string, Key: `${p}/inbox/${r.jobId}/COMMIT` }));
      const manifest = await client().send(new GetObjectCommand({ Bucket: BUCKET as string, Key: `${p}/inbox/${r.jobId}/manifest.json` }));
      const raw = Buffer.from(await manifest.Body!.transformToByteArray());
      assert.equal(await commit.Body!.transformToString(), `sha256:${createHash("sha256").update(raw).digest("hex")}`);
      assert.equal(JSON.parse(raw.toString()).replace, true);
    } finally {
      process.env["AWS_ENDPOINT_URL"] = ENDPOINT as string;
      proxy.close();
    }
  });

  test("a spooled job goes with the next successful submit", async () => {
    const p = prefix();
    const root = `s3://${BUCKET}/${p}`;
    process.env["AWS_ENDPOINT_URL"] = DEAD;
    const [first] = await warnings(() => submit(rows, { kind: "t", root }));
    process.env["AWS_ENDPOINT_URL"] = ENDPOINT as string;
    assert.equal(first.status, "spooled");
    const second = await submit(rows, { kind: "t", root });
    assert.equal(second.status, "committed");
    assert.deepEqual(spooledJobs({ root }), []);
    const jobs = new Set((await keys(p)).map((k) => k.split("/")[2]));
    assert.deepEqual([...jobs].sort(), [first.jobId, second.jobId].sort());
  });

  test("flush() uploads what was spooled", async () => {
    const p = prefix();
    const root = `s3://${BUCKET}/${p}`;
    process.env["AWS_ENDPOINT_URL"] = DEAD;
    const [a] = await warnings(() => submit(rows, { kind: "t", root }));
    const [b] = await warnings(() => submit(rows, { kind: "t", root }));
    process.env["AWS_ENDPOINT_URL"] = ENDPOINT as string;
    assert.deepEqual(await flush({ root }), [a.jobId, b.jobId]);
    assert.deepEqual(spooledJobs({ root }), []);
    assert.equal((await keys(p)).filter((k) => k.endsWith("/COMMIT")).length, 2);
  });

  test("a job committed in the staging folder by a producer that died is uploaded by the next submit", async () => {
    const p = prefix();
    const root = `s3://${BUCKET}/${p}`;
    const staging = loadConfig({ root }).root;
    fs.mkdirSync(staging, { recursive: true }); // else the other process takes its missing parent for an unmounted volume
    // another process commits into the staging inbox (as a producer killed before its upload would leave it), then exits
    const script = `import { submit } from ${JSON.stringify(path.join(PACKAGE_DIR, "dist", "index.js"))};
      const r = await submit([{ a: 2n }], { kind: "t", root: ${JSON.stringify(staging)} }); console.log(r.jobId);`;
    const dead = execFileSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8", cwd: tempDir() }).trim();
    assert.deepEqual(ls(path.join(staging, "inbox")), [dead]);
    const r = await submit(rows, { kind: "t", root });
    assert.equal(r.status, "committed");
    assert.deepEqual(ls(path.join(staging, "inbox")), []);
    const jobs = new Set((await keys(p)).filter((k) => k.endsWith("/COMMIT")).map((k) => k.split("/")[2]));
    assert.deepEqual([...jobs].sort(), [dead, r.jobId].sort());
  });

  test("so is one this process committed there and did not hand on", async () => {
    const p = prefix();
    const root = `s3://${BUCKET}/${p}`;
    const staging = loadConfig({ root }).root;
    fs.mkdirSync(staging, { recursive: true });
    const left = await submit([{ a: 3n }], { kind: "t", root: staging }); // committed in the staging inbox, never uploaded
    assert.deepEqual(ls(path.join(staging, "inbox")), [left.jobId]);
    const r = await submit(rows, { kind: "t", root });
    assert.deepEqual(ls(path.join(staging, "inbox")), []);
    const jobs = new Set((await keys(p)).filter((k) => k.endsWith("/COMMIT")).map((k) => k.split("/")[2]));
    assert.deepEqual([...jobs].sort(), [left.jobId, r.jobId].sort());
  });

  test("jobs committed at once by one process are each uploaded once, by their own commit", async () => {
    const p = prefix();
    const root = `s3://${BUCKET}/${p}`;
    const receipts = await Promise.all(Array.from({ length: 5 }, (_, i) => submit([{ i: BigInt(i) }], { kind: "t", root })));
    assert.deepEqual(receipts.map((r) => r.status), Array(5).fill("committed"));
    const commits = (await keys(p)).filter((k) => k.endsWith("/COMMIT")).map((k) => k.split("/")[2]);
    assert.deepEqual(commits.sort(), receipts.map((r) => r.jobId).sort());
    assert.deepEqual(ls(loadConfig({ root }).inbox), []);
  });
});
