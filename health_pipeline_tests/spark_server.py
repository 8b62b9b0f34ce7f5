"""A private Spark Connect server for the Spark engine's tests: pyspark's own JARs (the wheel bundles
Spark Connect), local[2], listening on 127.0.0.1 on a free port, in UTC.

Without pyspark or a Java runtime the tests that need a server are skipped, unless
HEALTH_REQUIRE_SPARK is set (as .ci/run sets it), in which case they fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from health_pipeline_tests.postgres_server import free_port

STARTED = "Spark Connect server started"
START_SECONDS = 180  # a cold JVM on a busy 2-core machine


def spark_home() -> Path | None:
    try:
        import pyspark
    except ImportError:
        return None
    return Path(pyspark.__file__).parent


def require_spark() -> None:
    """Skip the calling module without pyspark or Java, unless HEALTH_REQUIRE_SPARK says they must be there."""
    missing = ("pyspark (pip install -e '.[spark]')" if spark_home() is None
               else "a Java runtime (apt-get install openjdk-17-jre-headless)" if shutil.which("java") is None
               else None)
    if missing:
        if os.environ.get("HEALTH_REQUIRE_SPARK"):
            raise RuntimeError(f"HEALTH_REQUIRE_SPARK is set but {missing} is not installed")
        pytest.skip(f"{missing} is not installed; .ci/run installs it", allow_module_level=True)


class SparkConnectServer:
    """`spark-submit` of Spark's own SparkConnectServer class, stopped with `stop`."""

    def __init__(self):
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="health-spark-"))
        home = spark_home()
        log = (self.root / "server.log").open("w")
        self.process = subprocess.Popen(
            [str(home / "bin" / "spark-submit"), "--class", "org.apache.spark.sql.connect.service.SparkConnectServer",
             "--master", "local[2]", "--driver-memory", "1g",
             "--conf", "spark.connect.grpc.binding.address=127.0.0.1",
             "--conf", f"spark.connect.grpc.binding.port={self.port}",
             "--conf", "spark.ui.enabled=false", "--conf", "spark.sql.shuffle.partitions=4",
             "--conf", f"spark.local.dir={self.root}", "--conf", "spark.sql.session.timeZone=UTC",
             "spark-internal"],
            env={**os.environ, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": "127.0.0.1"},
            stdout=log, stderr=subprocess.STDOUT, cwd=self.root, start_new_session=True)
        deadline = time.monotonic() + START_SECONDS
        while STARTED not in (self.root / "server.log").read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the Spark Connect server did not start: {self.log_tail()}")
            time.sleep(0.5)

    @property
    def url(self) -> str:
        return f"sc://127.0.0.1:{self.port}"

    def log_tail(self) -> str:
        return " | ".join((self.root / "server.log").read_text().splitlines()[-5:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.root, ignore_errors=True)
