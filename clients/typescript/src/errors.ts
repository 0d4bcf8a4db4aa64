/** Errors thrown on purpose, mirroring the Python package's error classes. */

/** Base of every error artifact-bus throws on purpose. */
export class BusError extends Error {
  override name = "BusError";
}

/** A config file, key or value is wrong (`bus.toml`, `[tool.artifact_bus]`, an `ARTIFACT_BUS_*` variable). */
export class ConfigError extends BusError {
  override name = "ConfigError";
}

/**
 * A job or its manifest breaks the job protocol (bad kind, bad name, bad data). `field` names the part at
 * fault when there is one: `run_id`, `producer`, `key`, `replace`, `meta.<path>`, `job_id`, `manifest`,
 * `artifacts.<name>.name`, `artifacts.<name>.columns.<column>`, …
 */
export class ManifestError extends BusError {
  override name = "ManifestError";
  readonly field: string | null;
  constructor(message: string, field: string | null = null) {
    super(message);
    this.field = field;
  }
}

/** A kind name is not a plain identifier. */
export class KindError extends ManifestError {
  override name = "KindError";
}

/** Data does not fit the types it declares, uses a type the bus cannot carry faithfully, or has clashing column names. */
export class SchemaMismatch extends ManifestError {
  override name = "SchemaMismatch";
}

/** A text field of the manifest is not valid Unicode (a lone surrogate) or holds a NUL character. */
export class InvalidText extends ManifestError {
  override name = "InvalidText";
}

/** The manifest would be larger than the protocol allows (`MAX_MANIFEST_BYTES`, 1 MiB): the writer would reject it unread. */
export class ManifestTooLarge extends ManifestError {
  override name = "ManifestTooLarge";
}

/** A job id does not decode to a sane time (this machine's clock is far off): the writer orders and files jobs by it. */
export class JobIdError extends ManifestError {
  override name = "JobIdError";
}

/** The bus root cannot be written (missing mount, read-only, disk full) and the job could not be spooled, or the bus is required. */
export class BusUnavailable extends BusError {
  override name = "BusUnavailable";
}
