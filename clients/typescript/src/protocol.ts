/** Job protocol v1: constants, name rules, checksums, job ids and the manifest's JSON Schema. */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { ulid } from "ulid";
import { InvalidText, JobIdError, KindError, ManifestError } from "./errors.js";

export const PROTOCOL = 1 as const;
export const MANIFEST = "manifest.json";
export const COMMIT = "COMMIT";
/** The largest manifest.json the writer reads (1 MiB); a larger one is rejected unread (`manifest_too_large`). */
export const MAX_MANIFEST_BYTES = 1 << 20;
/** The times a job id may encode: a producer whose clock is outside them would file its jobs under a wrong day and order. */
export const JOB_ID_TIMES = { min: Date.UTC(2000, 0, 1), max: Date.UTC(2100, 0, 1) } as const;
/** Columns the bus adds to every `bus.<kind>` view; matched case-insensitively. */
export const RESERVED_COLUMNS = ["_job_id", "_run_id", "_bus_file"] as const;

const KIND_RE = /^[a-z][a-z0-9_]{0,62}$/;
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const FILE_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\.parquet$/;
const ULID_RE = /^[0-9A-HJKMNP-TV-Z]{26}$/;
const UUID7_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** Return `kind` if it is a valid kind name (it names the view `bus.<kind>`), else throw `KindError`. */
export function checkKind(kind: unknown): string {
  if (typeof kind !== "string" || !KIND_RE.test(kind)) {
    throw new KindError(
      `kind ${JSON.stringify(kind)} is not a plain identifier: use lower-case letters, digits and '_', ` +
        `starting with a letter, at most 63 characters`,
    );
  }
  return kind;
}

/** Return `name` if it is a valid artifact name, else throw `ManifestError`. */
export function checkName(name: unknown): string {
  if (typeof name !== "string" || !NAME_RE.test(name) || !FILE_RE.test(`${name}.parquet`) || name.includes("..")) {
    throw new ManifestError(
      `artifact name ${JSON.stringify(name)} is not a plain name: letters, digits, '_', '.', '-', ` +
        `starting with a letter or digit, at most 120 characters, no '..'`, "name",
    );
  }
  return name;
}

/** True for a ULID or a UUIDv7 string. */
export function isJobId(s: unknown): s is string {
  return typeof s === "string" && (ULID_RE.test(s) || UUID7_RE.test(s));
}

const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/** Milliseconds since the epoch encoded in a ULID or UUIDv7 job id. */
export function jobMillis(jobId: string): number {
  if (ULID_RE.test(jobId)) {
    let ms = 0;
    for (const c of jobId.slice(0, 10)) ms = ms * 32 + CROCKFORD.indexOf(c); // 48 bits of time: exact in a double
    return ms;
  }
  if (UUID7_RE.test(jobId)) return parseInt(jobId.replace(/-/g, "").slice(0, 12), 16);
  throw new ManifestError(`job id ${JSON.stringify(jobId)} is neither a ULID nor a UUIDv7`, "job_id");
}

/** Return `jobId` if it is a job id whose time is within `JOB_ID_TIMES`, else throw `JobIdError`. */
export function checkJobId(jobId: string): string {
  const ms = jobMillis(jobId);
  if (!(ms >= JOB_ID_TIMES.min && ms < JOB_ID_TIMES.max)) {
    const when = ms < 8.64e15 ? new Date(ms).toISOString() : `${ms} ms after 1970`;
    throw new JobIdError(
      `job_id ${jobId} encodes ${when}, outside 2000-01-01…2100-01-01: this machine's clock is wrong ` +
        `(the writer orders and files jobs by the time in their id)`, "job_id",
    );
  }
  return jobId;
}

/** A new time-sortable job id (a ULID), checked to encode a sane time. */
export function newJobId(): string {
  return checkJobId(ulid());
}

const LONE_SURROGATE = /\p{Surrogate}/u;

/**
 * Return `value` if it is text the bus can carry: valid Unicode (JS strings can hold lone surrogates, which
 * JSON.stringify writes as `\ud800` escapes that Python decodes into text no UTF-8 encoder or DuckDB takes) and no NUL. Else throw `InvalidText` naming `field`.
 */
export function checkText(value: string, field: string, context = ""): string {
  const where = context ? `${context}: ${field}` : field;
  const at = value.search(LONE_SURROGATE);
  if (at >= 0) {
    const code = value.charCodeAt(at).toString(16).padStart(4, "0");
    throw new InvalidText(`${where} is not valid Unicode: a lone surrogate \\u${code} at character ${at}`, field);
  }
  const nul = value.indexOf("\0");
  if (nul >= 0) throw new InvalidText(`${where} holds a NUL character (at character ${nul})`, field);
  return value;
}

/** Check every string and object key inside a JSON value with `checkText`; `field` names the value (`meta`, `lineage`). */
export function checkJsonText(value: unknown, field: string): void {
  if (typeof value === "string") checkText(value, field);
  else if (Array.isArray(value)) value.forEach((v, i) => checkJsonText(v, `${field}[${i}]`));
  else if (value !== null && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) {
      checkText(k, `${field} key ${JSON.stringify(k)}`);
      checkJsonText(v, `${field}.${k}`);
    }
  }
}

/** `sha256:<hex>` of some bytes: the form of artifact checksums and of COMMIT. */
export function checksum(data: Uint8Array | string): string {
  return "sha256:" + createHash("sha256").update(data).digest("hex");
}

let schemaCache: Record<string, unknown> | undefined;

/** The manifest's JSON Schema (draft-07), the same file the Python package ships. */
export function manifestSchema(): Record<string, unknown> {
  schemaCache ??= JSON.parse(readFileSync(manifestSchemaPath(), "utf8")) as Record<string, unknown>;
  return schemaCache;
}

/** Path of the manifest's JSON Schema file inside this package. */
export function manifestSchemaPath(): string {
  return fileURLToPath(new URL("../manifest.schema.json", import.meta.url));
}
