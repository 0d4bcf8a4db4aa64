/**
 * Where the bus is and how to reach it, resolved exactly as the Python package resolves it:
 *
 * 1. the project config: the file `ARTIFACT_BUS_CONFIG` names, else `[tool.artifact_bus]` in the nearest
 *    `pyproject.toml` from the working folder upward;
 * 2. the root: the `root` option, else `ARTIFACT_BUS_ROOT`, else the project config's `root`, else `./data/bus`;
 *    an `s3://bucket/prefix` root means object storage: jobs are staged on this machine, then uploaded;
 * 3. the root's own `bus.toml` (every key but `root`);
 * 4. the environment (`ARTIFACT_BUS_REQUIRED`, `ARTIFACT_BUS_SPOOL`, `ARTIFACT_BUS_REMOTE`, …);
 * 5. the options (`required`, `spool`).
 *
 * Relative paths are relative to the file that holds them (the working folder for the environment and options).
 */
import { createHash } from "node:crypto";
import fs from "node:fs";
import { homedir } from "node:os";
import path from "node:path";
import { parse as parseToml } from "smol-toml";
import { ConfigError } from "./errors.js";

export interface BusLocation {
  /** Root folder of the bus, or an `s3://bucket/prefix` URL (default: `ARTIFACT_BUS_ROOT`, the project config, `./data/bus`). */
  root?: string | undefined;
  /** Throw instead of spooling when the bus is unavailable (default: `ARTIFACT_BUS_REQUIRED`, `bus.toml`, else false). */
  required?: boolean | undefined;
  /** Folder of this machine's spools (default: `ARTIFACT_BUS_SPOOL`, `bus.toml`, else `~/.cache/artifact_bus/spool`). */
  spool?: string | undefined;
}

export interface Config {
  /** The bus root (absolute, symlinks resolved as far as it exists); for an `s3://` root, this machine's staging folder. */
  root: string;
  /** True when the root was named (option, `ARTIFACT_BUS_ROOT` or a config file): then a missing parent folder means an unmounted volume. */
  explicitRoot: boolean;
  required: boolean;
  spool: string;
  inbox: string;
  tmp: string;
  /** The `s3://bucket/prefix` URL where jobs go (an `s3://` root, or the `remote` setting), else null. */
  remote: string | null;
  /** The S3 endpoint (`s3_endpoint`), e.g. `http://127.0.0.1:8333`; null: `AWS_ENDPOINT_URL`, else AWS. */
  s3Endpoint: string | null;
  /** The S3 region (`s3_region`); null: `AWS_REGION`, `AWS_DEFAULT_REGION`, else us-east-1. */
  s3Region: string | null;
  /** True when the root named object storage: `root` is a staging folder and committed jobs are uploaded to `remote`. */
  staged: boolean;
  /** Where each non-default setting came from: a file's path, `environment`, `ARTIFACT_BUS_ROOT` or `argument`. */
  sources: Record<string, string>;
}

/** The settings a bus config may hold, and what each must be (the Python package's `CONFIG_KEYS`). */
export const CONFIG_KEYS: Record<string, "path" | "int" | "count" | "paths" | "bool" | "url" | "str"> = {
  root: "path", catalog: "path", batch_size: "int", exports: "paths",
  builtin_exports: "bool", required: "bool", spool: "path", runs_keep: "int",
  snapshots_keep: "int", retain_versions: "int", retain_days: "count", retain_retired_days: "count",
  retain_rejected_days: "count", retain_duplicates_days: "count", retain_runs_days: "count", tmp_max_age: "int", compact_min_files: "count", compact_small_bytes: "int",
  compact_segment_rows: "int", export_memory_mb: "count", remote: "url", s3_endpoint: "str", s3_region: "str",
  ducklake: "str", lake_data: "url",
};
/** Environment variables and the setting each sets. */
export const ENV_KEYS: Record<string, string> = {
  ARTIFACT_BUS_ROOT: "root", ARTIFACT_BUS_CATALOG: "catalog", ARTIFACT_BUS_REQUIRED: "required",
  ARTIFACT_BUS_SPOOL: "spool", ARTIFACT_BUS_REMOTE: "remote", ARTIFACT_BUS_DUCKLAKE: "ducklake",
};

/** `~` and `~/…` expanded to the home folder. */
function expandUser(p: string): string {
  return p === "~" || p.startsWith("~/") ? path.join(homedir(), p.slice(1)) : p;
}

/** An absolute path with symlinks resolved as far as the path exists, like Python's `Path.resolve()`. */
export function resolvePath(p: string, base = process.cwd()): string {
  const abs = path.resolve(base, expandUser(p));
  const tail: string[] = [];
  let head = abs;
  for (;;) {
    try {
      return path.join(fs.realpathSync(head), ...tail.reverse());
    } catch {
      const parent = path.dirname(head);
      if (parent === head) return abs;
      tail.push(path.basename(head));
      head = parent;
    }
  }
}

/** True for an object-storage URL such as `s3://bucket/prefix`. */
export function isUrl(s: unknown): s is string {
  return typeof s === "string" && s.startsWith("s3://") && s.length > 5;
}

/** The bucket an `s3://` URL names ('' for none, as in `s3:///prefix`). */
export function urlBucket(url: string): string {
  return url.slice("s3://".length).split("/", 1)[0] ?? "";
}

const show = (v: unknown): string => (typeof v === "string" ? `'${v}'` : JSON.stringify(v) ?? String(v));

function checkValue(key: string, value: unknown, where: string): unknown {
  const kind = CONFIG_KEYS[key];
  const bad = (want: string) => new ConfigError(`${where}: key '${key}' must be ${want}, got ${show(value)}`);
  if (kind === "int" || kind === "count") {
    if (typeof value === "string" && /^\s*[0-9]+\s*$/.test(value)) value = Number(value.trim());
    if (typeof value === "bigint") value = Number(value);
    const low = kind === "int" ? 1 : 0;
    if (typeof value !== "number" || !Number.isInteger(value) || value < low) {
      throw bad(low ? "a positive integer" : "a whole number (0 or more)");
    }
  } else if (kind === "bool") {
    if (typeof value === "string" && ["1", "true", "yes", "0", "false", "no", ""].includes(value.toLowerCase())) {
      value = ["1", "true", "yes"].includes(value.toLowerCase());
    }
    if (typeof value !== "boolean") throw bad("true or false");
  } else if (kind === "path") {
    if (typeof value !== "string" || !value) throw bad("a path");
  } else if (kind === "url") {
    if (typeof value !== "string" || !value) throw bad("an s3:// URL or a path");
    if (key === "remote" && !isUrl(value)) throw bad("an s3:// URL");
    if (isUrl(value) && !urlBucket(value)) throw bad("an s3:// URL that names a bucket (s3://bucket/prefix)");
  } else if (kind === "str") {
    if (typeof value !== "string" || !value) throw bad("a non-empty string");
  } else if (kind === "paths") {
    if (typeof value === "string") value = [value];
    if (!Array.isArray(value) || !value.every((v) => typeof v === "string" && v)) throw bad("a list of paths");
  }
  return value;
}

const tomlCache = new Map<string, { stamp: string; data: Record<string, unknown> }>();

/** A TOML file parsed (cached until it changes), or its table `table` (`["tool", "artifact_bus"]`). */
function readToml(file: string, table: string[] = []): Record<string, unknown> {
  let stamp: string;
  try {
    const st = fs.statSync(file);
    stamp = `${st.ino}:${st.size}:${st.mtimeMs}`;
  } catch (e) {
    throw new ConfigError(`${file}: cannot read: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  let hit = tomlCache.get(file);
  if (hit?.stamp !== stamp) {
    let data: Record<string, unknown>;
    try {
      data = parseToml(fs.readFileSync(file, "utf8")) as Record<string, unknown>;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code) throw new ConfigError(`${file}: cannot read: ${(e as NodeJS.ErrnoException).code}`);
      throw new ConfigError(`${file}: not valid TOML: ${(e instanceof Error ? e.message : String(e)).split("\n")[0]}`);
    }
    hit = { stamp, data };
    tomlCache.set(file, hit);
  }
  let data: unknown = hit.data;
  for (const part of table) data = (data as Record<string, unknown>)[part] ?? {};
  if (data === null || typeof data !== "object" || Array.isArray(data)) throw new ConfigError(`${file}: [${table.join(".")}] must be a table`);
  return data as Record<string, unknown>;
}

type Values = Record<string, unknown>;

function absorb(values: Values, data: Record<string, unknown>, where: string, base: string, sources: Record<string, string>,
  allowed: string[] = Object.keys(CONFIG_KEYS)): void {
  for (const [key, raw] of Object.entries(data)) {
    if (!allowed.includes(key)) {
      throw new ConfigError(`${where}: unknown key '${key}' (known keys: ${[...allowed].sort().join(", ")})`);
    }
    let value = checkValue(key, raw, where);
    const kind = CONFIG_KEYS[key];
    if (kind === "path") value = resolvePath(value as string, base);
    else if (kind === "url") value = isUrl(value) ? (value as string).replace(/\/+$/, "") : resolvePath(value as string, base);
    else if (kind === "paths") value = (value as string[]).map((v) => resolvePath(v, base));
    values[key] = value;
    sources[key] = where;
  }
}

/** The project config: the file `ARTIFACT_BUS_CONFIG` names (all of it), else the nearest `pyproject.toml` with `[tool.artifact_bus]`. */
export function projectConfigFile(start = process.cwd()): { file: string; table: string[] } | null {
  const named = process.env["ARTIFACT_BUS_CONFIG"];
  if (named) return { file: path.resolve(named), table: [] };
  let here: string;
  try {
    here = fs.realpathSync(start);
  } catch {
    here = path.resolve(start);
  }
  for (;;) {
    const f = path.join(here, "pyproject.toml");
    let isFile = false;
    try {
      isFile = fs.statSync(f).isFile();
    } catch {
      /* none here */
    }
    if (isFile && "artifact_bus" in readToml(f, ["tool"])) return { file: f, table: ["tool", "artifact_bus"] };
    const parent = path.dirname(here);
    if (parent === here) return null;
    here = parent;
  }
}

/** The default spool folder. */
export function defaultSpool(): string {
  return path.join(homedir(), ".cache", "artifact_bus", "spool");
}

/** Resolve the bus settings as the Python package does (see the module's overview); options win over every file. */
export function loadConfig(opts: BusLocation = {}): Config {
  const cwd = process.cwd();
  const values: Values = {};
  const sources: Record<string, string> = {};
  const project = projectConfigFile(cwd);
  if (project !== null) {
    if (!fs.existsSync(project.file)) throw new ConfigError(`${project.file}: config file named by ARTIFACT_BUS_CONFIG does not exist`);
    absorb(values, readToml(project.file, project.table), project.file, path.dirname(project.file), sources);
  }
  const env: Record<string, string> = {};
  for (const [name, key] of Object.entries(ENV_KEYS)) {
    const v = process.env[name];
    if (v) env[key] = v;
  }
  let rootSrc: [string, string] | null = null;
  if (opts.root !== undefined) rootSrc = ["argument", String(opts.root)];
  else if (env["root"] !== undefined) rootSrc = ["ARTIFACT_BUS_ROOT", env["root"]];
  delete env["root"];
  let staged = false;
  if (rootSrc && isUrl(rootSrc[1])) {
    if (!urlBucket(rootSrc[1])) throw new ConfigError(`${rootSrc[0]}: bus root '${rootSrc[1]}' names no bucket (s3://bucket/prefix)`);
    // a producer on another machine: the bus root is object storage; jobs are staged on this machine
    const remote = rootSrc[1].replace(/\/+$/, "");
    values["remote"] = remote;
    sources["remote"] = rootSrc[0];
    const staging = expandUser(opts.spool || process.env["ARTIFACT_BUS_SPOOL"] || (values["spool"] as string | undefined) || defaultSpool());
    rootSrc = [rootSrc[0], path.join(staging, "remote", createHash("sha1").update(remote).digest("hex").slice(0, 16))];
    staged = true;
  }
  if (rootSrc) absorb(values, { root: rootSrc[1] }, rootSrc[0], cwd, sources);
  if (values["root"] === undefined) values["root"] = resolvePath(path.join(cwd, "data", "bus"));
  const root = values["root"] as string;
  const busFile = path.join(root, "bus.toml");
  let isFile = false;
  try {
    isFile = fs.statSync(busFile).isFile();
  } catch {
    /* no bus.toml */
  }
  if (isFile) absorb(values, readToml(busFile), busFile, root, sources, Object.keys(CONFIG_KEYS).filter((k) => k !== "root"));
  absorb(values, env, "environment", cwd, sources);
  const overrides: Record<string, unknown> = {};
  if (opts.required !== undefined && opts.required !== null) overrides["required"] = opts.required;
  if (opts.spool !== undefined && opts.spool !== null) overrides["spool"] = opts.spool;
  absorb(values, overrides, "argument", cwd, sources);
  const catalog = (values["catalog"] as string | undefined) ?? path.join(root, "artifact_bus.duckdb");
  const stem = (path.basename(catalog).split(".")[0] ?? "").toLowerCase();
  if (stem === "catalog" || stem === "bus") {
    throw new ConfigError(
      `${sources["catalog"] ?? "catalog"}: the catalog file may not be named '${path.basename(catalog)}': DuckDB would name the ` +
        `database '${stem}' and '${stem}.…' references would become ambiguous`,
    );
  }
  return {
    root, explicitRoot: "root" in sources, required: (values["required"] as boolean | undefined) ?? false,
    spool: (values["spool"] as string | undefined) ?? defaultSpool(),
    inbox: path.join(root, "inbox"), tmp: path.join(root, "inbox", ".tmp"),
    remote: (values["remote"] as string | undefined) ?? null,
    s3Endpoint: (values["s3_endpoint"] as string | undefined) ?? null,
    s3Region: (values["s3_region"] as string | undefined) ?? null,
    staged, sources,
  };
}

/** This machine's spool for the bus at `config.root`: a folder per root, named by the first 16 hex digits of sha1(root). */
export function spoolDir(config: Config): string {
  return path.join(config.spool, createHash("sha1").update(config.root).digest("hex").slice(0, 16));
}
