-- core.daily_contact_activity when Spark runs the event stage (HEALTH_ENGINE=spark): a view of the
-- fact Spark published in the lake, `files` (its day folders' parquet files), so that every later
-- stage reads the days last published. Made again after each publish: a new tracked event adds a
-- column, which the days written before lack (NULL, as on DuckDB).
CREATE OR REPLACE VIEW core.daily_contact_activity AS
SELECT activity_date, * EXCLUDE (activity_date)
FROM read_parquet({{ files | literal }}, hive_partitioning = true, hive_types = {'activity_date': DATE},
                  union_by_name = true)
