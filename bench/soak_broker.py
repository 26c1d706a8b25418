"""The soak's private broker: ``redis-server`` on a free port, a child process of the soak.

It runs without persistence, so restarting it loses every message it held,
queued or delivered and not yet acknowledged, as a crashed Redis without
persistence does. Importing this module does not need Django.
"""

from __future__ import annotations

import socket
import subprocess
import threading
from pathlib import Path


class BrokerError(RuntimeError):
    """``redis-server`` could not be started."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """``redis-server`` on ``127.0.0.1:port``, in the foreground, as a child of the soak."""

    def __init__(self, port: int, log_path: Path, *, ready_timeout: float = 30.0):
        self.port = port
        self.log_path = log_path
        self.ready_timeout = ready_timeout
        self.process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and wait for its "Ready to accept connections" line."""
        process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--logfile",
                "",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.process = process
        ready = threading.Event()

        def follow() -> None:
            assert process.stdout is not None
            with self.log_path.open("a") as log:
                for line in process.stdout:
                    log.write(line)
                    log.flush()
                    if "Ready to accept connections" in line:
                        ready.set()

        threading.Thread(target=follow, daemon=True).start()
        if not ready.wait(self.ready_timeout):
            self.stop()
            raise BrokerError(
                f"redis-server on port {self.port} was not ready; see {self.log_path}"
            )

    def stop(self) -> None:
        """SIGKILL: the server keeps nothing, so a kill and a shutdown lose the same."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        process.wait()
