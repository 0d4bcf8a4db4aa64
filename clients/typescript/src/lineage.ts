/** Where a job comes from, captured from the running Node.js process. */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export interface Lineage {
  host: string;
  user: string | null;
  pid: number;
  language: string;
  node: string;
  packages: Record<string, string>;
  git_commit: string | null;
  git_dirty: boolean | null;
  cwd: string | null;
  script: string | null;
  [key: string]: unknown;
}

function git(...args: string[]): string | null {
  try {
    return execFileSync("git", args, { encoding: "utf8", timeout: 5000, stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return null;
  }
}

function packageVersion(name: string): string | null {
  try {
    let dir = path.dirname(fileURLToPath(import.meta.resolve(name)));
    for (;;) {
      try {
        const pkg = JSON.parse(readFileSync(path.join(dir, "package.json"), "utf8")) as { name?: string; version?: string };
        if (pkg.name === name && typeof pkg.version === "string") return pkg.version;
      } catch {
        /* no package.json here */
      }
      const parent = path.dirname(dir);
      if (parent === dir) return null;
      dir = parent;
    }
  } catch {
    return null;
  }
}

let staticCache: { cwd: string; value: Omit<Lineage, "pid"> } | undefined;

function staticLineage(): Omit<Lineage, "pid"> {
  const cwd = process.cwd();
  if (staticCache?.cwd === cwd) return staticCache.value;
  let user: string | null = null;
  try {
    user = process.env["LOGNAME"] || process.env["USER"] || os.userInfo().username || null;
  } catch {
    user = null;
  }
  const packages: Record<string, string> = {};
  for (const name of ["artifact-bus", "apache-arrow", "parquet-wasm"]) {
    const v = name === "artifact-bus" ? ownVersion() : packageVersion(name);
    if (v) packages[name] = v;
  }
  const commit = git("rev-parse", "HEAD");
  const dirty = commit === null ? null : Boolean(git("status", "--porcelain", "--untracked-files=no"));
  const script = process.argv[1] ? path.resolve(process.argv[1]) : null;
  const value = {
    host: os.hostname(), user, language: "typescript", node: process.versions.node, packages,
    git_commit: commit, git_dirty: dirty, cwd, script,
  };
  staticCache = { cwd, value };
  return value;
}

/** This package's own version. */
export function ownVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string };
  return pkg.version;
}

/** Where a job comes from: host, user, pid, language, Node.js and package versions, the git commit of the working repository. */
export function lineage(): Lineage {
  return { ...staticLineage(), pid: process.pid } as Lineage;
}
