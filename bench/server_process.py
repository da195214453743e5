"""fer-server as a child process of the bench: started on a free loopback port, CPU time read from /proc."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ferstream.server.ready import SERVING_PREFIX


class BenchError(RuntimeError):
    """The bench cannot run (no server, no data, a stream failed); the message says why."""


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a live process (all its threads); None off Linux or once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the parenthesised command name; utime and stime are fields 14 and 15 of the whole line.
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ServerProcess:
    """`python -m ferstream.server.cli --port 0 ...`, stopped (SIGTERM, then kill) on exit from `with`."""

    def __init__(self, models_dir: Path, threads: int | None, max_streams: int, startup_timeout_s: float = 120.0):
        self.command = [sys.executable, "-m", "ferstream.server.cli", "--host", "127.0.0.1", "--port", "0",
                        "--models-dir", str(models_dir), "--max-streams", str(max_streams)]
        if threads is not None:
            self.command += ["--threads", str(threads)]
        self.startup_timeout_s = startup_timeout_s
        self.log = tempfile.NamedTemporaryFile(prefix="fer-bench-server-", suffix=".log", delete=False)
        self.process: subprocess.Popen | None = None
        self.address = ""

    def log_text(self) -> str:
        """Everything the server has logged so far."""
        return Path(self.log.name).read_text(errors="replace")

    def __enter__(self) -> ServerProcess:
        self.process = subprocess.Popen(self.command, stdout=self.log, stderr=subprocess.STDOUT)
        give_up = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < give_up:
            for line in self.log_text().splitlines():
                if SERVING_PREFIX in line:
                    self.address = line.rsplit(SERVING_PREFIX, 1)[1].strip()
                    return self
            if self.process.poll() is not None:
                raise BenchError(f"fer-server exited with {self.process.returncode}:\n{self.log_text()}")
            time.sleep(0.1)
        self.stop()
        raise BenchError(f"fer-server did not start within {self.startup_timeout_s:.0f} s:\n{self.log_text()}")

    def cpu_seconds(self) -> float | None:
        """The server's user + system CPU seconds so far (None once it has exited)."""
        return process_cpu_seconds(self.process.pid) if self.process else None

    def stop(self) -> None:
        """SIGTERM (the server drains), then SIGKILL after 30 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.log.close()
        os.unlink(self.log.name)
