/** Job protocol v1: constants, name rules, checksums, job ids and the manifest's JSON Schema. */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { ulid } from "ulid";
import { KindError, ManifestError } from "./errors.js";

export const PROTOCOL = 1 as const;
export const MANIFEST = "manifest.json";
export const COMMIT = "COMMIT";
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
        `starting with a letter or digit, at most 120 characters, no '..'`,
    );
  }
  return name;
}

/** True for a ULID or a UUIDv7 string. */
export function isJobId(s: unknown): s is string {
  return typeof s === "string" && (ULID_RE.test(s) || UUID7_RE.test(s));
}

/** A new time-sortable job id (a ULID). */
export function newJobId(): string {
  return ulid();
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
