/** Errors thrown on purpose, mirroring the Python package's error classes. */

/** Base of every error artifact-bus throws on purpose. */
export class BusError extends Error {
  override name = "BusError";
}

/** A job or its manifest breaks the job protocol (bad kind, bad name, bad data). */
export class ManifestError extends BusError {
  override name = "ManifestError";
}

/** A kind name is not a plain identifier. */
export class KindError extends ManifestError {
  override name = "KindError";
}

/** Data does not fit the types it declares, or uses a type the bus cannot carry faithfully. */
export class SchemaMismatch extends ManifestError {
  override name = "SchemaMismatch";
}

/** The bus root cannot be written (missing mount, read-only, disk full) and the job could not be spooled, or the bus is required. */
export class BusUnavailable extends BusError {
  override name = "BusUnavailable";
}
