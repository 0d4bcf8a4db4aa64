/**
 * A second, independent reading of the protocol's rules for a job folder, used by the tests, with the
 * writer's rejection codes. The file's schema is read back with parquet-wasm and spelled with this
 * package's pyarrow spelling, which agrees with pyarrow for the types the package supports.
 */
import { Ajv, type ErrorObject } from "ajv";
import { tableFromIPC } from "apache-arrow";
import fs from "node:fs";
import path from "node:path";
import { readParquet } from "parquet-wasm";
import { checksum, COMMIT, isJobId, MANIFEST, manifestSchema, RESERVED_COLUMNS, schemaFields, type SchemaField } from "artifact-bus";

export const MAX_MANIFEST_BYTES = 1 << 20;

const ajv = new Ajv({ allErrors: false, strict: true });
export const validateManifest = ajv.compile(manifestSchema());

export class Reject extends Error {
  constructor(readonly code: string, message: string) {
    super(`${code}: ${message}`);
  }
}

/** The code the writer gives a manifest the JSON Schema refuses (the first error). */
export function schemaCode(errors: ErrorObject[] | null | undefined): string {
  const e = errors?.[0];
  if (!e) return "manifest_schema";
  const where = e.instancePath;
  if (/^\/artifacts\/\d+\/kind$/.test(where)) return "kind_invalid";
  if (/^\/artifacts\/\d+\/file$/.test(where)) return "unsafe_name";
  return "manifest_schema";
}

/** Check a committed job folder; returns the manifest or throws `Reject` with the writer's code. */
export function verifyJob(dir: string, jobId = path.basename(dir)): Record<string, unknown> {
  if (!isJobId(jobId)) throw new Reject("job_id_invalid", `folder name ${jobId} is not a job id`);
  const mp = path.join(dir, MANIFEST);
  if (!fs.existsSync(mp)) throw new Reject("manifest_missing", "manifest.json is missing");
  if (fs.lstatSync(mp).size > MAX_MANIFEST_BYTES) throw new Reject("manifest_too_large", "manifest.json is above 1 MiB");
  const raw = fs.readFileSync(mp);
  const cp = path.join(dir, COMMIT);
  if (!fs.existsSync(cp)) throw new Reject("commit_missing", "COMMIT is missing");
  if (fs.readFileSync(cp, "ascii").trim() !== checksum(raw)) throw new Reject("commit_mismatch", "COMMIT does not match manifest.json");
  let m: Record<string, unknown>;
  try {
    m = JSON.parse(raw.toString("utf8")) as Record<string, unknown>;
  } catch (e) {
    throw new Reject("manifest_invalid_json", String(e));
  }
  if (m === null || typeof m !== "object" || Array.isArray(m)) throw new Reject("manifest_schema", "not an object");
  if (m["protocol"] !== 1) throw new Reject("protocol_version", `protocol ${String(m["protocol"])}`);
  if (!validateManifest(m)) throw new Reject(schemaCode(validateManifest.errors), ajv.errorsText(validateManifest.errors));
  if (m["job_id"] !== jobId) throw new Reject("job_id_mismatch", "manifest job_id is not the folder name");
  const arts = m["artifacts"] as { name: string; file: string; rows: number; bytes: number; checksum: string; schema: { fields: SchemaField[] } }[];
  const names = new Set<string>();
  const files = new Set<string>();
  for (const a of arts) {
    if (names.has(a.name) || files.has(a.file)) throw new Reject("duplicate_name", `${a.name} twice`);
    names.add(a.name);
    files.add(a.file);
  }
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    if (!entry.isFile()) throw new Reject("unsafe_entry", `${entry.name} is not a regular file`);
    if (!files.has(entry.name) && entry.name !== MANIFEST && entry.name !== COMMIT) throw new Reject("file_unlisted", entry.name);
  }
  for (const a of arts) {
    const fp = path.join(dir, a.file);
    if (!fs.existsSync(fp)) throw new Reject("file_missing", a.file);
    const data = fs.readFileSync(fp);
    if (data.byteLength !== a.bytes) throw new Reject("size_mismatch", a.file);
    if (checksum(data) !== a.checksum) throw new Reject("checksum_mismatch", a.file);
    let rows: number;
    let fields: SchemaField[];
    try {
      const t = tableFromIPC(readParquet(data).intoIPCStream());
      rows = t.numRows;
      fields = schemaFields(t.schema);
    } catch (e) {
      throw new Reject("not_parquet", `${a.file}: ${String(e)}`);
    }
    if (rows !== a.rows) throw new Reject("row_count_mismatch", `${a.file}: ${rows} rows, manifest says ${a.rows}`);
    if (JSON.stringify(fields) !== JSON.stringify(a.schema.fields)) {
      throw new Reject("schema_mismatch", `${a.file}: ${JSON.stringify(fields)} in the file, ${JSON.stringify(a.schema.fields)} in the manifest`);
    }
    const clash = a.schema.fields.find((f) => (RESERVED_COLUMNS as readonly string[]).includes(f.name.toLowerCase()));
    if (clash) throw new Reject("reserved_column", clash.name);
  }
  return m;
}
