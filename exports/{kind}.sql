-- Every row of one kind, with the job and run each row came from (one file per kind).
-- mode: append
SELECT * FROM bus.{kind}
