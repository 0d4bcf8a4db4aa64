/** Durable file operations: the fsyncs of the commit protocol. */
import fs from "node:fs";
import path from "node:path";

/** Flush a file's data to disk. */
export function fsyncFile(p: string): void {
  const fd = fs.openSync(p, "r");
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Make the entries of folder `p` (creations, renames) durable. */
export function fsyncDir(p: string): void {
  const fd = fs.openSync(p, "r");
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Write `data` to a new file (it must not exist yet). */
export function writeNew(p: string, data: Uint8Array | string): void {
  fs.writeFileSync(p, data, { flag: "wx" });
}

/** Remove a folder and everything in it; never throws. */
export function removeTree(p: string): void {
  try {
    fs.rmSync(p, { recursive: true, force: true });
  } catch {
    /* best effort */
  }
}

/** Copy every file of folder `src` into the existing folder `dest`, fsyncing each copy. */
export function copyFiles(src: string, dest: string): void {
  for (const name of fs.readdirSync(src)) {
    fs.copyFileSync(path.join(src, name), path.join(dest, name));
    fsyncFile(path.join(dest, name));
  }
}

/** True for a Node.js file-system error (it has a string `code` such as ENOENT, EACCES, ENOSPC, EROFS). */
export function isFsError(e: unknown): e is NodeJS.ErrnoException {
  return e instanceof Error && typeof (e as NodeJS.ErrnoException).code === "string" && "syscall" in e;
}

/** A short reason for a file-system error: its code and the path. */
export function fsReason(e: unknown): string {
  if (isFsError(e)) return `${e.code}${e.path ? `: ${e.path}` : ""}`;
  return e instanceof Error ? e.message : String(e);
}
