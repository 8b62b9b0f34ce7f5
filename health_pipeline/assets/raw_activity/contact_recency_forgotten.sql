-- The month-end checkpoints of core.contact_recency (kept by contact_metrics) that the run's
-- rewritten days make stale: each holds the fact's days up to its month end, and the run rewrites
-- the fact from $first_day on (its range, and later days it extracts again).
DELETE FROM "core"."contact_recency" WHERE "month_end" >= $first_day
