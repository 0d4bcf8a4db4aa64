-- Every quarantined job with its machine-readable reason.
-- mode: append
SELECT job_id, rejected_at, code, field, message, path, run_id, producer, status
FROM catalog.rejections
ORDER BY rejected_at, job_id
