-- The run's bad raw rows, one per row set aside, before they replace the range in raw.quarantine.
CREATE OR REPLACE TEMP TABLE quarantine_rows (
    partition_date DATE, source_table VARCHAR, reason VARCHAR,
    source_file VARCHAR, source_row BIGINT, row_json JSON
)
