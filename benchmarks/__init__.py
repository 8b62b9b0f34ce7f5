"""Benchmarks for the health pipeline: scales, scenarios and the seed-approach baseline."""
