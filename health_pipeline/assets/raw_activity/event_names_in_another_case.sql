-- The names of loaded events that match a tracked event only when case is ignored
-- ('Run_Query' for run_query). They count toward no tracked event: most likely a tracking
-- plan that changed its spelling, so the run reports them.
SELECT event_table_name, lower(event_table_name) AS tracked_as, count(*) AS events
FROM events_classified
WHERE outcome = 'loaded'
  AND list_contains($tracked_events, lower(event_table_name))
  AND NOT list_contains($tracked_events, event_table_name)
GROUP BY ALL
ORDER BY ALL
