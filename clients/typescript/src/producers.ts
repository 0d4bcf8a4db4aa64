/**
 * Producer helpers: the common results of research code, submitted with the identity the bus needs to keep
 * one current version of each (camelCase mirrors of the Python `artifact_bus.producers`).
 *
 * - `submitSlice`: a slice of a dataset (a time range of some symbols or a universe at a granularity), keyed by
 *   that identity and replacing the earlier job of the same slice.
 * - `submitFeatureSet`: a named, versioned feature set with the hash of its definition.
 * - `submitSimulation`: a simulation's fills, positions and events as one atomic job, checked for the columns
 *   every consumer of them needs.
 */
import * as arrow from "apache-arrow";
import { createHash } from "node:crypto";
import type { BusLocation } from "./config.js";
import { ManifestError, SchemaMismatch } from "./errors.js";
import { job, submit, type Json, type JobOptions, type Receipt } from "./job.js";
import { checkText } from "./protocol.js";
import { toArrowTable, type ColumnTypes, type TableLike } from "./table.js";

/** A point in time: a Date, an ISO 8601 string (with a zone, or taken as UTC), or epoch milliseconds. */
export type Instant = Date | string | number;

/** Keys longer than this are shortened to `<prefix>:<sha256 hex of the full key>`. */
export const MAX_SLICE_KEY = 200;

interface Common extends BusLocation {
  runId?: string | null | undefined;
  producer?: string | undefined;
  meta?: Record<string, Json> | undefined;
}

export interface SliceOptions extends Common {
  /** Start of the slice, inclusive. */
  start: Instant;
  /** End of the slice, exclusive. */
  end: Instant;
  /** The slice's granularity as the dataset names it (`"1m"`, `"1d"`, `"tick"`…). */
  granularity: string;
  /** The symbols the slice covers (sorted for its identity); give these or `universe`. */
  symbols?: readonly string[] | undefined;
  /** The named universe the slice covers; give this or `symbols`. */
  universe?: string | undefined;
  /** The artifact's kind (default: the dataset name). */
  kind?: string | undefined;
  /** Column types in pyarrow's spelling for rows and columns (see `ColumnTypes`). */
  types?: ColumnTypes | undefined;
}

export interface FeatureSetOptions extends Common {
  /** The feature set's version (with the name, its identity). */
  version: string | number;
  /** Its definition: a string (code, SQL) or a JSON value, hashed as canonical JSON. */
  definition: string | Json;
  /** The artifact's kind (default `"features"`). */
  kind?: string | undefined;
  /** Column types in pyarrow's spelling for rows and columns (see `ColumnTypes`). */
  types?: ColumnTypes | undefined;
}

export interface SimulationData {
  fills: TableLike;
  positions: TableLike;
  events: TableLike;
}

export interface SimulationOptions extends Common {
  /** Idempotency key of the job. */
  key?: string | undefined;
  replace?: boolean | undefined;
  /** Column types per artifact (`{ fills: { ts: "timestamp[us]" } }`). */
  types?: { fills?: ColumnTypes; positions?: ColumnTypes; events?: ColumnTypes } | undefined;
}

/** An ISO 8601 string as UTC when it names no zone (JS would take a date-time without a zone as local time). */
function isoUtc(v: string): string {
  const m = /^(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?))?(Z|[+-]\d{2}:?\d{2})?$/i.exec(v.trim());
  if (!m) return "invalid";
  return `${m[1]}T${m[2] ?? "00:00"}${m[3] ?? "Z"}`;
}

function instant(v: Instant, field: string): Date {
  const d = v instanceof Date ? new Date(v.getTime())
    : typeof v === "number" ? new Date(v)
      : typeof v === "string" ? new Date(isoUtc(v)) : new Date(NaN);
  if (Number.isNaN(d.getTime())) throw new ManifestError(`${field} ${JSON.stringify(v)} is not a time: pass a Date, an ISO 8601 string or epoch milliseconds`, field);
  return d;
}

/** A time as the slice identity spells it: ISO 8601 UTC, `YYYY-MM-DDTHH:MM:SSZ`, with `.fff` only when the milliseconds are not zero. */
export function isoTime(d: Date): string {
  return d.toISOString().replace(/\.000Z$/, "Z");
}

function sha256(text: string): string {
  return createHash("sha256").update(text, "utf8").digest("hex");
}

function plainText(v: unknown, field: string): string {
  if (typeof v !== "string" || v.length === 0) throw new ManifestError(`${field} must be a non-empty string`, field);
  return checkText(v, field);
}

const isTimestamp = (t: arrow.DataType) => t.typeId === arrow.Type.Timestamp;
const isString = (t: arrow.DataType) =>
  t.typeId === arrow.Type.Utf8 || t.typeId === arrow.Type.LargeUtf8
  || (t.typeId === arrow.Type.Dictionary && [arrow.Type.Utf8, arrow.Type.LargeUtf8].includes((t as arrow.Dictionary).dictionary.typeId));
const isNumber = (t: arrow.DataType) => t.typeId === arrow.Type.Int || t.typeId === arrow.Type.Float;

const PER_MS: Record<number, [bigint, bigint]> = { // [multiply, divide] epoch ms into the unit
  [arrow.TimeUnit.SECOND]: [1n, 1000n], [arrow.TimeUnit.MILLISECOND]: [1n, 1n],
  [arrow.TimeUnit.MICROSECOND]: [1000n, 1n], [arrow.TimeUnit.NANOSECOND]: [1_000_000n, 1n],
};

/** Check the `ts` timestamps of a slice lie in [start, end) and its `symbol` values are among `symbols`. */
function checkSlice(table: arrow.Table, what: string, start: Date, end: Date, symbols: readonly string[] | null): void {
  const ts = table.schema.fields.find((f) => f.name === "ts");
  if (ts !== undefined) {
    if (!isTimestamp(ts.type)) throw new SchemaMismatch(`${what}: column "ts" must be a timestamp, got ${String(ts.type)}`, "columns.ts");
    const [mul, div] = PER_MS[(ts.type as arrow.Timestamp).unit] as [bigint, bigint];
    const lo = (BigInt(start.getTime()) * mul) / div;
    const hi = (BigInt(end.getTime()) * mul) / div;
    let row = 0;
    for (const d of table.getChild("ts")!.data) {
      const values = d.values as BigInt64Array;
      for (let i = 0; i < d.length; i++, row++) {
        if (!d.getValid(i)) throw new SchemaMismatch(`${what}: column "ts" row ${row} is null: every row of a slice needs its time`, "columns.ts");
        const v = values[i] as bigint;
        if (v < lo || v >= hi) {
          throw new SchemaMismatch(
            `${what}: column "ts" row ${row} (${v} in ${arrow.TimeUnit[(ts.type as arrow.Timestamp).unit].toLowerCase()}s since 1970) ` +
              `is outside the slice [${isoTime(start)}, ${isoTime(end)})`, "columns.ts",
          );
        }
      }
    }
  }
  const sym = table.schema.fields.find((f) => f.name === "symbol");
  if (symbols !== null && sym !== undefined) {
    if (!isString(sym.type)) throw new SchemaMismatch(`${what}: column "symbol" must be a string, got ${String(sym.type)}`, "columns.symbol");
    const allowed = new Set(symbols);
    let row = 0;
    for (const v of table.getChild("symbol")!) {
      if (v !== null && !allowed.has(v as string)) {
        throw new SchemaMismatch(`${what}: column "symbol" row ${row} is ${JSON.stringify(v)}, not one of the slice's symbols`, "columns.symbol");
      }
      row++;
    }
  }
}

/**
 * The identity of a slice: its key `slice:<dataset>:<universe or comma-joined sorted symbols>:<start>:<end>:<granularity>`
 * (times as `isoTime` spells them), or `slice:<dataset>:<sha256 hex of that key>` when it is longer than 200
 * characters; and `meta.slice`.
 */
export function sliceIdentity(dataset: string, o: Pick<SliceOptions, "start" | "end" | "granularity" | "symbols" | "universe">): {
  key: string; slice: { dataset: string; symbols: string[] | null; universe: string | null; start: string; end: string; granularity: string };
} {
  plainText(dataset, "dataset");
  const granularity = plainText(o.granularity, "granularity");
  const start = instant(o.start, "start");
  const end = instant(o.end, "end");
  if (!(start < end)) throw new ManifestError(`the slice's start ${isoTime(start)} is not before its end ${isoTime(end)}`, "start");
  if ((o.symbols === undefined || o.symbols === null) === (o.universe === undefined || o.universe === null)) {
    throw new ManifestError("a slice names either its symbols or its universe (exactly one of them)", "symbols");
  }
  let symbols: string[] | null = null;
  if (o.symbols !== undefined && o.symbols !== null) {
    if (!Array.isArray(o.symbols) || o.symbols.length === 0) throw new ManifestError("symbols must be a non-empty array of strings", "symbols");
    symbols = o.symbols.map((s, i) => plainText(s, `symbols[${i}]`)).sort();
    const comma = symbols.find((s) => s.includes(","));
    if (comma !== undefined) throw new ManifestError(`symbol ${JSON.stringify(comma)} holds a ',', which the slice's key uses to join symbols`, "symbols");
  }
  const universe = o.universe === undefined || o.universe === null ? null : plainText(o.universe, "universe");
  const full = `slice:${dataset}:${universe ?? (symbols as string[]).join(",")}:${isoTime(start)}:${isoTime(end)}:${granularity}`;
  return {
    key: full.length > MAX_SLICE_KEY ? `slice:${dataset}:${sha256(full)}` : full,
    slice: { dataset, symbols, universe, start: isoTime(start), end: isoTime(end), granularity },
  };
}

function jobOptions(o: Common): JobOptions {
  const { runId, producer, root, required, spool } = o;
  return { runId, producer, root, required, spool };
}

/**
 * Submit a slice of `dataset`: the rows of some `symbols` (or a `universe`) in [`start`, `end`) at a `granularity`.
 * Its key is the slice's identity (`sliceIdentity`) with `replace: true`, so submitting the same slice again
 * replaces the earlier one in `bus.<kind>`; `meta.slice` records the identity. A `ts` column, when present,
 * must be a timestamp within [start, end); a `symbol` column's values must be among `symbols` when given.
 */
export async function submitSlice(data: TableLike, dataset: string, options: SliceOptions): Promise<Receipt> {
  const { key, slice } = sliceIdentity(dataset, options);
  const kind = options.kind ?? dataset;
  const what = `slice ${key}`;
  const table = toArrowTable(data, options.types ?? {}, what);
  checkSlice(table, what, instant(options.start, "start"), instant(options.end, "end"), slice.symbols);
  return submit(table, { ...jobOptions(options), kind, key, replace: true, meta: { ...(options.meta ?? {}), slice } });
}

function canonical(v: Json): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  if (v !== null && typeof v === "object") {
    return `{${Object.keys(v).sort().map((k) => `${canonical(k)}:${canonical(v[k] as Json)}`).join(",")}}`;
  }
  if (typeof v === "number" && !Number.isFinite(v)) throw new ManifestError(`definition holds ${v}, which JSON cannot carry`, "definition");
  // as Python's json.dumps: non-ASCII characters as \u escapes
  return JSON.stringify(v).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/**
 * The hash of a feature set's definition, `sha256:<hex>`: of the string itself, or of a JSON value's canonical
 * JSON (keys sorted, no whitespace, non-ASCII as `\u` escapes: Python's `json.dumps(v, sort_keys=True, separators=(",", ":"))`).
 */
export function definitionHash(definition: string | Json): string {
  if (typeof definition === "string") return `sha256:${sha256(checkText(definition, "definition"))}`;
  if (definition === undefined) throw new ManifestError("definition is missing: pass the feature set's code, SQL or JSON definition", "definition");
  return `sha256:${sha256(canonical(definition))}`;
}

/**
 * Submit version `version` of the feature set `name`: key `feature_set:<name>:<version>` with `replace: true`,
 * `meta.feature_set = { name, version, definition_hash }`, kind `"features"` unless given.
 */
export async function submitFeatureSet(data: TableLike, name: string, options: FeatureSetOptions): Promise<Receipt> {
  plainText(name, "name");
  if (typeof options.version !== "string" && typeof options.version !== "number") {
    throw new ManifestError("version must be a string or a number", "version");
  }
  const version = plainText(String(options.version), "version");
  const feature_set = { name, version, definition_hash: definitionHash(options.definition) };
  return submit(data, {
    ...jobOptions(options), kind: options.kind ?? "features", types: options.types, key: `feature_set:${name}:${version}`,
    replace: true, meta: { ...(options.meta ?? {}), feature_set },
  });
}

type Want = "timestamp" | "string" | "number";
/** The columns every simulation artifact must have, and what each must be. */
export const SIMULATION_COLUMNS: Record<keyof SimulationData, Record<string, Want>> = {
  fills: { ts: "timestamp", symbol: "string", qty: "number", price: "number" },
  positions: { ts: "timestamp", symbol: "string", qty: "number" },
  events: { ts: "timestamp", type: "string" },
};
const TEST: Record<Want, (t: arrow.DataType) => boolean> = { timestamp: isTimestamp, string: isString, number: isNumber };
const SAY: Record<Want, string> = {
  timestamp: "a timestamp", string: "a string (or dictionary of strings)", number: "a number (an integer or float type)",
};

/**
 * Submit a simulation as one atomic job of three artifacts, `fills`, `positions` and `events` (of those kinds),
 * each checked first for the columns in `SIMULATION_COLUMNS`; nothing is written when one is missing or mistyped.
 */
export async function submitSimulation(data: SimulationData, options: SimulationOptions = {}): Promise<Receipt> {
  if (data === null || typeof data !== "object") throw new ManifestError("submitSimulation takes { fills, positions, events }");
  const tables = (Object.keys(SIMULATION_COLUMNS) as (keyof SimulationData)[]).map((name) => {
    if (data[name] === undefined || data[name] === null) {
      throw new ManifestError(`simulation artifact "${name}" is missing: pass { fills, positions, events }`, `artifacts.${name}`);
    }
    const what = `simulation artifact "${name}"`;
    const table = toArrowTable(data[name], options.types?.[name] ?? {}, what, `artifacts.${name}.columns`);
    for (const [col, want] of Object.entries(SIMULATION_COLUMNS[name])) {
      const f = table.schema.fields.find((x) => x.name === col);
      const field = `artifacts.${name}.columns.${col}`;
      if (f === undefined) throw new SchemaMismatch(`${what} has no column "${col}" (${SAY[want]})`, field);
      if (!TEST[want](f.type)) throw new SchemaMismatch(`${what}: column "${col}" must be ${SAY[want]}, got ${String(f.type)}`, field);
    }
    return [name, table] as const;
  });
  const { key, replace, meta } = options;
  return job({ ...jobOptions(options), key, replace, meta }, (j) => {
    for (const [name, table] of tables) j.add(name, table, { name });
  });
}
