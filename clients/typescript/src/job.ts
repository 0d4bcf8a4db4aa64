/**
 * Producers: `submit()` one table or build a multi-artifact `job()`, atomically, without ever opening the database.
 *
 * The commit sequence is the Python producer's: write everything under `<root>/inbox/.tmp/<job_id>/`,
 * `manifest.json`, then `COMMIT` (`sha256:<hex of the manifest bytes>`), fsync every file and the folder,
 * rename the folder to `<root>/inbox/<job_id>` (the commit point), fsync `inbox/`. When the bus cannot be
 * written the job goes to this machine's spool instead (the same layout as Python's), unless the bus is required.
 * A root `s3://bucket/prefix` stages the job on this machine, commits it there, then uploads it (see `remote.ts`).
 *
 * Everything the writer would refuse is refused here first, before anything is committed: text that is not
 * valid Unicode or holds NUL, column names that clash (also ignoring case) or are reserved, a manifest above
 * `MAX_MANIFEST_BYTES`, a job id whose time is not sane.
 */
import fs from "node:fs";
import path from "node:path";
import { loadConfig, spoolDir, type BusLocation, type Config } from "./config.js";
import { BusError, BusUnavailable, ManifestError, ManifestTooLarge } from "./errors.js";
import { copyFiles, fsReason, fsyncDir, fsyncFile, isFsError, removeTree, writeNew } from "./fsutil.js";
import { lineage, type Lineage } from "./lineage.js";
import {
  checkJsonText, checkKind, checkName, checksum, checkText, COMMIT, MANIFEST, MAX_MANIFEST_BYTES, newJobId, PROTOCOL,
} from "./protocol.js";
import { deliver, deliverStranded, flushJobs, inFlight, s3Options, type Delivery } from "./remote.js";
import { checkColumns, toArrowTable, toParquet, type ColumnTypes, type SchemaField, type TableLike } from "./table.js";

/** JSON values, as `meta` holds them. */
export type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

export interface JobOptions extends BusLocation {
  /** The producer's run (a simulation, a notebook run). */
  runId?: string | null | undefined;
  /** What wrote the job (default: the script's file name). */
  producer?: string | undefined;
  /** Free JSON describing the job. */
  meta?: Record<string, Json> | undefined;
  /** Idempotency key: a second job with an already ingested key is recorded as its duplicate. */
  key?: string | undefined;
  /**
   * With `key`: this job replaces the accepted job(s) with the same key in the `bus.<kind>` views (a
   * re-materialised slice or feature set); writes `"replace": true` in the manifest. Without a key it is an error.
   */
  replace?: boolean | undefined;
}

export interface AddOptions {
  /** Artifact name, unique within the job (default: the kind, then `<kind>-2`, `<kind>-3`…). */
  name?: string | undefined;
  /** Column types in pyarrow's spelling for rows and columns (see `ColumnTypes`). */
  types?: ColumnTypes | undefined;
}

export interface SubmitOptions extends JobOptions, AddOptions {
  /** The artifact's kind: a plain lower-case identifier; it names the view `bus.<kind>`. */
  kind: string;
}

/** One artifact as the manifest lists it. */
export interface ArtifactEntry {
  name: string;
  kind: string;
  file: string;
  rows: number;
  bytes: number;
  checksum: string;
  schema: { fields: SchemaField[] };
}

/** The job's manifest.json. */
export interface Manifest {
  protocol: typeof PROTOCOL;
  job_id: string;
  run_id: string | null;
  producer: string;
  submitted_at: string;
  key: string | null;
  replace?: true;
  meta: Record<string, Json>;
  lineage: Lineage;
  artifacts: ArtifactEntry[];
}

/** What `submit` and `job` return. */
export interface Receipt {
  jobId: string;
  /** `"committed"`: in the bus's inbox; `"spooled"`: in this machine's spool, moved to the bus by the next successful submit or `flush()`. */
  status: "committed" | "spooled";
  /** Where the job is now: its folder in the inbox or the spool, or its `s3://…/inbox/<job_id>` URL. */
  path: string;
  artifacts: { name: string; kind: string; rows: number }[];
  rows: number;
  bytes: number;
}

function defaultProducer(): string {
  return process.argv[1] ? path.basename(process.argv[1]) : "node";
}

function checkOptions(o: JobOptions): void {
  if (o.runId !== undefined && o.runId !== null) {
    if (typeof o.runId !== "string" || o.runId.length > 256) throw new ManifestError("runId must be a string of at most 256 characters", "run_id");
    checkText(o.runId, "run_id");
  }
  if (o.producer !== undefined) {
    if (typeof o.producer !== "string" || o.producer.length < 1 || o.producer.length > 256) {
      throw new ManifestError("producer must be a non-empty string of at most 256 characters", "producer");
    }
    checkText(o.producer, "producer");
  }
  if (o.key !== undefined) {
    if (typeof o.key !== "string" || o.key.length < 1 || o.key.length > 512) throw new ManifestError("key must be a non-empty string of at most 512 characters", "key");
    checkText(o.key, "key");
  }
  if (o.replace !== undefined && typeof o.replace !== "boolean") throw new ManifestError("replace must be true or false", "replace");
  if (o.replace === true && o.key === undefined) {
    throw new ManifestError("replace: true needs a key: it replaces the earlier jobs with the same key", "replace");
  }
  if (o.meta !== undefined && (o.meta === null || typeof o.meta !== "object" || Array.isArray(o.meta))) {
    throw new ManifestError("meta must be a plain object", "meta");
  }
  if (o.meta !== undefined) checkJsonText(o.meta, "meta");
}

function jsonCopy(meta: Record<string, Json>): Record<string, Json> {
  try {
    const text = JSON.stringify(meta);
    const size = Buffer.byteLength(text, "utf8");
    if (size > MAX_MANIFEST_BYTES) {
      throw new ManifestTooLarge(`meta is ${size} bytes as JSON: a manifest may hold at most ${MAX_MANIFEST_BYTES} bytes`, "meta");
    }
    return JSON.parse(text) as Record<string, Json>;
  } catch (e) {
    if (e instanceof ManifestError) throw e;
    throw new ManifestError(`meta is not JSON-serialisable: ${e instanceof Error ? e.message : String(e)}`, "meta");
  }
}

/**
 * Check the bus can take a job and create `inbox/.tmp`; throws a file-system error when it cannot.
 * A named root that does not exist and whose parent folder does not exist either is unavailable: a missing
 * parent usually means an unmounted volume, and writing there would fill the local disk instead.
 */
function ensureBus(config: Config): void {
  const { root, explicitRoot, tmp } = config;
  if (explicitRoot && !config.staged && !fs.existsSync(root) && !fs.existsSync(path.dirname(root))) {
    const e = new Error(`its parent folder is missing (is the volume mounted?): ${path.dirname(root)}`) as NodeJS.ErrnoException;
    e.code = "ENOENT";
    e.syscall = "stat";
    e.path = path.dirname(root);
    throw e;
  }
  fs.mkdirSync(tmp, { recursive: true });
}

/** Emitted (as a process warning of this type) when a job is spooled because the bus is unavailable. */
export const SPOOLED_WARNING = "SpooledWarning";

/**
 * One atomic job: `add` artifacts, then `commit`. Nothing is visible in the inbox before the commit;
 * `abort` (or a failed `job(options, build)`) removes everything written so far.
 */
export class Job {
  readonly jobId: string = newJobId();
  readonly config: Config;
  readonly runId: string | null;
  readonly producer: string;
  readonly meta: Record<string, Json>;
  readonly key: string | null;
  readonly replace: boolean;
  readonly lineage: Lineage;
  readonly artifacts: ArtifactEntry[] = [];
  private dir: string | null = null;
  private spooled = false;
  private spoolReason: string | null = null;
  private done: Receipt | null = null;
  private aborted = false;
  private localCommit: string | null = null;

  constructor(options: JobOptions = {}) {
    checkOptions(options);
    this.config = loadConfig(options);
    if (this.config.staged) s3Options(this.config); // a bad S3 endpoint fails now, not after the local commit
    this.runId = options.runId ?? null;
    this.meta = jsonCopy(options.meta ?? {});
    this.key = options.key ?? null;
    this.replace = options.replace === true;
    this.lineage = lineage();
    this.producer = options.producer ?? defaultProducer();
  }

  /** The receipt once committed, else null. */
  get receipt(): Receipt | null {
    return this.done;
  }

  /** The bus's `inbox/.tmp/<job_id>`, created; throws a file-system error when the bus is unavailable. */
  private busDir(): string {
    ensureBus(this.config);
    const d = path.join(this.config.tmp, this.jobId);
    fs.mkdirSync(d);
    return d;
  }

  /** The bus cannot be written: throw if it is required, else switch to the spool (moving what was written so far). */
  private unavailable(e: unknown): string {
    const reason = isFsError(e) && e.message.startsWith("its parent") ? e.message : fsReason(e);
    const root = this.config.root;
    if (this.config.required) {
      this.abort();
      throw new BusUnavailable(`bus root ${root} is unavailable (${reason}) and the bus is required: job ${this.jobId} was not written`);
    }
    const sd = spoolDir(this.config);
    const d = path.join(sd, "tmp", this.jobId);
    try {
      fs.mkdirSync(d, { recursive: true });
      fs.writeFileSync(path.join(sd, "root.txt"), root);
      if (this.dir !== null) {
        copyFiles(this.dir, d);
        removeTree(this.dir);
      }
    } catch (e2) {
      removeTree(d);
      this.abort();
      throw new BusUnavailable(
        `bus root ${root} is unavailable (${reason}) and so is the spool ${sd} (${fsReason(e2)}): job ${this.jobId} was not written`,
      );
    }
    this.dir = d;
    this.spooled = true;
    this.spoolReason = reason;
    return d;
  }

  private workdir(): string {
    if (this.dir === null) {
      try {
        this.dir = this.busDir();
      } catch (e) {
        if (!isFsError(e)) throw e;
        this.unavailable(e);
      }
    }
    return this.dir as string;
  }

  /** Write `data` as an artifact of `kind` into the job; returns its manifest entry. */
  add(kind: string, data: TableLike, options: AddOptions = {}): ArtifactEntry {
    if (this.done !== null) throw new ManifestError(`job ${this.jobId} is already committed`);
    if (this.aborted) throw new ManifestError(`job ${this.jobId} was aborted`);
    checkKind(kind);
    const names = new Set(this.artifacts.map((a) => a.name));
    let name = options.name;
    if (name === undefined) {
      name = kind;
      for (let n = 2; names.has(name); n++) name = `${kind}-${n}`;
    } else {
      checkName(name);
      if (names.has(name)) throw new ManifestError(`job ${this.jobId}: artifact name ${JSON.stringify(name)} is used twice`);
    }
    const what = `${kind} artifact ${JSON.stringify(name)}`;
    const field = `artifacts.${name}.columns`;
    const table = toArrowTable(data, options.types ?? {}, what, field);
    const fields = checkColumns(table.schema, what, field);
    const bytes = toParquet(table);
    const file = `${name}.parquet`;
    for (let attempt = 1; ; attempt++) {
      const p = path.join(this.workdir(), file);
      try {
        writeNew(p, bytes); // made durable at commit, with the rest of the job
        break;
      } catch (e) {
        try { fs.unlinkSync(p); } catch { /* not written */ }
        if (!isFsError(e) || this.spooled || attempt === 2) {
          this.abort();
          if (!isFsError(e)) throw e;
          throw new BusUnavailable(`cannot write ${what} of job ${this.jobId} to ${path.dirname(p)}: ${fsReason(e)}; nothing was committed`);
        }
        this.unavailable(e);
      }
    }
    const entry: ArtifactEntry = {
      name, kind, file, rows: table.numRows, bytes: bytes.byteLength, checksum: checksum(bytes), schema: { fields },
    };
    this.artifacts.push(entry);
    return entry;
  }

  /** The manifest as it would be committed now. */
  manifest(): Manifest {
    return {
      protocol: PROTOCOL, job_id: this.jobId, run_id: this.runId, producer: this.producer,
      submitted_at: new Date().toISOString(), key: this.key, ...(this.replace ? { replace: true as const } : {}),
      meta: this.meta, lineage: this.lineage, artifacts: this.artifacts,
    };
  }

  /** The manifest's bytes, checked against the limits the writer enforces. */
  private manifestBytes(): Buffer {
    checkJsonText(this.lineage, "lineage");
    const raw = Buffer.from(JSON.stringify(this.manifest(), null, 1), "utf8");
    if (raw.byteLength > MAX_MANIFEST_BYTES) {
      throw new ManifestTooLarge(
        `job ${this.jobId}: manifest.json would be ${raw.byteLength} bytes, above the protocol's ${MAX_MANIFEST_BYTES} ` +
          `(${this.artifacts.length} artifacts; meta and column lists count): the writer would reject it unread`, "manifest",
      );
    }
    return raw;
  }

  private commitIn(d: string, destDir: string): string {
    const raw = this.manifestBytes();
    for (const f of [MANIFEST, COMMIT]) fs.rmSync(path.join(d, f), { force: true });
    writeNew(path.join(d, MANIFEST), raw);
    writeNew(path.join(d, COMMIT), checksum(raw)); // written last: it commits the manifest
    for (const f of [...this.artifacts.map((a) => a.file), MANIFEST, COMMIT]) fsyncFile(path.join(d, f));
    fsyncDir(d);
    fs.mkdirSync(destDir, { recursive: true });
    const dest = path.join(destDir, this.jobId);
    fs.renameSync(d, dest); // the commit point
    fsyncDir(destDir);
    return dest;
  }

  /**
   * Write manifest.json, then COMMIT, then rename the job into the inbox (or the spool): the only commit point.
   * For an `s3://` root the job is then uploaded, its `COMMIT` object last (or spooled when object storage is unreachable).
   */
  async commit(): Promise<Receipt> {
    if (this.done !== null) return this.done;
    if (this.aborted) throw new ManifestError(`job ${this.jobId} was aborted`);
    if (this.localCommit !== null) {
      throw new ManifestError(`job ${this.jobId} is already committed on this machine (${this.localCommit}): the next submit or flush() sends it`);
    }
    if (this.artifacts.length === 0) throw new ManifestError(`job ${this.jobId} has no artifacts: call add() first`);
    try {
      this.manifestBytes();
    } catch (e) {
      this.abort();
      throw e;
    }
    const sd = spoolDir(this.config);
    const d = this.workdir();
    let dest: string;
    try {
      dest = this.commitIn(d, this.spooled ? path.join(sd, "jobs") : this.config.inbox);
    } catch (e) {
      if (!isFsError(e)) { this.abort(); throw e; }
      if (this.spooled) {
        this.abort();
        throw new BusUnavailable(`cannot commit job ${this.jobId} to the spool: ${fsReason(e)}`);
      }
      try {
        dest = this.commitIn(this.unavailable(e), path.join(sd, "jobs"));
      } catch (e2) {
        if (e2 instanceof BusError) throw e2;
        this.abort();
        throw new BusUnavailable(`cannot commit job ${this.jobId}: ${fsReason(e2)}`);
      }
    }
    this.dir = null;
    if (this.config.staged && !this.spooled) {
      // a producer on another machine: hand the job to object storage
      // this process hands it on itself: no sweep for stranded jobs here takes it (no await since the rename)
      inFlight.add(this.jobId);
      this.localCommit = dest;
      let outcome: Delivery;
      try {
        outcome = await deliver(this.config, dest);
      } catch (e) {
        if (!fs.existsSync(dest)) { // nothing kept (a required bus)
          this.localCommit = null;
          this.aborted = true;
        }
        if (e instanceof BusError) throw e;
        throw new BusUnavailable(
          `job ${this.jobId} is committed on this machine (${dest}) but could not be handed to object storage ` +
            `(${fsReason(e)}): the next submit or flush() sends it`,
        );
      } finally {
        inFlight.delete(this.jobId);
      }
      this.localCommit = null;
      dest = outcome.where;
      if (outcome.status === "spooled") {
        this.spooled = true;
        this.spoolReason = outcome.reason;
      }
    }
    const status = this.spooled ? "spooled" : "committed";
    this.done = {
      jobId: this.jobId, status, path: dest,
      artifacts: this.artifacts.map(({ name, kind, rows }) => ({ name, kind, rows })),
      rows: this.artifacts.reduce((s, a) => s + a.rows, 0),
      bytes: this.artifacts.reduce((s, a) => s + a.bytes, 0),
    };
    if (this.spooled) {
      process.emitWarning(
        `bus root ${this.config.remote ?? this.config.root} is unavailable (${this.spoolReason}): job ${this.jobId} was spooled to ` +
          `${path.dirname(dest)}; the next successful submit or flush() moves it to the bus`,
        { type: SPOOLED_WARNING, code: "ARTIFACT_BUS_SPOOLED" },
      );
    } else if (fs.existsSync(path.join(sd, "jobs"))) {
      try {
        await flushConfig(this.config);
      } catch (e) {
        if (!(e instanceof BusError)) throw e; // the spool stays for the next try
      }
    } else if (this.config.staged) {
      try {
        await deliverStranded(this.config);
      } catch {
        /* the next commit or flush() tries again */
      }
    }
    return this.done;
  }

  /** Remove everything written so far; nothing ever became visible. */
  abort(): void {
    if (this.done !== null) return;
    this.aborted = true;
    if (this.dir !== null) removeTree(this.dir);
    this.dir = null;
  }
}

/**
 * Start one atomic job of several artifacts. With `build`, the job commits when `build` returns
 * (or its promise resolves) and leaves nothing behind when it throws; the promise gives the receipt:
 *
 *     const receipt = await job({ runId: "sim-001" }, (j) => { j.add("fills", fills); j.add("positions", positions); });
 *
 * Without `build` it returns the `Job`, to `add` to and `commit` (or `abort`) by hand.
 */
export function job(options?: JobOptions): Job;
export function job(options: JobOptions, build: (j: Job) => void | Promise<void>): Promise<Receipt>;
export function job(options: JobOptions = {}, build?: (j: Job) => void | Promise<void>): Job | Promise<Receipt> {
  const j = new Job(options);
  if (build === undefined) return j;
  return (async () => {
    try {
      await build(j);
    } catch (e) {
      j.abort();
      throw e;
    }
    return await j.commit();
  })();
}

/** Submit one table as a job of one artifact of `kind`; resolves to the receipt (`jobId`, `status`). */
export async function submit(data: TableLike, options: SubmitOptions): Promise<Receipt> {
  const { kind, name, types, ...jobOptions } = options;
  return job(jobOptions, (j) => {
    j.add(kind, data, { name, types });
  });
}

/** Ids of the jobs waiting in this machine's spool for the bus. */
export function spooledJobs(options: BusLocation = {}): string[] {
  return listSpool(loadConfig(options));
}

function listSpool(config: Config): string[] {
  try {
    return fs.readdirSync(path.join(spoolDir(config), "jobs")).filter((n) => !n.startsWith(".")).sort();
  } catch {
    return [];
  }
}

/**
 * Move the jobs spooled on this machine into the bus's inbox; resolves to their ids. Throws
 * `BusUnavailable` when the bus is still unavailable.
 */
export async function flush(options: BusLocation = {}): Promise<string[]> {
  return flushConfig(loadConfig(options));
}

async function flushConfig(config: Config): Promise<string[]> {
  const sd = spoolDir(config);
  if (config.staged) {
    // a remote producer: first the jobs committed here whose producer died before uploading them, then the spool
    const stranded = await deliverStranded(config);
    return [...stranded, ...(await flushJobs(config, path.join(sd, "jobs")))];
  }
  const jobs = listSpool(config);
  const done: string[] = [];
  for (const jid of jobs) {
    const src = path.join(sd, "jobs", jid);
    const dest = path.join(config.inbox, jid);
    if (!fs.existsSync(path.join(src, COMMIT))) continue;
    // a private temporary name: a concurrent flush of the same job cannot mix its copy with this one
    const tmp = path.join(config.tmp, `${jid}.flush-${process.pid}-${Date.now()}`);
    try {
      if (!fs.existsSync(dest)) {
        ensureBus(config); // the same availability check a submit makes
        fs.mkdirSync(tmp, { recursive: true });
        copyFiles(src, tmp);
        fsyncDir(tmp);
        try {
          fs.renameSync(tmp, dest);
          fsyncDir(config.inbox);
        } catch (e) {
          // another flush got there first: the job is in the inbox already
          if (!(isFsError(e) && (e.code === "ENOTEMPTY" || e.code === "EEXIST"))) throw e;
          removeTree(tmp);
        }
      }
    } catch (e) {
      removeTree(tmp);
      if (!isFsError(e) && !(e instanceof BusUnavailable)) throw e;
      throw new BusUnavailable(
        `bus root ${config.root} is still unavailable (${e instanceof BusUnavailable ? e.message : fsReason(e)}): ` +
          `${jobs.length - done.length} jobs stay spooled in ${path.join(sd, "jobs")}`,
      );
    }
    removeTree(src);
    done.push(jid);
  }
  return done;
}
