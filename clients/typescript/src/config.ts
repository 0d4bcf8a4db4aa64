/** Where the bus is: the root, its inbox, the local spool, and whether the bus is required. */
import { createHash } from "node:crypto";
import { realpathSync } from "node:fs";
import { homedir } from "node:os";
import path from "node:path";

export interface BusLocation {
  /** Root folder of the bus (absolute, symlinks resolved as far as it exists). */
  root?: string | undefined;
  /** Throw instead of spooling when the bus is unavailable (default: `ARTIFACT_BUS_REQUIRED`, else false). */
  required?: boolean | undefined;
  /** Folder of this machine's spools (default: `ARTIFACT_BUS_SPOOL`, else `~/.cache/artifact_bus/spool`). */
  spool?: string | undefined;
}

export interface Config {
  root: string;
  /** True when the root was named (option or `ARTIFACT_BUS_ROOT`): then a missing parent folder means an unmounted volume. */
  explicitRoot: boolean;
  required: boolean;
  spool: string;
  inbox: string;
  tmp: string;
}

/** An absolute path with symlinks resolved as far as the path exists, like Python's `Path.resolve()`. */
export function resolvePath(p: string): string {
  if (p === "~" || p.startsWith("~/")) p = path.join(homedir(), p.slice(1));
  const abs = path.resolve(p);
  const tail: string[] = [];
  let head = abs;
  for (;;) {
    try {
      return path.join(realpathSync(head), ...tail.reverse());
    } catch {
      const parent = path.dirname(head);
      if (parent === head) return abs;
      tail.push(path.basename(head));
      head = parent;
    }
  }
}

function envBool(name: string): boolean | undefined {
  const v = process.env[name];
  if (v === undefined || v === "") return undefined;
  const s = v.trim().toLowerCase();
  if (["1", "true", "yes"].includes(s)) return true;
  if (["0", "false", "no"].includes(s)) return false;
  throw new Error(`environment: ${name} must be true or false, got ${JSON.stringify(v)}`);
}

/** Resolve the bus settings: the option, else the environment, else the defaults (the same as the Python package's). */
export function loadConfig(opts: BusLocation = {}): Config {
  const envRoot = process.env["ARTIFACT_BUS_ROOT"];
  const named = opts.root ?? (envRoot ? envRoot : undefined);
  const root = resolvePath(named ?? path.join("data", "bus"));
  const envSpool = process.env["ARTIFACT_BUS_SPOOL"];
  const spool = resolvePath(opts.spool ?? (envSpool ? envSpool : path.join(homedir(), ".cache", "artifact_bus", "spool")));
  const required = opts.required ?? envBool("ARTIFACT_BUS_REQUIRED") ?? false;
  return {
    root, explicitRoot: named !== undefined, required, spool,
    inbox: path.join(root, "inbox"), tmp: path.join(root, "inbox", ".tmp"),
  };
}

/** This machine's spool for the bus at `config.root`: a folder per root, named by the first 16 hex digits of sha1(root). */
export function spoolDir(config: Config): string {
  return path.join(config.spool, createHash("sha1").update(config.root).digest("hex").slice(0, 16));
}
