-- Every segment's effective scorecard as tables, which account_health.sql joins to the metrics.
-- The asset fills them from the configuration before it scores.
CREATE OR REPLACE TEMP TABLE scorecard_segments (
    segment VARCHAR, healthy_from DOUBLE, neutral_from DOUBLE, scorecard_version VARCHAR);
CREATE OR REPLACE TEMP TABLE scorecard_groups (segment VARCHAR, group_name VARCHAR, weight DOUBLE);
CREATE OR REPLACE TEMP TABLE scorecard_components (
    segment VARCHAR, component VARCHAR, group_name VARCHAR, metric VARCHAR, missing VARCHAR,
    max_points DOUBLE);
CREATE OR REPLACE TEMP TABLE scorecard_bins (
    segment VARCHAR, component VARCHAR, bin VARCHAR, lower DOUBLE, upper DOUBLE,
    lower_inclusive BOOLEAN, upper_inclusive BOOLEAN, points DOUBLE);
