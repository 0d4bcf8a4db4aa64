/** Shared test helpers: temporary folders, a clean environment, the repository's protocol folder. */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** The package folder (tests run from build-test/test/). */
export const PACKAGE_DIR = fileURLToPath(new URL("../../", import.meta.url));
/** The repository's protocol/ folder, when the package sits in its repository. */
export const PROTOCOL_DIR = process.env["ARTIFACT_BUS_PROTOCOL_DIR"] ?? path.resolve(PACKAGE_DIR, "..", "..", "protocol");

const made: string[] = [];
process.on("exit", () => {
  for (const d of made) fs.rmSync(d, { recursive: true, force: true });
});

/** A fresh temporary folder; removed when the process exits. */
export function tempDir(prefix = "artifact-bus-test-"): string {
  const d = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), prefix)));
  made.push(d);
  return d;
}

/** No ARTIFACT_BUS_* variable from outside, and a spool of the test's own. Returns the spool folder. */
export function cleanEnv(): string {
  for (const k of Object.keys(process.env)) if (k.startsWith("ARTIFACT_BUS_")) delete process.env[k];
  const spool = path.join(tempDir("artifact-bus-spool-"), "spool");
  process.env["ARTIFACT_BUS_SPOOL"] = spool;
  return spool;
}

/** Names in a folder, without dot-entries; [] when it does not exist. */
export function ls(dir: string): string[] {
  try {
    return fs.readdirSync(dir).filter((n) => !n.startsWith(".")).sort();
  } catch {
    return [];
  }
}
