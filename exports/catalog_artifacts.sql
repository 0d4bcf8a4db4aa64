-- The artifact listing: one row per stored artifact.
-- mode: append
SELECT job_id, name, kind, run_id, producer, rows, bytes, checksum, path, submitted_at, ingested_at
FROM catalog.artifacts
ORDER BY job_id, name
