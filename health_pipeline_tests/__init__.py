import os

# The tests' data starts on the pinned sample's first day (sample.SAMPLE_START); unpinned, the
# first partition would follow whatever data/raw holds. Set here, before any test module loads
# the definitions, and inherited by every CLI and webserver a test starts.
os.environ["HEALTH_PARTITIONS_START"] = "2026-06-01"
