-- Every row of one kind, with the job and run each row came from (one file per kind).
SELECT * FROM bus.{kind}
