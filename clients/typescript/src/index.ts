/**
 * artifact-bus: submit Parquet jobs to an artifact_bus from Node.js and TypeScript, without ever opening the database.
 *
 *     import { submit, job } from "artifact-bus";
 *     await submit(rows, { kind: "fills", runId: "sim-001", producer: "SimulationArtifactWriter" });
 *     await job({ runId: "sim-001" }, (j) => { j.add("fills", fills); j.add("positions", positions); });
 */
export { submit, job, Job, flush, spooledJobs, SPOOLED_WARNING } from "./job.js";
export type { JobOptions, AddOptions, SubmitOptions, Receipt, Manifest, ArtifactEntry, Json } from "./job.js";
export {
  submitSlice, submitFeatureSet, submitSimulation, sliceIdentity, definitionHash, isoTime, SIMULATION_COLUMNS,
} from "./producers.js";
export type { Instant, SliceIdentity, SliceOptions, FeatureSetOptions, SimulationData, SimulationOptions } from "./producers.js";
export {
  BusError, BusUnavailable, ConfigError, ManifestError, KindError, SchemaMismatch, InvalidText, ManifestTooLarge, JobIdError,
} from "./errors.js";
export {
  PROTOCOL, MANIFEST, COMMIT, MAX_MANIFEST_BYTES, JOB_ID_TIMES, RESERVED_COLUMNS, checkKind, checkText, isJobId, jobMillis,
  checkJobId, newJobId, checksum, manifestSchema, manifestSchemaPath,
} from "./protocol.js";
export { loadConfig, spoolDir, projectConfigFile, CONFIG_KEYS, ENV_KEYS } from "./config.js";
export type { BusLocation, Config } from "./config.js";
export { s3Options, splitUrl } from "./remote.js";
export { toArrowTable, toParquet, typeName, parseType, schemaFields } from "./table.js";
export type { TableLike, Row, Columns, ColumnTypes, SchemaField } from "./table.js";
export { lineage } from "./lineage.js";
export type { Lineage } from "./lineage.js";
