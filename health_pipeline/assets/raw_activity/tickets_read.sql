{% import "assets/raw_activity/_raw_columns.sql" as raw %}
-- Every row of the optional tickets table (support tickets), classified: loaded, duplicate, or a
-- quarantine reason; one ticket per ticket_id, the earliest opened kept. A ticket without an
-- account, an opening time, or closed before it opened is quarantined. An unreadable closed_at,
-- or a priority or status not in the contract's lists, loads as NULL and is quarantined too.
CREATE OR REPLACE TEMP TABLE tickets_read AS
{% call raw.classified("ticket_id", "opened_at", ["account_id", "opened_at", "closed_at", "priority", "status"]) %}
    WITH ticket_rows AS (
        SELECT {{ raw.column(tickets, "ticket_id") }}, {{ raw.column(tickets, "account_id") }},
               {{ raw.timestamp(tickets, "opened_at") }} AS opened_at,
               {{ raw.timestamp(tickets, "closed_at") }} AS closed_at,
               {{ raw.value(tickets, "priority") }} AS priority_as_written,
               {{ raw.value(tickets, "status") }} AS status_as_written,
               source_file, source_row, {{ raw.row_json(tickets) }} AS row_json,
               {{ raw.unreadable(tickets, "opened_at") }} AS opened_unreadable,
               {{ raw.unreadable(tickets, "closed_at") }} AS closed_unreadable
        FROM {{ raw.rows(tickets) }}
    ),
    known_values AS (
        SELECT *,
               list_contains($priorities::VARCHAR[], priority_as_written) AS priority_known,
               list_contains($statuses::VARCHAR[], status_as_written) AS status_known
        FROM ticket_rows
    )
    SELECT ticket_id, account_id, opened_at, closed_at,
           CASE WHEN priority_known THEN priority_as_written END AS priority,
           CASE WHEN status_known THEN status_as_written END AS status,
           source_file, source_row, row_json,
           CASE
               WHEN closed_unreadable THEN 'unparseable_closed_at'
               WHEN NOT priority_known THEN 'unknown_priority'
               WHEN NOT status_known THEN 'unknown_status'
           END AS attribute_problem,
           CASE
               WHEN ticket_id IS NULL THEN 'null_id'
               WHEN account_id IS NULL THEN 'null_account_id'
               WHEN opened_unreadable THEN 'unparseable_opened_at'
               WHEN opened_at IS NULL THEN 'null_opened_at'
               WHEN closed_at < opened_at THEN 'closed_before_opened'
               ELSE {{ raw.account_problem("account_id") }}
           END AS problem
    FROM known_values
{% endcall %}
