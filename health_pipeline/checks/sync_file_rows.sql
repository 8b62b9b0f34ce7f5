-- Rows per snapshot date in the sync files $files.
SELECT snapshot_date, count(*) FROM read_parquet($files) GROUP BY ALL
