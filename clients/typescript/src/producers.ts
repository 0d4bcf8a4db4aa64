/**
 * Producer helpers: the common results of research code, submitted with the identity the bus needs to keep
 * one current version of each. They mirror the Python `artifact_bus.producers` exactly: the same keys, the same
 * `meta`, the same default producer names and the same checks.
 *
 * - `submitSlice`: a slice of a dataset (a time range of some symbols, a universe or the whole dataset at a
 *   granularity), keyed by that identity and replacing the earlier job of the same slice.
 * - `submitFeatureSet`: a named, versioned feature set with the hash of its definition.
 * - `submitSimulation`: a simulation's fills, positions and events as one atomic job, each checked against the
 *   shipped contract of its kind.
 */
import * as arrow from "apache-arrow";
import { createHash } from "node:crypto";
import type { BusLocation } from "./config.js";
import { ManifestError, SchemaMismatch } from "./errors.js";
import { job, submit, type Json, type Receipt } from "./job.js";
import { checkKind } from "./protocol.js";
import { toArrowTable, typeName, type ColumnTypes, type TableLike } from "./table.js";

/**
 * A point in time: a Date, an ISO 8601 string (with a zone, or taken as UTC; fractions of a second are kept to
 * the microsecond), or epoch milliseconds.
 */
export type Instant = Date | string | number;

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
  /** The symbols the slice covers (deduplicated and sorted for its identity); give these, `universe`, or neither (the whole dataset). */
  symbols?: readonly string[] | null | undefined;
  /** The named universe the slice covers. */
  universe?: string | null | undefined;
  /** The artifact's kind (default: the dataset name). */
  kind?: string | undefined;
  /** The slice's timestamp column (default `"ts"`). */
  tsColumn?: string | undefined;
  /** The column checked against `symbols` (default `"symbol"`). */
  symbolColumn?: string | undefined;
  /** Column types in pyarrow's spelling for rows and columns (see `ColumnTypes`). */
  types?: ColumnTypes | undefined;
}

export interface FeatureSetOptions extends Common {
  /** The feature set's version (with the name, its identity): a string or an integer. */
  version: string | number;
  /** Its definition: a string (code, SQL) or a JSON object, hashed as canonical JSON. */
  definition: string | { [key: string]: Json };
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

export interface SimulationOptions extends Omit<Common, "runId"> {
  /** The simulation run: names the run, and the key `simulation:<runId>` unless `key` is given. */
  runId: string;
  /** Idempotency key of the job (default `simulation:<runId>`). */
  key?: string | undefined;
  replace?: boolean | undefined;
  /** Column types per artifact (`{ fills: { ts: "timestamp[us]" } }`). */
  types?: { fills?: ColumnTypes; positions?: ColumnTypes; events?: ColumnTypes } | undefined;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

function plainName(value: unknown, what: string, field: string): string {
  if (typeof value !== "string" || !NAME_RE.test(value)) {
    throw new ManifestError(`${what} ${JSON.stringify(value)} is not a plain name: letters, digits, '_', '.', '-', at most 128 characters`, field);
  }
  return value;
}

function sha256(text: string): string {
  return createHash("sha256").update(text, "utf8").digest("hex");
}

const floorDiv = (a: bigint, b: bigint) => (a % b !== 0n && (a < 0n) !== (b < 0n) ? a / b - 1n : a / b);

/** An ISO 8601 string as microseconds since 1970 (UTC); without a zone it is UTC, as Python's `to_utc` takes it. */
function parseIso(v: string): bigint | null {
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2})(?::(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?)?(?:(Z)|([+-])(\d{2})(?::?(\d{2}))?)?$/.exec(v);
  if (!m) return null;
  const [y, mo, d, h, mi, s] = [1, 2, 3, 4, 5, 6].map((i) => Number(m[i] ?? 0)) as [number, number, number, number, number, number];
  const ms = Date.UTC(y, mo - 1, d, h, mi, s);
  const check = new Date(ms);
  if (Number.isNaN(ms) || check.getUTCFullYear() !== y || check.getUTCMonth() !== mo - 1 || check.getUTCDate() !== d
    || h > 23 || mi > 59 || s > 59) return null;
  const frac = BigInt(((m[7] ?? "") + "000000").slice(0, 6));
  let off = 0n;
  if (m[9] !== undefined) {
    const oh = Number(m[10]), om = Number(m[11] ?? 0);
    if (oh > 23 || om > 59) return null;
    off = BigInt((oh * 60 + om) * 60) * 1_000_000n * (m[9] === "-" ? -1n : 1n);
  }
  return BigInt(ms) * 1000n + frac - off;
}

/** A time as microseconds since 1970, UTC. */
function instant(v: Instant, what: string): bigint {
  let us: bigint | null = null;
  if (v instanceof Date) us = Number.isNaN(v.getTime()) ? null : BigInt(v.getTime()) * 1000n;
  else if (typeof v === "number") us = Number.isFinite(v) ? BigInt(Math.trunc(v)) * 1000n : null;
  else if (typeof v === "string") {
    us = parseIso(v.trim());
    if (us === null) throw new ManifestError(`${what} ${JSON.stringify(v)} is not an ISO 8601 time`, what);
  }
  if (us === null) throw new ManifestError(`${what} must be a Date, an ISO 8601 string or epoch milliseconds, got ${JSON.stringify(v) ?? typeof v}`, what);
  return us;
}

/**
 * A time as keys and meta spell it, as Python's `utc_iso`: `YYYY-MM-DDTHH:MM:SS[.ffffff]Z` (UTC), with the
 * microseconds only when they are not zero.
 */
export function isoTime(t: Instant): string {
  const us = instant(t, "time");
  const sec = floorDiv(us, 1_000_000n);
  const frac = us - sec * 1_000_000n;
  const text = new Date(Number(sec) * 1000).toISOString().slice(0, 19);
  return `${text}${frac === 0n ? "" : `.${String(frac).padStart(6, "0")}`}Z`;
}

/** Compare strings by code point, as Python's `sorted` does. */
const byCodePoint = (a: string, b: string) => Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
const codePoints = (s: string) => [...s].length;

export interface SliceIdentity {
  dataset: string; symbols: string[] | null; universe: string | null; start: string; end: string; granularity: string;
}

/**
 * The identity of a slice (recorded as `meta.slice`) and its key
 * `slice:<dataset>:<granularity>:<start>/<end>:<subject>`, the subject being `all`, `universe=<u>` or
 * `symbols=A,B` (sorted, deduplicated); a subject too long becomes `symbols=<n>#<16 hex of sha256>` or
 * `universe#<16 hex of sha256>`. Exactly Python's `slice_identity` and `slice_key`.
 */
export function sliceIdentity(dataset: string, o: Pick<SliceOptions, "start" | "end" | "granularity" | "symbols" | "universe">): {
  key: string; slice: SliceIdentity;
} {
  plainName(dataset, "dataset", "dataset");
  const granularity = plainName(o.granularity, "granularity", "granularity");
  const hasSymbols = o.symbols !== undefined && o.symbols !== null;
  const hasUniverse = o.universe !== undefined && o.universe !== null;
  if (hasSymbols && hasUniverse) throw new ManifestError("a slice has symbols or a universe, not both", "symbols");
  const universe = hasUniverse ? plainName(o.universe, "universe", "universe") : null;
  let symbols: string[] | null = null;
  if (hasSymbols) {
    if (!Array.isArray(o.symbols) || !o.symbols.every((s) => typeof s === "string" && s.length > 0)) {
      throw new ManifestError("symbols must be a list of non-empty strings", "symbols");
    }
    symbols = [...new Set(o.symbols as string[])].sort(byCodePoint);
    if (symbols.length === 0) throw new ManifestError("symbols is empty: leave it out for the whole dataset", "symbols");
  }
  const s = instant(o.start, "start");
  const e = instant(o.end, "end");
  const start = isoTime(o.start), end = isoTime(o.end);
  if (!(s < e)) throw new ManifestError(`slice ${dataset}: start ${start} is not before end ${end}`, "start");
  let subject = "all";
  if (symbols !== null) {
    const text = symbols.join(",");
    subject = codePoints(text) <= 56 ? `symbols=${text}` : `symbols=${symbols.length}#${sha256(text).slice(0, 16)}`;
  } else if (universe !== null) {
    subject = universe.length <= 55 ? `universe=${universe}` : `universe#${sha256(universe).slice(0, 16)}`;
  }
  return {
    key: `slice:${dataset}:${granularity}:${start}/${end}:${subject}`,
    slice: { dataset, symbols, universe, start, end, granularity },
  };
}

function jobOptions(o: BusLocation & { runId?: string | null | undefined; producer?: string | undefined }, producer: string) {
  const { runId, root, required, spool } = o;
  return { runId, producer: o.producer ?? producer, root, required, spool };
}

const UNIT_US: Record<number, [bigint, bigint]> = { // [multiply, divide] microseconds into the unit
  [arrow.TimeUnit.SECOND]: [1n, 1_000_000n], [arrow.TimeUnit.MILLISECOND]: [1n, 1000n],
  [arrow.TimeUnit.MICROSECOND]: [1n, 1n], [arrow.TimeUnit.NANOSECOND]: [1000n, 1n],
};
const isString = (t: arrow.DataType) =>
  t.typeId === arrow.Type.Utf8 || t.typeId === arrow.Type.LargeUtf8
  || (t.typeId === arrow.Type.Dictionary && [arrow.Type.Utf8, arrow.Type.LargeUtf8].includes((t as arrow.Dictionary).dictionary.typeId));

/** The column's values as integers in `unit`s since 1970 (timestamps as stored; dates as seconds), or null where null. */
function* timeValues(col: arrow.Vector): Generator<bigint | null> {
  const t = col.type as arrow.DataType;
  for (const d of col.data) {
    for (let i = 0; i < d.length; i++) {
      if (!d.getValid(i)) { yield null; continue; }
      if (t.typeId === arrow.Type.Timestamp) yield BigInt((d.values as BigInt64Array)[i] as bigint);
      else if (t.typeId === arrow.Type.Date && (t as arrow.Date_).unit === arrow.DateUnit.DAY) yield BigInt((d.values as Int32Array)[i] as number) * 86_400n;
      else yield floorDiv(BigInt((d.values as BigInt64Array)[i] as bigint), 1000n);
    }
  }
}

/**
 * Check a slice as Python's `check_slice`: the timestamp column (a timestamp or a date) has no null and lies in
 * [start, end); with `symbols`, the symbol column exists and holds only those.
 */
function checkSlice(table: arrow.Table, ident: SliceIdentity, tsColumn: string, symbolColumn: string): void {
  const what = `slice ${ident.dataset} [${ident.start}, ${ident.end})`;
  const names = table.schema.fields.map((f) => f.name);
  const ts = table.schema.fields.find((f) => f.name === tsColumn);
  if (ts === undefined) {
    throw new SchemaMismatch(`${what}: no timestamp column ${JSON.stringify(tsColumn)} (columns: ${names.join(", ")}); name yours with tsColumn`, `columns.${tsColumn}`);
  }
  const isDate = ts.type.typeId === arrow.Type.Date;
  if (ts.type.typeId !== arrow.Type.Timestamp && !isDate) {
    throw new SchemaMismatch(`${what}: column ${JSON.stringify(tsColumn)} is ${typeName(ts.type)}, not a timestamp or a date`, `columns.${tsColumn}`);
  }
  const [mul, div] = UNIT_US[isDate ? arrow.TimeUnit.SECOND : (ts.type as arrow.Timestamp).unit] as [bigint, bigint];
  const bound = (iso: string) => (instant(iso, "time") * mul) / div; // truncates as pyarrow's unsafe cast
  const lo = bound(ident.start), hi = bound(ident.end);
  for (const v of timeValues(table.getChild(tsColumn)!)) {
    if (v === null) throw new SchemaMismatch(`${what}: column ${JSON.stringify(tsColumn)} has null values`, `columns.${tsColumn}`);
    if (v < lo || v >= hi) {
      const us = (v * div) / mul;
      throw new SchemaMismatch(`${what}: column ${JSON.stringify(tsColumn)} has values outside the slice, e.g. ${isoTime(Number(us / 1000n))}`, `columns.${tsColumn}`);
    }
  }
  if (ident.symbols === null) return;
  const sym = table.schema.fields.find((f) => f.name === symbolColumn);
  if (sym === undefined) {
    throw new SchemaMismatch(`${what}: no symbol column ${JSON.stringify(symbolColumn)} to check against symbols; name yours with symbolColumn`, `columns.${symbolColumn}`);
  }
  if (!isString(sym.type)) throw new SchemaMismatch(`${what}: column ${JSON.stringify(symbolColumn)} is ${typeName(sym.type)}, not a string`, `columns.${symbolColumn}`);
  const allowed = new Set(ident.symbols);
  const out = new Set<string | null>();
  for (const v of table.getChild(symbolColumn)!) if (v === null || !allowed.has(v as string)) out.add(v as string | null);
  if (out.size) throw new SchemaMismatch(`${what}: column ${JSON.stringify(symbolColumn)} has values not in symbols: ${JSON.stringify([...out].slice(0, 5))}`, `columns.${symbolColumn}`);
}

/**
 * Submit a slice of `dataset` covering [`start`, `end`) at `granularity`, for `symbols` or a `universe` (or the
 * whole dataset). Its key is the slice's identity (`sliceIdentity`) with `replace: true`, so submitting the same
 * slice again replaces the earlier one in `bus.<kind>`; `meta.slice` records the identity; the producer defaults
 * to `"materialiseSlice"`. The `tsColumn` must lie in [start, end); the `symbolColumn` must hold only `symbols`.
 */
export async function submitSlice(data: TableLike, dataset: string, options: SliceOptions): Promise<Receipt> {
  const { key, slice } = sliceIdentity(dataset, options);
  const kind = checkKind(options.kind ?? dataset);
  const table = toArrowTable(data, options.types ?? {}, `slice ${key}`);
  checkSlice(table, slice, options.tsColumn ?? "ts", options.symbolColumn ?? "symbol");
  return submit(table, { ...jobOptions(options, "materialiseSlice"), kind, key, replace: true, meta: { ...(options.meta ?? {}), slice: slice as unknown as Json } });
}

/** A finite number as Python's `json.dumps` writes it: safe integers as ints, anything else as a float's `repr`. */
function pyNumber(v: number): string {
  if (!Number.isFinite(v)) throw new ManifestError(`definition holds ${v}, which JSON cannot carry`, "definition");
  if (Number.isSafeInteger(v)) return Object.is(v, -0) ? "0" : String(v); // beyond 2^53 a number is taken as a float
  const [mant, exp] = v.toExponential().split("e") as [string, string];
  const e = Number(exp);
  if (e < -4 || e >= 16) return `${mant}e${e < 0 ? "-" : "+"}${String(Math.abs(e)).padStart(2, "0")}`;
  return String(v); // JavaScript writes fixed notation here too, with the same shortest digits
}

/** Canonical JSON as Python's `json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`. */
function canonical(v: Json): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  if (v !== null && typeof v === "object") {
    return `{${Object.keys(v).sort(byCodePoint).map((k) => `${JSON.stringify(k)}:${canonical(v[k] as Json)}`).join(",")}}`;
  }
  if (typeof v === "number") return pyNumber(v);
  return JSON.stringify(v);
}

/** The canonical text of a definition: a string itself, or a JSON object's canonical JSON (Python's `definition_text`). */
function definitionText(definition: unknown): string {
  if (typeof definition === "string") return definition;
  if (definition !== null && typeof definition === "object" && !Array.isArray(definition)) return canonical(definition as Json);
  throw new ManifestError(`definition must be a string or a JSON object, got ${definition === null ? "null" : Array.isArray(definition) ? "an array" : typeof definition}`, "definition");
}

/**
 * The hash of a feature set's definition, `sha256:<hex>`: of the string itself, or of a JSON object's canonical
 * JSON (keys sorted, no whitespace, non-ASCII as is: Python's `json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`).
 */
export function definitionHash(definition: string | { [key: string]: Json }): string {
  return `sha256:${sha256(definitionText(definition))}`;
}

/**
 * Submit version `version` of the feature set `name`: key `feature_set:<name>:<version>` with `replace: true`,
 * `meta.feature_set = { name, version, definition_hash }` plus the `definition` itself when under 16 KiB, kind
 * `"features"` and producer `"FeatureSetCompiler"` unless given.
 */
export async function submitFeatureSet(data: TableLike, name: string, options: FeatureSetOptions): Promise<Receipt> {
  plainName(name, "feature set name", "name");
  const v = options.version;
  if (typeof v !== "string" && !(typeof v === "number" && Number.isSafeInteger(v))) {
    throw new ManifestError(`version must be a string or an integer, got ${JSON.stringify(v) ?? typeof v}`, "version");
  }
  const version = plainName(String(v), "feature set version", "version");
  const text = definitionText(options.definition);
  const feature_set: Record<string, Json> = { name, version, definition_hash: `sha256:${sha256(text)}` };
  if (Buffer.byteLength(text, "utf8") < 16 << 10) feature_set["definition"] = typeof options.definition === "string" ? text : options.definition;
  return submit(data, {
    ...jobOptions(options, "FeatureSetCompiler"), kind: checkKind(options.kind ?? "features"), types: options.types,
    key: `feature_set:${name}:${version}`, replace: true, meta: { ...(options.meta ?? {}), feature_set },
  });
}

/**
 * The shipped contracts of a simulation's artifacts (the package's `producer_contracts/*.toml`): each column and
 * the pyarrow types that satisfy it (the contract's type or a safe widening).
 */
export const SIMULATION_COLUMNS: Record<keyof SimulationData, Record<string, string>> = {
  fills: { ts: "timestamp[us]", symbol: "string", qty: "double", price: "double" },
  positions: { symbol: "string", qty: "double" },
  events: { ts: "timestamp[us]", event: "string" },
};
const SATISFIES: Record<string, (t: string) => boolean> = {
  "timestamp[us]": (t) => t === "timestamp[us]" || t === "timestamp[ns]",
  string: (t) => ["string", "large_string", "string_view"].includes(t.replace(/^dictionary<values=(\w+),.*$/, "$1")),
  double: (t) => t === "double",
};

/**
 * Submit one simulation run's `fills`, `positions` and `events` as one atomic job, each checked first against its
 * shipped contract (`SIMULATION_COLUMNS`); nothing is written when a column is missing or mistyped. The key
 * defaults to `simulation:<runId>`, the producer to `"SimulationArtifactWriter"`.
 */
export async function submitSimulation(data: SimulationData, options: SimulationOptions): Promise<Receipt> {
  if (data === null || typeof data !== "object") throw new ManifestError("submitSimulation takes { fills, positions, events }");
  const runId = options?.runId;
  if (typeof runId !== "string" || runId.length === 0) throw new ManifestError("runId must be a non-empty string: it names the simulation run", "run_id");
  const tables = (Object.keys(SIMULATION_COLUMNS) as (keyof SimulationData)[]).map((kind) => {
    if (data[kind] === undefined || data[kind] === null) {
      throw new ManifestError(`simulation artifact "${kind}" is missing: pass { fills, positions, events }`, `artifacts.${kind}`);
    }
    const what = `${kind} artifact "${kind}"`;
    const table = toArrowTable(data[kind], options.types?.[kind] ?? {}, what, `artifacts.${kind}.columns`);
    for (const [col, want] of Object.entries(SIMULATION_COLUMNS[kind])) {
      const f = table.schema.fields.find((x) => x.name === col);
      const field = `artifacts.${kind}.columns.${col}`;
      if (f === undefined) throw new SchemaMismatch(`${what}: column "${col}" (${want}) required by the contract is missing (shipped contract ${kind}.toml)`, field);
      const got = typeName(f.type, field);
      if (!SATISFIES[want]!(got)) throw new SchemaMismatch(`${what}: column "${col}" is ${got} but the contract requires ${want} (shipped contract ${kind}.toml)`, field);
    }
    return [kind, table] as const;
  });
  const { key, replace, meta } = options;
  return job({ ...jobOptions(options, "SimulationArtifactWriter"), key: key ?? `simulation:${runId}`, replace, meta }, (j) => {
    for (const [kind, table] of tables) j.add(kind, table);
  });
}
