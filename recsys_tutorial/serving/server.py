"""Start and stop the API on loopback from Python: for the notebook, the tests and the benchmark.

The server runs in its own process (``python -m recsys_tutorial.serving.api``) so that its latency is
not shared with the caller's Python interpreter, binds 127.0.0.1 only, and is stopped on exit.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from .store import is_postgres_url

__all__ = ["free_port", "ApiServer"]


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM if the parent (a notebook kernel, pytest) dies without stopping it."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS reports free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ApiServer:
    """The API in a child process on loopback; a context manager that waits for ``/health`` and stops it.

    >>> with ApiServer("data/recommendations.sqlite") as server:   # doctest: +SKIP
    ...     httpx.get(f"{server.url}/health").json()

    ``db`` is a SQLite path or a ``postgresql://`` URL. It reaches the child as ``$RECSYS_TUTORIAL_DB``,
    not on its command line, so a password in the URL does not show in the process list.
    """

    def __init__(self, db: str | Path, port: int | None = None, startup_timeout_s: float = 30.0):
        self.db = db if is_postgres_url(db) else Path(db)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.startup_timeout_s = startup_timeout_s
        self.process: subprocess.Popen | None = None

    def start(self) -> ApiServer:
        package_root = str(Path(__file__).resolve().parents[2])  # so the child imports this same package
        env = {
            **os.environ, "RECSYS_TUTORIAL_DB": str(self.db),
            "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
        }  # fmt: skip
        command = [sys.executable, "-m", "recsys_tutorial.serving.api"]
        # Output goes to a file, not a pipe: an unread pipe fills up (~64 KiB of logs) and blocks the server.
        self.log_path = Path(tempfile.mkstemp(prefix="recsys-api-", suffix=".log")[1])
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                [*command, "--port", str(self.port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )  # fmt: skip
        atexit.register(self.stop)  # never leave a server behind, even if a notebook cell fails before stop()
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the API process exited with {self.process.returncode}:\n{self.log_path.read_text()}"
                )
            try:
                if httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the API did not answer on {self.url} within {self.startup_timeout_s} s")

    def stop(self) -> int | None:
        """Terminate the process (SIGTERM, then SIGKILL after 10 s); returns its exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log_path.unlink(missing_ok=True)
        return self.process.returncode

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
