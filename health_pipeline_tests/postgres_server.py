"""A private PostgreSQL server for the sync tests: Debian's `postgresql` binaries, a fresh data
directory, listening on 127.0.0.1 on a free port, with password authentication.

initdb refuses to run as root, so as root the server runs as the `postgres` user that the Debian
package creates. Without the binaries the tests that need a server are skipped, unless
HEALTH_REQUIRE_POSTGRES is set (as .ci/run sets it), in which case they fail.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

PASSWORD = "sync-test-secret"
USER = "health"


def binaries() -> Path | None:
    """The newest installed PostgreSQL's bin folder."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    return found[-1].parent if found else None


def require_binaries() -> None:
    """Skip the calling module without PostgreSQL, unless HEALTH_REQUIRE_POSTGRES says it must be there."""
    if binaries() is None:
        if os.environ.get("HEALTH_REQUIRE_POSTGRES"):
            raise RuntimeError("HEALTH_REQUIRE_POSTGRES is set but PostgreSQL is not installed "
                               "(apt-get install postgresql)")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; .ci/run does)", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PostgresServer:
    bin_dir: Path
    root: Path
    port: int

    def url(self, password: str = PASSWORD, port: int | None = None, database: str = "postgres") -> str:
        return f"postgresql://{USER}:{password}@127.0.0.1:{port or self.port}/{database}"

    def _run(self, *command: str) -> None:
        as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*as_postgres, *command], check=True, capture_output=True, text=True)

    def start(self) -> PostgresServer:
        data = self.root / "data"
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            shutil.chown(pwfile, "postgres")
        self._run(str(self.bin_dir / "initdb"), "-D", str(data), "-U", USER, "--pwfile", str(pwfile),
                  "--auth", "scram-sha-256", "-E", "UTF8", "--no-sync")
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(data), "-w", "-l", str(self.root / "log"), "start",
                  "-o", f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off")
        return self

    def stop(self) -> None:
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "stop")


def start_server() -> PostgresServer | None:
    bin_dir = binaries()
    if bin_dir is None:
        return None
    root = Path(tempfile.mkdtemp(prefix="health-pg-"))
    root.chmod(0o755)
    return PostgresServer(bin_dir, root, free_port()).start()
