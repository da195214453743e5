"""The "serving on HOST:PORT" log line: the one signal that a server takes calls.

Operators, the tests and fer-bench wait for it, and --port 0 reveals its real port there. It lives on its
own so that fer-server --replicas announces without importing torch into the parent process.
"""

from __future__ import annotations

import logging

log = logging.getLogger("ferstream.server")
SERVING_PREFIX = "serving on "


def announce_serving(host: str, port: int) -> None:
    """Logs "serving on HOST:PORT" (the line operators, tests and fer-bench wait for)."""
    log.info("%s%s:%d", SERVING_PREFIX, host, port)
