/** Producer helpers: slices, feature sets and simulations carry their identity and are checked before submitting. */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import path from "node:path";
import { beforeEach, describe, test } from "node:test";
import {
  definitionHash, KindError, ManifestError, SchemaMismatch, sliceIdentity, submitFeatureSet, submitSimulation, submitSlice,
  type Manifest,
} from "artifact-bus";
import { cleanEnv, ls, tempDir } from "./helpers.js";
import { verifyJob } from "./verify.js";

let root: string;
beforeEach(() => {
  cleanEnv();
  root = path.join(tempDir(), "bus");
});

const start = new Date("2024-01-02T00:00:00Z");
const end = new Date("2024-01-03T00:00:00Z");
const us = (d: string) => BigInt(Date.parse(d)) * 1000n;
const bars = [
  { ts: us("2024-01-02T00:00:00Z"), symbol: "MSFT", close: 1.5 },
  { ts: us("2024-01-02T23:59:00Z"), symbol: "AAPL", close: 2.5 },
];
const types = { ts: "timestamp[us, tz=UTC]" };
const sha = (s: string) => createHash("sha256").update(s).digest("hex");

describe("submitSlice", () => {
  test("key, replace and meta.slice from the slice's identity; kind defaults to the dataset", async () => {
    const r = await submitSlice(bars, "bars", { start, end, granularity: "1m", symbols: ["MSFT", "AAPL"], types, runId: "r1", meta: { src: "x" }, root });
    const m = verifyJob(r.path) as unknown as Manifest;
    assert.equal(m.key, "slice:bars:1m:2024-01-02T00:00:00Z/2024-01-03T00:00:00Z:symbols=AAPL,MSFT");
    assert.equal(m.replace, true);
    assert.equal(m.run_id, "r1");
    assert.equal(m.producer, "materialiseSlice");
    assert.deepEqual(m.meta, {
      src: "x",
      slice: { dataset: "bars", symbols: ["AAPL", "MSFT"], universe: null, start: "2024-01-02T00:00:00Z", end: "2024-01-03T00:00:00Z", granularity: "1m" },
    });
    assert.deepEqual(m.artifacts.map((a) => [a.kind, a.rows]), [["bars", 2]]);
  });

  test("a universe instead of symbols; ISO strings (to the microsecond) and epoch milliseconds for times; a kind of one's own", async () => {
    const r = await submitSlice(bars, "bars.us", {
      start: "2024-01-01T23:59:59.9999995", end: Date.parse("2024-01-03T00:00:00.250Z"), granularity: "1m", universe: "sp500", kind: "bars_us", types, root,
    });
    const m = verifyJob(r.path) as unknown as Manifest;
    assert.equal(m.key, "slice:bars.us:1m:2024-01-01T23:59:59.999999Z/2024-01-03T00:00:00.250000Z:universe=sp500");
    assert.equal(m.artifacts[0]?.kind, "bars_us");
  });

  test("ISO strings without a zone are UTC, whatever the local zone", () => {
    const tz = process.env["TZ"];
    process.env["TZ"] = "America/New_York";
    try {
      for (const start of ["2024-01-02", "2024-01-02T00:00", "2024-01-02 00:00:00", "2024-01-02T00:00:00.000", "2024-01-01T19:00:00-05:00"]) {
        assert.equal(sliceIdentity("b", { start, end: "2024-01-03T00:00:00Z", granularity: "1d", universe: "u" }).slice.start,
          "2024-01-02T00:00:00Z", start);
      }
      assert.throws(() => sliceIdentity("b", { start: "Jan 2 2024", end: end, granularity: "1d", universe: "u" }), /start "Jan 2 2024" is not an ISO 8601 time/);
    } finally {
      if (tz === undefined) delete process.env["TZ"]; else process.env["TZ"] = tz;
    }
  });

  test("a long subject is hashed: symbols=<n>#<16 hex>, universe#<16 hex>; no symbols nor universe is the whole dataset", () => {
    const symbols = Array.from({ length: 40 }, (_, i) => `SYM${String(i).padStart(3, "0")}`);
    const { key } = sliceIdentity("bars", { start, end, granularity: "1d", symbols: [...symbols].reverse() });
    assert.equal(key, `slice:bars:1d:2024-01-02T00:00:00Z/2024-01-03T00:00:00Z:symbols=40#${sha(symbols.join(",")).slice(0, 16)}`);
    const u = "u".repeat(56);
    assert.equal(sliceIdentity("bars", { start, end, granularity: "1d", universe: u }).key, `slice:bars:1d:2024-01-02T00:00:00Z/2024-01-03T00:00:00Z:universe#${sha(u).slice(0, 16)}`);
    assert.equal(sliceIdentity("bars", { start, end, granularity: "1d", universe: u.slice(1) }).key, `slice:bars:1d:2024-01-02T00:00:00Z/2024-01-03T00:00:00Z:universe=${u.slice(1)}`);
    const whole = sliceIdentity("bars", { start, end, granularity: "1d" });
    assert.equal(whole.key, "slice:bars:1d:2024-01-02T00:00:00Z/2024-01-03T00:00:00Z:all");
    assert.deepEqual([whole.slice.symbols, whole.slice.universe], [null, null]);
  });

  test("ts outside [start, end), a null ts, or a symbol not in the slice is refused before writing", async () => {
    const opts = { start, end, granularity: "1m", symbols: ["MSFT", "AAPL"], types, root };
    for (const [data, msg] of [
      [[{ ts: us("2024-01-03T00:00:00Z"), symbol: "MSFT" }], /slice bars \[2024-01-02T00:00:00Z, 2024-01-03T00:00:00Z\): column "ts" has values outside the slice, e.g. 2024-01-03T00:00:00Z/],
      [[{ ts: us("2024-01-01T23:59:59Z") + 999_999n, symbol: "MSFT" }], /outside the slice/], // 1 µs before the start,
      [[{ ts: us("2024-01-02T01:00:00Z"), symbol: "MSFT" }, { ts: null, symbol: "MSFT" }], /column "ts" has null values/],
      [[{ ts: us("2024-01-02T01:00:00Z"), symbol: "GOOG" }], /column "symbol" has values not in symbols: \["GOOG"\]/],
    ] as const) {
      await assert.rejects(submitSlice(data as never, "bars", opts), (e: unknown) => e instanceof SchemaMismatch && msg.test(e.message));
    }
    await assert.rejects(submitSlice([{ ts: 1.5 }], "bars", { start, end, granularity: "1m", universe: "u", root }), /column "ts" is double, not a timestamp or a date/);
    assert.deepEqual(ls(path.join(root, "inbox")), []);
  });

  test("the identity must be whole and sane", async () => {
    const base = { start, end, granularity: "1m" };
    assert.throws(() => sliceIdentity("bars", { ...base, symbols: ["A"], universe: "u" }), /symbols or a universe, not both/);
    assert.throws(() => sliceIdentity("bars", { ...base, start: end, end: start, universe: "u" }), /start 2024-01-03T00:00:00Z is not before end 2024-01-02T00:00:00Z/);
    assert.throws(() => sliceIdentity("bars", { ...base, granularity: "1 m" }), /granularity "1 m" is not a plain name/);
    await assert.rejects(submitSlice([{ time: us("2024-01-02T01:00:00Z") }], "bars", { ...base, universe: "u", root }), /no timestamp column "ts" \(columns: time\); name yours with tsColumn/);
    await assert.rejects(submitSlice([{ ts: us("2024-01-02T01:00:00Z") }], "bars", { ...base, symbols: ["A"], types, root }), /no symbol column "symbol"/);
    assert.throws(() => sliceIdentity("bars", { ...base, start: "yesterday", universe: "u" }), (e: unknown) => e instanceof ManifestError && e.field === "start");
        assert.throws(() => sliceIdentity("bars", { ...base, symbols: [] }), /symbols is empty/);
    await assert.rejects(submitSlice(bars, "Bars-1m", { ...base, universe: "u", types, root }), KindError);
  });
});

describe("submitFeatureSet", () => {
  test("key, replace, meta.feature_set with the definition's hash, kind features", async () => {
    const feats = { symbol: ["A", "B"], mom: [0.5, -0.25] };
    const r = await submitFeatureSet(feats, "momentum", { version: 3, definition: "SELECT 1", runId: "fc", root });
    const m = verifyJob(r.path) as unknown as Manifest;
    assert.equal(m.key, "feature_set:momentum:3");
    assert.equal(m.replace, true);
    assert.deepEqual(m.meta, { feature_set: { name: "momentum", version: "3", definition_hash: `sha256:${sha("SELECT 1")}`, definition: "SELECT 1" } });
    assert.equal(m.producer, "FeatureSetCompiler");
    await assert.rejects(submitFeatureSet(feats, "momentum", { version: 1.5, definition: "x", root }), /version must be a string or an integer/);
    assert.equal(m.artifacts[0]?.kind, "features");
  });

  test("a JSON definition hashes as Python's json.dumps(sort_keys=True, separators=(',', ':'))", () => {
    // json.dumps({"b": [1, 2.5, None, 1e-05, 1e16, 2**53 - 1], "a": {"y": "é", "x": True}}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    const text = '{"a":{"x":true,"y":"é"},"b":[1,2.5,null,1e-05,1e+16,9007199254740991]}';
    assert.equal(definitionHash({ b: [1, 2.5, null, 0.00001, 1e16, 2 ** 53 - 1], a: { y: "é", x: true } }), `sha256:${sha(text)}`);
    assert.notEqual(definitionHash({ a: 1 }), definitionHash({ a: 2 }));
  });
});

describe("submitSimulation", () => {
  const t = 1_704_205_800_000_000n;
  const sim = {
    fills: [{ ts: t, symbol: "AAA", qty: 10, price: 100.5 }],
    positions: [{ ts: t, symbol: "AAA", qty: 10 }],
    events: [{ ts: new Date("2024-01-02T14:30:00Z"), event: "start", detail: "x" }], // a Date: timestamp[us]
  };
  const types = { fills: { ts: "timestamp[us]" }, positions: { ts: "timestamp[us]" } };

  test("one atomic job of fills, positions and events", async () => {
    const r = await submitSimulation(sim, { runId: "sim-1", producer: "sim", key: "sim-1/simulation", meta: { seed: 1 }, types, root });
    const m = verifyJob(r.path) as unknown as Manifest;
    assert.deepEqual(m.artifacts.map((a) => [a.name, a.kind, a.rows]), [["fills", "fills", 1], ["positions", "positions", 1], ["events", "events", 1]]);
    assert.deepEqual([m.run_id, m.producer, m.key, m.meta], ["sim-1", "sim", "sim-1/simulation", { seed: 1 }]);
    assert.ok(!("replace" in m));
    const d = verifyJob((await submitSimulation(sim, { runId: "sim-2", types, root })).path) as unknown as Manifest;
    assert.deepEqual([d.run_id, d.producer, d.key], ["sim-2", "SimulationArtifactWriter", "simulation:sim-2"]);
    await assert.rejects(submitSimulation(sim, { types, root } as never), /runId must be a non-empty string/);
  });

  test("a missing or mistyped column is refused naming the artifact and the column; nothing is written", async () => {
    const cases: [object, RegExp, string][] = [
      [{ ...sim, fills: [{ ts: t, symbol: "AAA", qty: 1 }] }, /fills artifact "fills": column "price" \(double\) required by the contract is missing/, "artifacts.fills.columns.price"],
      [{ ...sim, fills: [{ ts: t, symbol: "AAA", qty: 1n, price: 1 }] }, /fills artifact "fills": column "qty" is int64 but the contract requires double/, "artifacts.fills.columns.qty"],
      [{ ...sim, positions: [{ symbol: "AAA", qty: "ten" }] }, /positions artifact "positions": column "qty" is string but the contract requires double/, "artifacts.positions.columns.qty"],
      [{ ...sim, events: [{ ts: 5, event: "start" }] }, /events artifact "events": column "ts" is double but the contract requires timestamp\[us\]/, "artifacts.events.columns.ts"],
      [{ ...sim, events: [{ ts: new Date(), type: "start" }] }, /"events": column "event" \(string\) required by the contract is missing/, "artifacts.events.columns.event"],
    ];
    for (const [data, msg, field] of cases) {
      await assert.rejects(submitSimulation(data as never, { runId: "s", types, root }), (e: unknown) => e instanceof SchemaMismatch && msg.test(e.message) && e.field === field);
    }
    await assert.rejects(submitSimulation({ fills: sim.fills, positions: sim.positions } as never, { runId: "s", types, root }), /"events" is missing/);
    assert.deepEqual(ls(path.join(root, "inbox")), []);
    assert.deepEqual(ls(path.join(root, "inbox", ".tmp")), []);
  });
});
