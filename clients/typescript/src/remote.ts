/**
 * Producers anywhere: a bus root `s3://bucket/prefix` means object storage. The job is committed in a staging
 * folder on this machine (as on disk), then its objects are uploaded to `<prefix>/inbox/<job_id>/`: the
 * artifact files and `manifest.json` first, the `COMMIT` object last — the commit point on object storage.
 * When object storage cannot be reached, the job moves into this machine's spool, and the next successful
 * submit or `flush()` uploads it. The same layout and rules as the Python producer (`artifact_bus.remote`).
 */
import type { S3Client } from "@aws-sdk/client-s3";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { spoolDir, type Config } from "./config.js";
import { BusUnavailable, ConfigError, ManifestError } from "./errors.js";
import { fsyncDir, isFsError, removeTree } from "./fsutil.js";
import { COMMIT, isJobId, jobMillis, MANIFEST } from "./protocol.js";

/** `s3://bucket/some/prefix` → `["bucket", "some/prefix"]`. */
export function splitUrl(url: string): [string, string] {
  const m = /^s3:\/\/([^/]+)\/?(.*)$/.exec(url);
  if (!m) throw new ConfigError(`'${url}' is not an s3:// URL naming a bucket (s3://bucket/prefix)`);
  return [m[1] as string, (m[2] as string).replace(/^\/+|\/+$/g, "")];
}

/** How to reach the object storage of `config`, as the Python package's `s3_options`: endpoint, region, credentials from the environment. */
export function s3Options(config: Config): { endpoint: string | null; region: string; pathStyle: boolean; key: string | null; secret: string | null; token: string | null } {
  const env = process.env;
  const endpoint = config.s3Endpoint || env["AWS_ENDPOINT_URL_S3"] || env["AWS_ENDPOINT_URL"] || null;
  let url: string | null = null;
  if (endpoint) {
    let u: URL | null = null;
    try {
      u = new URL(endpoint.includes("://") ? endpoint : `https://${endpoint}`);
    } catch {
      u = null;
    }
    if (!u || !["http:", "https:"].includes(u.protocol) || !u.host) {
      throw new ConfigError(`s3_endpoint '${endpoint}' must look like http://host:port or https://host`);
    }
    url = `${u.protocol}//${u.host}`;
  }
  return {
    endpoint: url, pathStyle: url !== null,
    region: config.s3Region || env["AWS_REGION"] || env["AWS_DEFAULT_REGION"] || "us-east-1",
    key: env["AWS_ACCESS_KEY_ID"] || null, secret: env["AWS_SECRET_ACCESS_KEY"] || null, token: env["AWS_SESSION_TOKEN"] || null,
  };
}

const clients = new Map<string, S3Client>();
/** The S3 SDK, loaded on first use: a producer on a local disk never pays for it. */
const sdk = () => import("@aws-sdk/client-s3");

/**
 * An S3 client for `config` (one per settings). Credentials come only from `AWS_ACCESS_KEY_ID` /
 * `AWS_SECRET_ACCESS_KEY` (/ `AWS_SESSION_TOKEN`); without them requests are anonymous — never a probe of a
 * cloud metadata service or a credentials file.
 */
export async function s3Client(config: Config): Promise<S3Client> {
  const o = s3Options(config);
  const k = JSON.stringify(o);
  let c = clients.get(k);
  if (c === undefined) {
    const { S3Client } = await sdk();
    c = new S3Client({
      region: o.region,
      ...(o.endpoint ? { endpoint: o.endpoint, forcePathStyle: true } : {}),
      ...(o.key
        ? { credentials: { accessKeyId: o.key, secretAccessKey: o.secret ?? "", ...(o.token ? { sessionToken: o.token } : {}) } }
        : { credentials: { accessKeyId: "", secretAccessKey: "" }, signer: { sign: async (request) => request } }),
      maxAttempts: 3,
      requestHandler: { connectionTimeout: 3000, requestTimeout: 60_000 },
      // checksums only where S3 requires them: every S3-compatible store (SeaweedFS, MinIO, R2) takes the requests
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
    });
    clients.set(k, c);
  }
  return c;
}

function remoteOf(config: Config): { bucket: string; prefix: string } {
  if (!config.remote) throw new ConfigError("no `remote` is configured: set it to the s3:// URL where producers submit");
  const [bucket, prefix] = splitUrl(config.remote);
  return { bucket, prefix };
}

function objectKey(prefix: string, jobId: string, name: string): string {
  return `${prefix ? `${prefix}/` : ""}inbox/${jobId}/${name}`;
}

function unavailable(config: Config, e: unknown, what: string): BusUnavailable {
  const err = e as { name?: string; message?: string; code?: string };
  const detail = [err.name, err.code, err.message].filter((x) => x && x !== "Error").join(": ") || String(e);
  return new BusUnavailable(`object storage ${config.remote} is unavailable (${detail.split(/\s+/).join(" ").slice(0, 300)}): ${what}`);
}

/**
 * Upload a job committed in a local folder to `<remote>/inbox/<job_id>/`: the artifact files and `manifest.json`
 * first, the `COMMIT` object last. Returns the job's URL. Uploading the same job again is harmless. Throws
 * `BusUnavailable` when object storage is unreachable (or refuses the objects).
 */
export async function uploadJob(config: Config, jobDir: string): Promise<string> {
  const jid = path.basename(jobDir);
  const names = fs.readdirSync(jobDir).sort();
  if (!names.includes(COMMIT)) throw new ManifestError(`job ${jid}: ${jobDir} has no COMMIT: only committed jobs are uploaded`);
  const { bucket, prefix } = remoteOf(config);
  const client = await s3Client(config);
  const { PutObjectCommand } = await sdk();
  for (const n of [...names.filter((x) => x !== COMMIT), COMMIT]) {
    const body = fs.readFileSync(path.join(jobDir, n)); // a local error propagates as it is
    try {
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: objectKey(prefix, jid, n), Body: body }));
    } catch (e) {
      throw unavailable(config, e, `job ${jid} was not uploaded`);
    }
  }
  return `${config.remote}/inbox/${jid}`;
}

/** True when `<remote>/inbox/<job_id>/COMMIT` exists: the job is committed on object storage. */
export async function remoteCommitted(config: Config, jobId: string): Promise<boolean> {
  const { bucket, prefix } = remoteOf(config);
  const { HeadObjectCommand } = await sdk();
  try {
    await (await s3Client(config)).send(new HeadObjectCommand({ Bucket: bucket, Key: objectKey(prefix, jobId, COMMIT) }));
    return true;
  } catch (e) {
    const status = (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    if (status === 404) return false;
    throw unavailable(config, e, `cannot see whether job ${jobId} is there`);
  }
}

export interface Delivery {
  status: "committed" | "spooled";
  /** The job's URL when committed, its spool folder when spooled. */
  where: string;
  reason: string | null;
}

/**
 * Hand a job committed in the local staging inbox to object storage and remove the local copy. When object
 * storage is unreachable the job moves into this machine's spool (`status: "spooled"`); a `required` bus
 * throws `BusUnavailable` instead, keeping nothing.
 */
export async function deliver(config: Config, jobDir: string): Promise<Delivery> {
  const jid = path.basename(jobDir);
  let url: string;
  try {
    url = await uploadJob(config, jobDir);
  } catch (e) {
    // another producer's sweep on this machine took the job meanwhile: it is committed if its COMMIT is there
    if (isFsError(e) && e.code === "ENOENT" && !fs.existsSync(jobDir) && (await remoteCommitted(config, jid).catch(() => false))) {
      return { status: "committed", where: `${config.remote}/inbox/${jid}`, reason: null };
    }
    if (!(e instanceof BusUnavailable)) throw e;
    if (config.required) {
      removeTree(jobDir);
      throw new BusUnavailable(`${e.message}, and the bus is required`);
    }
    const jobs = path.join(spoolDir(config), "jobs");
    fs.mkdirSync(jobs, { recursive: true });
    fs.writeFileSync(path.join(spoolDir(config), "root.txt"), String(config.remote));
    fs.renameSync(jobDir, path.join(jobs, jid));
    fsyncDir(jobs);
    fsyncDir(path.dirname(jobDir));
    return { status: "spooled", where: path.join(jobs, jid), reason: e.message };
  }
  removeTree(jobDir);
  return { status: "committed", where: url, reason: null };
}

function byJobOrder(a: string, b: string): number {
  const ka = isJobId(a) ? jobMillis(a) : 0;
  const kb = isJobId(b) ? jobMillis(b) : 0;
  return ka - kb || (a < b ? -1 : a > b ? 1 : 0);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Ids of the jobs this process is committing and handing to object storage right now. */
export const inFlight = new Set<string>();

/**
 * The producer of a job committed in the staging inbox is handing it on: a job of this process that is in
 * flight, or a job of another process on this machine that still runs (by the pid and host in its lineage).
 */
function producerRunning(jobDir: string): boolean {
  if (inFlight.has(path.basename(jobDir))) return true;
  try {
    const m = JSON.parse(fs.readFileSync(path.join(jobDir, MANIFEST), "utf8")) as { lineage?: { host?: unknown; pid?: unknown } };
    const { host, pid } = m.lineage ?? {};
    if (pid === process.pid && host === os.hostname()) return false; // this process's, not in flight: stranded here
    return host === os.hostname() && typeof pid === "number" && Number.isSafeInteger(pid) && pid > 0 && alive(pid);
  } catch {
    return true; // unreadable now: leave it for a later sweep
  }
}

/**
 * Hand on the jobs committed in this machine's staging inbox whose producer died before uploading them;
 * returns their ids. A job whose producer (by the pid and host in its lineage) still runs is left to it.
 * Object storage unreachable: the job moves into the spool, never deleted, even for a required bus.
 */
export async function deliverStranded(config: Config): Promise<string[]> {
  let names: string[];
  try {
    names = fs.readdirSync(config.inbox).filter((n) => !n.startsWith(".")).sort(byJobOrder);
  } catch {
    return [];
  }
  const keep = { ...config, required: false };
  const done: string[] = [];
  for (const n of names) {
    const d = path.join(config.inbox, n);
    try {
      if (!fs.lstatSync(d).isDirectory() || !fs.existsSync(path.join(d, COMMIT))) continue;
    } catch {
      continue; // handed on meanwhile
    }
    if (producerRunning(d)) continue;
    await deliver(keep, d);
    done.push(n);
  }
  return done;
}

/** Upload the committed jobs spooled in `jobsDir`, in job order, removing each once uploaded; returns their ids. */
export async function flushJobs(config: Config, jobsDir: string): Promise<string[]> {
  let names: string[];
  try {
    names = fs.readdirSync(jobsDir).filter((n) => fs.existsSync(path.join(jobsDir, n, COMMIT))).sort(byJobOrder);
  } catch {
    return [];
  }
  const done: string[] = [];
  for (const n of names) {
    try {
      await uploadJob(config, path.join(jobsDir, n));
    } catch (e) {
      if (!(e instanceof BusUnavailable)) throw e;
      throw new BusUnavailable(`${e.message}; ${names.length - done.length} jobs stay spooled in ${jobsDir}`);
    }
    removeTree(path.join(jobsDir, n)); // another flush may have uploaded it too: harmless
    done.push(n);
  }
  return done;
}
