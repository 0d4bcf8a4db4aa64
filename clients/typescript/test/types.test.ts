/** Column types: the pyarrow spelling of every supported Arrow type, type specs, inference. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { parseType, schemaFields, toArrowTable, typeName, SchemaMismatch } from "artifact-bus";
import { MATRIX, matrixTable } from "./fixtures/matrix.js";

test("every supported Arrow type is spelled as pyarrow reads it back", () => {
  for (const [name, v, want] of MATRIX) assert.equal(typeName(v.type), want, name);
  assert.deepEqual(schemaFields(matrixTable().schema).map((f) => f.type), MATRIX.map(([, , t]) => t));
});

test("a type spec in pyarrow's spelling parses to the type it names", () => {
  for (const spec of ["bool", "int8", "int16", "int32", "int64", "uint8", "uint64", "float", "double", "string", "large_string",
    "binary", "large_binary", "date32[day]", "timestamp[ms]", "timestamp[us]", "timestamp[ns]", "timestamp[us, tz=UTC]",
    "timestamp[ms, tz=Europe/Paris]", "dictionary<values=string, indices=int32, ordered=0>",
    "dictionary<values=string, indices=uint8, ordered=1>", "null"]) {
    assert.equal(typeName(parseType(spec).type), spec);
  }
  const aliases: [string, string][] = [["boolean", "bool"], ["float64", "double"], ["float32", "float"], ["utf8", "string"],
    ["date32", "date32[day]"], ["dictionary", "dictionary<values=string, indices=int32, ordered=0>"]];
  for (const [alias, spec] of aliases) assert.equal(typeName(parseType(alias).type), spec);
  assert.deepEqual(parseType("int64 not null").nullable, false);
  assert.throws(() => parseType("timestamp[s]"), SchemaMismatch);
  assert.throws(() => parseType("decimal128(10, 2)"), SchemaMismatch);
});

test("inference: number is double, bigint int64, Date timestamp[us], string string, boolean bool, Uint8Array binary", () => {
  const t = toArrowTable([{ n: 1, b: 2n, d: new Date(0), s: "x", o: true, y: new Uint8Array([1]) }]);
  assert.deepEqual(schemaFields(t.schema).map((f) => f.type), ["double", "int64", "timestamp[us]", "string", "bool", "binary"]);
});

test("timestamps: a Date, epoch milliseconds (fractions kept to the unit) or a bigint in the column's unit", () => {
  const t = toArrowTable([{ t: new Date(1_000) }, { t: 1_000.5 }, { t: 1_000_250n }], { t: "timestamp[us]" });
  assert.deepEqual([...t.getChild("t")!.toArray()], [1_000_000n, 1_000_500n, 1_000_250n]);
});

test("integers must be whole and in range; dictionaries must fit their indices", () => {
  assert.throws(() => toArrowTable([{ a: 1.5 }], { a: "int64" }), SchemaMismatch);
  assert.throws(() => toArrowTable([{ a: 128 }], { a: "int8" }), SchemaMismatch);
  assert.throws(() => toArrowTable([{ a: -1 }], { a: "uint32" }), SchemaMismatch);
  assert.throws(() => toArrowTable([{ a: 2 ** 53 }], { a: "int64" }), SchemaMismatch); // not a safe integer: pass a bigint
  const many = Array.from({ length: 200 }, (_, i) => ({ s: `v${i}` }));
  assert.throws(() => toArrowTable(many, { s: "dictionary<values=string, indices=int8, ordered=0>" }), SchemaMismatch);
  assert.equal(toArrowTable(many, { s: "dictionary<values=string, indices=int16, ordered=0>" }).numRows, 200);
});
