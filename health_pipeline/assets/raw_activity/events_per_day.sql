-- The raw event files' rows and the UTC days their times span, from the parquet footers alone
-- (row counts and the time column's statistics): the batch plan's estimate of events a day.
-- Days is NULL when the statistics are not plain timestamps.
SELECT (SELECT coalesce(sum(num_rows), 0) FROM parquet_file_metadata($files)),
       (SELECT date_diff('day', CAST(min(TRY_CAST(stats_min_value AS TIMESTAMP)) AS DATE),
                         CAST(max(TRY_CAST(stats_max_value AS TIMESTAMP)) AS DATE)) + 1
        FROM parquet_metadata($files)
        WHERE lower(path_in_schema) = 'time')
