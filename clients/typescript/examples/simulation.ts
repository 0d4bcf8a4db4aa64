/**
 * A simulation writer, as the original system's TypeScript simulations submit their results: per run one
 * atomic job holding `fills`, `positions` and `events`, plus a `features` table on its own.
 *
 *     node build-test/examples/simulation.js [ROOT] [RUN_ID]
 *
 * ROOT defaults to ARTIFACT_BUS_ROOT, then ./data/bus. Prints one JSON document: the process id and the receipts.
 */
import { Float64, Table, Utf8, vectorFromArray } from "apache-arrow";
import { job, submit, type Receipt, type Row } from "artifact-bus";

const root = process.argv[2] || undefined;
const runId = process.argv[3] ?? "ts-sim-001";

// Timestamps as bigint microseconds since the epoch keep every digit; a Date or a number of epoch
// milliseconds works too. Integers that must stay integers are bigint (or declared int64).
const start = 1_704_205_800_000_000n; // 2024-01-02T14:30:00Z
const symbols = ["AAA", "BBB", "CCC"];
const fills: Row[] = Array.from({ length: 6 }, (_, i) => ({
  ts: start + BigInt(i) * 1_500_000n + 123_456n,
  symbol: symbols[i % 3],
  side: i % 2 === 0 ? 1 : -1,
  qty: BigInt((i + 1) * 100),
  price: i === 4 ? null : 100 + i * 0.25,
  fee: 0.01 * (i + 1),
  order_id: 3_000_000_000_000n + BigInt(i),
  venue: i % 3 === 2 ? null : "XNYS",
}));

const positions = {
  symbol: symbols,
  qty: BigInt64Array.from([100n, -200n, 300n]),
  notional: Float64Array.from([10_000, -20_050, 30_150]),
  as_of: [new Date(Date.UTC(2024, 0, 2, 21, 0)), new Date(Date.UTC(2024, 0, 2, 21, 0)), new Date(Date.UTC(2024, 0, 2, 21, 0))],
};

const events: Row[] = [
  { ts: new Date(Date.UTC(2024, 0, 2, 14, 30)), event: "start", detail: null },
  { ts: new Date(Date.UTC(2024, 0, 2, 21, 0)), event: "end", detail: `${fills.length} fills` },
];

const receipts: Receipt[] = [];
receipts.push(
  await job({ runId, producer: "SimulationArtifactWriter", root, key: `${runId}/simulation`, meta: { strategy: "mean-reversion", seed: 1 } }, (j) => {
    j.add("fills", fills, {
      types: { ts: "timestamp[us]", symbol: "dictionary<values=string, indices=int32, ordered=0>", side: "int8", venue: "string" },
    });
    j.add("positions", positions, { types: { as_of: "timestamp[us]" } });
    j.add("events", events, { types: { detail: "string" } });
  }),
);

// An apache-arrow Table works as well; its schema is taken as it is. Name the types: apache-arrow
// dictionary-encodes string arrays unless told otherwise (Utf8 keeps `symbol` a plain string column, as
// Python producers write it), and marks a column built from a typed array non-nullable.
const features = new Table({
  symbol: vectorFromArray(symbols, new Utf8()),
  momentum_20d: vectorFromArray([0.5, -0.25, 1.125], new Float64()),
  volatility_20d: vectorFromArray([0.2, 0.35, 0.3], new Float64()),
});
receipts.push(await submit(features, { kind: "features", runId, producer: "FeatureCompiler", root, key: `${runId}/features` }));

console.log(JSON.stringify({ pid: process.pid, node: process.versions.node, receipts }));
