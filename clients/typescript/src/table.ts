/**
 * Turning what a producer hands over into an Arrow table, the manifest's schema for it, and Parquet bytes.
 *
 * The manifest spells each column's type the way pyarrow prints the Arrow type it reads back from the
 * Parquet file; the writer compares the two exactly. Files are written by parquet-wasm (the Rust Arrow
 * implementation), which stores the Arrow schema in the file, so pyarrow reads back the exact Arrow types
 * for every type this module accepts. Types whose round trip is not exact are refused with a reason.
 */
import * as arrow from "apache-arrow";
import * as pw from "parquet-wasm";
import { ManifestError, SchemaMismatch } from "./errors.js";
import { checkText, RESERVED_COLUMNS } from "./protocol.js";

/** One column of a manifest schema: name, Arrow type in pyarrow's spelling, nullability. */
export interface SchemaField {
  name: string;
  type: string;
  nullable: boolean;
}

/** One row: column name to value. */
export type Row = Record<string, unknown>;
/** Columns: column name to an array (or typed array) of values, all of the same length. */
export type Columns = Record<string, ArrayLike<unknown>>;
/**
 * What `submit` and `Job.add` accept: an apache-arrow `Table`, the bytes of an Arrow IPC stream
 * (`tableToIPC(table, "stream")` from any Arrow library), an array of row objects, or an object of columns.
 */
export type TableLike = arrow.Table | Uint8Array | readonly Row[] | Columns;
/**
 * Column types for rows and columns, in pyarrow's spelling: `"int64"`, `"double"`, `"string"`,
 * `"timestamp[us]"`, `"timestamp[us, tz=UTC]"`, `"dictionary<values=string, indices=int32, ordered=0>"`…;
 * append `" not null"` for a column without nulls. Columns not listed are inferred.
 */
export type ColumnTypes = Record<string, string>;

const UNIT = ["s", "ms", "us", "ns"] as const;
const UNIT_OF: Record<string, arrow.TimeUnit> = {
  s: arrow.TimeUnit.SECOND, ms: arrow.TimeUnit.MILLISECOND, us: arrow.TimeUnit.MICROSECOND, ns: arrow.TimeUnit.NANOSECOND,
};

function intName(t: arrow.Int): string {
  return `${t.isSigned ? "" : "u"}int${t.bitWidth}`;
}

function fieldText(f: arrow.Field, where: string): string {
  return `${f.name}: ${typeName(f.type, `${where}.${f.name}`)}${f.nullable ? "" : " not null"}`;
}

/**
 * The Arrow type `t` as pyarrow prints it after reading back the Parquet file parquet-wasm writes.
 * Throws `SchemaMismatch` for types whose round trip through Parquet is not exact.
 */
export function typeName(t: arrow.DataType, where = "column"): string {
  const refuse = (why: string): never => {
    throw new SchemaMismatch(`${where}: ${why}`);
  };
  switch (t.typeId) {
    case arrow.Type.Null: return "null";
    case arrow.Type.Bool: return "bool";
    case arrow.Type.Int: return intName(t as arrow.Int);
    case arrow.Type.Float: {
      const p = (t as arrow.Float).precision;
      return p === arrow.Precision.HALF ? "halffloat" : p === arrow.Precision.SINGLE ? "float" : "double";
    }
    case arrow.Type.Utf8: return "string";
    case arrow.Type.LargeUtf8: return "large_string";
    case arrow.Type.Binary: return "binary";
    case arrow.Type.LargeBinary: return "large_binary";
    case arrow.Type.Date:
      if ((t as arrow.Date_).unit === arrow.DateUnit.DAY) return "date32[day]";
      return refuse("date64 (DateMillisecond) is read back as int64: use DateDay (date32[day]) or a timestamp");
    case arrow.Type.Timestamp: {
      const ts = t as arrow.Timestamp;
      if (ts.unit === arrow.TimeUnit.SECOND) {
        return refuse("timestamp[s] is read back as int64 (Parquet has no seconds unit): use timestamp[ms] or finer");
      }
      const unit = UNIT[ts.unit];
      return ts.timezone ? `timestamp[${unit}, tz=${ts.timezone}]` : `timestamp[${unit}]`;
    }
    case arrow.Type.Time: {
      const tm = t as arrow.Time;
      if (tm.unit === arrow.TimeUnit.SECOND) return refuse("time32[s] is read back as int32 (Parquet has no seconds unit): use time32[ms] or finer");
      return `time${tm.bitWidth}[${UNIT[tm.unit]}]`;
    }
    case arrow.Type.Duration: return `duration[${UNIT[(t as arrow.Duration).unit]}]`;
    case arrow.Type.Dictionary: {
      const d = t as arrow.Dictionary;
      if (d.dictionary.typeId !== arrow.Type.Utf8 && d.dictionary.typeId !== arrow.Type.LargeUtf8) {
        return refuse(`dictionary of ${String(d.dictionary)} is not supported: only dictionaries of strings are`);
      }
      return `dictionary<values=string, indices=${intName(d.indices)}, ordered=${d.isOrdered ? 1 : 0}>`;
    }
    case arrow.Type.List: {
      const child = (t as arrow.List).children[0];
      if (!child) return refuse("a list type without a child field");
      return `list<${fieldText(child, where)}>`;
    }
    case arrow.Type.Struct:
      return `struct<${(t as arrow.Struct).children.map((c) => fieldText(c, where)).join(", ")}>`;
    default:
      return refuse(`Arrow type ${String(t)} is not supported by the artifact-bus TypeScript producer`);
  }
}

/** The manifest schema of an Arrow schema. */
export function schemaFields(schema: arrow.Schema): SchemaField[] {
  return schema.fields.map((f) => ({ name: f.name, type: typeName(f.type, `column ${JSON.stringify(f.name)}`), nullable: f.nullable }));
}

// ---- type specs (pyarrow spelling) -> Arrow types

const TS_RE = /^timestamp\[(s|ms|us|ns)(?:, ?tz=(.+))?\]$/;
const DICT_RE = /^dictionary<values=(string|large_string|utf8), ?indices=(u?int(?:8|16|32)), ?ordered=([01])>$/;
const INT_RE = /^(u?)int(8|16|32|64)$/;

function intType(spec: string): arrow.Int {
  const m = INT_RE.exec(spec);
  if (!m) throw new SchemaMismatch(`not an integer type: ${spec}`);
  const signed = m[1] === "";
  const bits = Number(m[2]);
  return new arrow.Int(signed, bits as 8 | 16 | 32 | 64);
}

/** Parse a column type in pyarrow's spelling (with a few aliases) into an Arrow type and nullability. */
export function parseType(spec: string, where = "column"): { type: arrow.DataType; nullable: boolean } {
  let s = spec.trim();
  let nullable = true;
  if (s.endsWith(" not null")) {
    nullable = false;
    s = s.slice(0, -" not null".length).trim();
  }
  const simple: Record<string, () => arrow.DataType> = {
    null: () => new arrow.Null(), bool: () => new arrow.Bool(), boolean: () => new arrow.Bool(),
    float: () => new arrow.Float32(), float32: () => new arrow.Float32(),
    double: () => new arrow.Float64(), float64: () => new arrow.Float64(),
    string: () => new arrow.Utf8(), utf8: () => new arrow.Utf8(),
    large_string: () => new arrow.LargeUtf8(), large_utf8: () => new arrow.LargeUtf8(),
    binary: () => new arrow.Binary(), large_binary: () => new arrow.LargeBinary(),
    date32: () => new arrow.DateDay(), "date32[day]": () => new arrow.DateDay(),
    dictionary: () => new arrow.Dictionary(new arrow.Utf8(), new arrow.Int32()),
  };
  const make = simple[s];
  if (make) return { type: make(), nullable };
  if (INT_RE.test(s)) return { type: intType(s), nullable };
  const ts = TS_RE.exec(s);
  if (ts) {
    const unit = UNIT_OF[ts[1] as string] as arrow.TimeUnit;
    if (unit === arrow.TimeUnit.SECOND) {
      throw new SchemaMismatch(`${where}: timestamp[s] is read back as int64 (Parquet has no seconds unit): use timestamp[ms] or finer`);
    }
    return { type: new arrow.Timestamp(unit, ts[2] ?? null), nullable };
  }
  const d = DICT_RE.exec(s);
  if (d) {
    const values = d[1] === "large_string" ? new arrow.LargeUtf8() : new arrow.Utf8();
    return { type: new arrow.Dictionary(values, intType(d[2] as string) as arrow.Int32, null, d[3] === "1"), nullable };
  }
  throw new SchemaMismatch(
    `${where}: unknown column type ${JSON.stringify(spec)}: use one of bool, int8…int64, uint8…uint64, float, double, ` +
      `string, large_string, binary, large_binary, date32[day], timestamp[ms|us|ns] (optionally ", tz=…"), ` +
      `dictionary<values=string, indices=int32, ordered=0>, null; append " not null" for a column without nulls`,
  );
}

// ---- inference for rows and columns

function describe(v: unknown): string {
  if (v === null || v === undefined) return "null";
  if (v instanceof Date) return "Date";
  if (v instanceof Uint8Array) return "Uint8Array";
  if (Array.isArray(v)) return "array";
  return typeof v;
}

function inferType(name: string, values: ArrayLike<unknown>): arrow.DataType {
  let kind: string | undefined;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === null || v === undefined) continue;
    const k = describe(v);
    if (kind === undefined) kind = k;
    else if (k !== kind) {
      throw new SchemaMismatch(`column ${JSON.stringify(name)} mixes ${kind} and ${k} values: declare its type in \`types\``);
    }
  }
  switch (kind) {
    case "number": return new arrow.Float64();
    case "bigint": return new arrow.Int64();
    case "string": return new arrow.Utf8();
    case "boolean": return new arrow.Bool();
    case "Date": return new arrow.TimestampMicrosecond();
    case "Uint8Array": return new arrow.Binary();
    case undefined:
      throw new SchemaMismatch(
        `column ${JSON.stringify(name)} holds only nulls (or no rows): declare its type in \`types\`, e.g. {${JSON.stringify(name)}: "string"}`,
      );
    default:
      throw new SchemaMismatch(`column ${JSON.stringify(name)} holds ${kind} values, which the producer cannot write: pass an apache-arrow Table`);
  }
}

function typedArrayType(values: ArrayLike<unknown>): arrow.DataType | undefined {
  if (values instanceof Float64Array) return new arrow.Float64();
  if (values instanceof Float32Array) return new arrow.Float32();
  if (values instanceof BigInt64Array) return new arrow.Int64();
  if (values instanceof BigUint64Array) return new arrow.Uint64();
  if (values instanceof Int32Array) return new arrow.Int32();
  if (values instanceof Int16Array) return new arrow.Int16();
  if (values instanceof Int8Array) return new arrow.Int8();
  if (values instanceof Uint32Array) return new arrow.Uint32();
  if (values instanceof Uint16Array) return new arrow.Uint16();
  if (values instanceof Uint8Array) return new arrow.Uint8();
  return undefined;
}

// ---- building columns from JS values

class Validity {
  readonly bitmap: Uint8Array;
  nulls = 0;
  constructor(readonly length: number) {
    this.bitmap = new Uint8Array(Math.ceil(length / 8));
  }
  valid(i: number): void {
    this.bitmap[i >> 3] = (this.bitmap[i >> 3] as number) | (1 << (i & 7));
  }
  get props(): { nullCount: number; nullBitmap?: Uint8Array } {
    return this.nulls ? { nullCount: this.nulls, nullBitmap: this.bitmap } : { nullCount: 0 };
  }
}

const INT_RANGE: Record<number, [bigint, bigint, bigint, bigint]> = {
  8: [-(1n << 7n), (1n << 7n) - 1n, 0n, (1n << 8n) - 1n],
  16: [-(1n << 15n), (1n << 15n) - 1n, 0n, (1n << 16n) - 1n],
  32: [-(1n << 31n), (1n << 31n) - 1n, 0n, (1n << 32n) - 1n],
  64: [-(1n << 63n), (1n << 63n) - 1n, 0n, (1n << 64n) - 1n],
};

const PER_UNIT_FROM_MS: Record<number, bigint> = {
  [arrow.TimeUnit.MILLISECOND]: 1n, [arrow.TimeUnit.MICROSECOND]: 1000n, [arrow.TimeUnit.NANOSECOND]: 1_000_000n,
};

function buildColumn(name: string, type: arrow.DataType, nullable: boolean, values: ArrayLike<unknown>): arrow.Data {
  const n = values.length;
  const col = JSON.stringify(name);
  const bad = (i: number, want: string): never => {
    throw new SchemaMismatch(`column ${col} row ${i}: ${describe(values[i])} value ${String(values[i])} is not ${want} (type ${typeName(type)})`);
  };
  const validity = new Validity(n);
  const isNull = (i: number): boolean => {
    const v = values[i];
    if (v !== null && v !== undefined) {
      validity.valid(i);
      return false;
    }
    if (!nullable) throw new SchemaMismatch(`column ${col} row ${i}: null in a column declared not null`);
    validity.nulls++;
    return true;
  };
  switch (type.typeId) {
    case arrow.Type.Null:
      for (let i = 0; i < n; i++) if (values[i] !== null && values[i] !== undefined) bad(i, "null");
      return arrow.makeData({ type: type as arrow.Null, length: n, nullCount: n });
    case arrow.Type.Int: {
      const t = type as arrow.Int;
      const [smin, smax, umin, umax] = INT_RANGE[t.bitWidth] as [bigint, bigint, bigint, bigint];
      const [min, max] = t.isSigned ? [smin, smax] : [umin, umax];
      const data = new t.ArrayType(n);
      for (let i = 0; i < n; i++) {
        if (isNull(i)) continue;
        const v = values[i];
        let b: bigint;
        if (typeof v === "bigint") b = v;
        else if (typeof v === "number" && Number.isSafeInteger(v)) b = BigInt(v);
        else return bad(i, "an integer (a safe-integer number or a bigint)");
        if (b < min || b > max) bad(i, `in the range of ${intName(t)}`);
        (data as unknown as (number | bigint)[])[i] = t.bitWidth === 64 ? b : Number(b);
      }
      return arrow.makeData({ type: t, length: n, data, ...validity.props });
    }
    case arrow.Type.Float: {
      const t = type as arrow.Float;
      if (t.precision === arrow.Precision.HALF) throw new SchemaMismatch(`column ${col}: halffloat columns can only come in an apache-arrow Table`);
      const data = new (t.precision === arrow.Precision.SINGLE ? Float32Array : Float64Array)(n);
      for (let i = 0; i < n; i++) {
        if (isNull(i)) continue;
        const v = values[i];
        if (typeof v !== "number") bad(i, "a number");
        data[i] = v as number;
      }
      return arrow.makeData({ type: t, length: n, data, ...validity.props });
    }
    case arrow.Type.Date: {
      const data = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        if (isNull(i)) continue;
        const v = values[i];
        if (!(v instanceof Date) || Number.isNaN(v.getTime())) bad(i, "a valid Date");
        data[i] = Math.floor((v as Date).getTime() / 86_400_000);
      }
      return arrow.makeData({ type: type as arrow.DateDay, length: n, data, ...validity.props });
    }
    case arrow.Type.Timestamp: {
      const t = type as arrow.Timestamp;
      const perMs = PER_UNIT_FROM_MS[t.unit] as bigint;
      const data = new BigInt64Array(n);
      for (let i = 0; i < n; i++) {
        if (isNull(i)) continue;
        const v = values[i];
        if (typeof v === "bigint") data[i] = v; // already in the column's unit
        else if (v instanceof Date && !Number.isNaN(v.getTime())) data[i] = BigInt(v.getTime()) * perMs;
        else if (typeof v === "number" && Number.isFinite(v)) {
          // epoch milliseconds, possibly fractional: exact to the microsecond
          const whole = Math.floor(v);
          data[i] = BigInt(whole) * perMs + BigInt(Math.round((v - whole) * Number(perMs)));
        } else bad(i, "a Date, epoch milliseconds (number) or a bigint in the column's unit");
      }
      return arrow.makeData({ type: t, length: n, data, ...validity.props });
    }
    case arrow.Type.Dictionary: {
      const t = type as arrow.Dictionary;
      const [, smax, , umax] = INT_RANGE[t.indices.bitWidth] as [bigint, bigint, bigint, bigint];
      const limit = t.indices.isSigned ? smax : umax;
      const seen = new Map<string, number>();
      const indices = new t.indices.ArrayType(n);
      for (let i = 0; i < n; i++) {
        if (isNull(i)) continue;
        const v = values[i];
        if (typeof v !== "string") return bad(i, "a string");
        let k = seen.get(v);
        if (k === undefined) {
          k = seen.size;
          if (BigInt(k) > limit) throw new SchemaMismatch(`column ${col}: more distinct values than ${intName(t.indices)} dictionary indices can hold`);
          seen.set(v, k);
        }
        indices[i] = k;
      }
      const dictionary = arrow.makeVector(buildColumn(name, t.dictionary, false, [...seen.keys()]));
      return arrow.makeData({ type: t, length: n, data: indices, dictionary, ...validity.props });
    }
    case arrow.Type.Bool:
    case arrow.Type.Utf8:
    case arrow.Type.LargeUtf8:
    case arrow.Type.Binary:
    case arrow.Type.LargeBinary: {
      const want = type.typeId === arrow.Type.Bool ? "boolean" : type.typeId === arrow.Type.Binary || type.typeId === arrow.Type.LargeBinary ? "Uint8Array" : "string";
      const builder = arrow.makeBuilder({ type, nullValues: [null, undefined] });
      for (let i = 0; i < n; i++) {
        if (isNull(i)) {
          builder.append(null);
          continue;
        }
        if (describe(values[i]) !== want) bad(i, `a ${want}`);
        builder.append(values[i]);
      }
      return builder.finish().flush();
    }
    default:
      throw new SchemaMismatch(`column ${col}: type ${typeName(type)} can only come in an apache-arrow Table, not from rows or columns`);
  }
}

function fromColumns(columns: Map<string, ArrayLike<unknown>>, types: ColumnTypes, length: number): arrow.Table {
  for (const name of Object.keys(types)) {
    if (!columns.has(name)) throw new SchemaMismatch(`types: column ${JSON.stringify(name)} is not in the data`);
  }
  const fields: arrow.Field[] = [];
  const datas: arrow.Data[] = [];
  for (const [name, values] of columns) {
    const spec = types[name];
    const { type, nullable } = spec !== undefined ? parseType(spec, `column ${JSON.stringify(name)}`)
      : { type: typedArrayType(values) ?? inferType(name, values), nullable: true };
    datas.push(buildColumn(name, type, nullable, values));
    fields.push(new arrow.Field(name, type, nullable));
  }
  const schema = new arrow.Schema(fields);
  const batch = new arrow.RecordBatch(schema, arrow.makeData({ type: new arrow.Struct(fields), length, nullCount: 0, children: datas }));
  return new arrow.Table(schema, [batch]);
}

function looksLikeForeignTable(x: object): boolean {
  const t = x as { schema?: { fields?: unknown }; batches?: unknown; numRows?: unknown };
  return Array.isArray(t.schema?.fields) && Array.isArray(t.batches) && typeof t.numRows === "number";
}

/** Turn accepted data into an Arrow table, checking names and types. */
export function toArrowTable(data: TableLike, types: ColumnTypes = {}, what = "data", field = "columns"): arrow.Table {
  let table: arrow.Table;
  if (data instanceof arrow.Table) {
    table = data;
  } else if (data instanceof Uint8Array) {
    try {
      table = arrow.tableFromIPC(data);
    } catch (e) {
      throw new ManifestError(`${what}: the bytes are not an Arrow IPC stream (${e instanceof Error ? e.message : String(e)})`);
    }
  } else if (Array.isArray(data)) {
    const rows = data as readonly Row[];
    const names: string[] = [];
    const seen = new Set<string>();
    rows.forEach((r, i) => {
      if (r === null || typeof r !== "object" || Array.isArray(r)) throw new ManifestError(`${what}: row ${i} is not an object`);
      for (const k of Object.keys(r)) if (!seen.has(k)) { seen.add(k); names.push(k); }
    });
    for (const k of Object.keys(types)) if (!seen.has(k)) { seen.add(k); names.push(k); }
    const columns = new Map<string, unknown[]>(names.map((k) => [k, rows.map((r) => r[k] ?? null)]));
    table = fromColumns(columns, types, rows.length);
  } else if (data !== null && typeof data === "object") {
    if (looksLikeForeignTable(data)) {
      throw new ManifestError(
        `${what}: this apache-arrow Table comes from another copy of apache-arrow than artifact-bus uses: ` +
          `pass tableToIPC(table, "stream") instead, or install one apache-arrow (npm dedupe)`,
      );
    }
    const columns = new Map(Object.entries(data as Columns));
    const lengths = new Set([...columns.values()].map((v) => v?.length));
    if ([...lengths].some((l) => typeof l !== "number")) throw new ManifestError(`${what}: every column must be an array or a typed array`);
    if (lengths.size > 1) throw new ManifestError(`${what}: columns have different lengths (${[...lengths].join(", ")})`);
    table = fromColumns(columns, types, (lengths.values().next().value as number | undefined) ?? 0);
  } else {
    throw new ManifestError(
      `${what}: cannot submit ${data === null ? "null" : typeof data}: pass an apache-arrow Table, Arrow IPC stream bytes, ` +
        `an array of row objects, or an object of columns`,
    );
  }
  checkColumns(table.schema, what, field);
  return table;
}

/** The names of the fields nested in a list or struct type are manifest text too. */
function checkNestedNames(t: arrow.DataType, where: string, what: string): void {
  for (const c of t.children ?? []) {
    checkText(c.name, `${where}.${c.name}`, what);
    checkNestedNames(c.type, `${where}.${c.name}`, what);
  }
}

/**
 * Refuse what the bus cannot carry in column names: invalid Unicode or NUL, names equal ignoring case
 * (DuckDB identifiers are case-insensitive: `Price` and `price` clash), names the bus reserves (compared
 * ignoring case), and types that do not round-trip. `field` prefixes the field named in errors.
 */
export function checkColumns(schema: arrow.Schema, what: string, field = "columns"): SchemaField[] {
  const seen = new Map<string, string>();
  for (const f of schema.fields) {
    const where = `${field}.${f.name}`;
    checkText(f.name, where, what);
    checkNestedNames(f.type, where, what);
    const folded = f.name.toLowerCase();
    const other = seen.get(folded);
    if (other !== undefined) {
      throw new SchemaMismatch(
        other === f.name ? `${what}: column ${JSON.stringify(f.name)} appears twice`
          : `${what}: columns ${JSON.stringify(other)} and ${JSON.stringify(f.name)} differ only in case, and DuckDB names are case-insensitive`,
        where,
      );
    }
    seen.set(folded, f.name);
    if ((RESERVED_COLUMNS as readonly string[]).includes(folded)) {
      throw new SchemaMismatch(`${what}: column ${JSON.stringify(f.name)} is reserved for the bus (${RESERVED_COLUMNS.join(", ")})`, where);
    }
  }
  return schemaFields(schema);
}

/** Parquet bytes of an Arrow table (Snappy-compressed, with the Arrow schema stored in the file). */
export function toParquet(table: arrow.Table): Uint8Array {
  const wasmTable = pw.Table.fromIPCStream(arrow.tableToIPC(table, "stream"));
  const props = new pw.WriterPropertiesBuilder().setCompression(pw.Compression.SNAPPY).build();
  return pw.writeParquet(wasmTable, props);
}
