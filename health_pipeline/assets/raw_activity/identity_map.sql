-- Every merged-away user id and the contact it finally resolves to: (user_id, contact_id).
CREATE OR REPLACE TEMP TABLE identity_map AS
WITH RECURSIVE latest_migrations AS (
    -- If an id was merged twice, its latest merge wins.
    SELECT from_user_id, to_user_id
    FROM migrations_read
    WHERE outcome = 'loaded'
    QUALIFY row_number() OVER (PARTITION BY from_user_id ORDER BY utc_time DESC, to_user_id) = 1
),
merge_chain(user_id, contact_id, depth) AS (
    SELECT from_user_id, to_user_id, 1 FROM latest_migrations
    UNION ALL
    SELECT c.user_id, m.to_user_id, c.depth + 1
    FROM merge_chain c JOIN latest_migrations m ON m.from_user_id = c.contact_id
    -- Longer chains are treated as cycles and stop resolving.
    WHERE c.depth < $max_merge_depth
)
SELECT user_id, arg_max(contact_id, depth) AS contact_id
FROM merge_chain GROUP BY user_id
