-- The checkpoints from before the fact's first day ($first_day): left by a fact that was dropped
-- and rebuilt from a later day, they would hold days the fact no longer has.
DELETE FROM "core"."contact_recency" WHERE "month_end" < $first_day
