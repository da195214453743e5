"""uvicorn's HTTP/1.1 protocol with a bound on the time a client may take to send a request's headers, and
a bound on the log the gateway writes when it cannot accept connections.

uvicorn closes idle keep-alive connections, but not one that opened and sends its headers slowly or
never (a "slowloris" client), which would hold a socket and a file descriptor for ever; enough of them
and the gateway accepts nobody. This protocol closes a connection whose request headers are not complete
HEADER_TIMEOUT_S seconds after the connection opened, or after the previous answer on it. Request bodies
are bounded where they are read (ferstream.web.app, BODY_IDLE_TIMEOUT_S).

When accept() fails for want of file descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM), asyncio logs
the error with its traceback, and (Python 3.11's selector loop) once for each of the listening socket's
backlog of attempts, every second while it lasts: 10 MB of log in 5 s with `ulimit -n 64` and 200 callers.
AcceptErrorLog lets one line through per ACCEPT_ERROR_INTERVAL_S instead, saying how many it left out.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import time

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("ferstream.web")

# Browsers and HTTP libraries send a request's headers at once; 10 s is generous even on a slow link.
HEADER_TIMEOUT_S = 10.0


class HeaderTimeoutH11Protocol(H11Protocol):
    """H11Protocol whose connections get HEADER_TIMEOUT_S seconds for each request's headers."""

    _header_timer: asyncio.TimerHandle | None = None
    _timed_cycle: object = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not self._timed_cycle:  # a request's headers are in: its cycle began
            self._cancel_header_timer()

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self._cancel_header_timer()
        super().handle_websocket_upgrade(event)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Unless a pipelined request already began (its headers are in), the next one's headers are due.
        if not self.transport.is_closing() and self.cycle is not None and self.cycle.response_complete:
            self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._timed_cycle = self.cycle
        self._header_timer = self.loop.call_later(HEADER_TIMEOUT_S, self._headers_too_slow)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.cycle is self._timed_cycle and not self.transport.is_closing():
            peer = "{}:{}".format(*self.client) if self.client else "a client"
            log.info("closed the connection of %s: no complete request headers within %g s", peer, HEADER_TIMEOUT_S)
            self.transport.close()


# asyncio's message for an accept() that failed for want of a resource (asyncio/selector_events.py).
ACCEPT_ERROR_MESSAGE = "socket.accept() out of system resource"
# While accept() keeps failing, one line per this many seconds.
ACCEPT_ERROR_INTERVAL_S = 10.0


class AcceptErrorLog(logging.Filter):
    """A filter for the "asyncio" logger: its records of failed accept() calls (ACCEPT_ERROR_MESSAGE) become
    one line without a traceback, at most one per ACCEPT_ERROR_INTERVAL_S seconds, which says how many were
    left out since the last; other records pass unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self._next_s = -float("inf")
        self._left_out = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(ACCEPT_ERROR_MESSAGE):
            return True
        now = time.monotonic()
        if now < self._next_s:
            self._left_out += 1
            return False
        error = record.exc_info[1] if record.exc_info else None
        reason = getattr(error, "strerror", None) or "out of file descriptors or memory"
        record.msg = ("cannot accept connections: %s (is the open-files limit, ulimit -n, too low?); %d more "
                      "failed attempts since the last such line, which comes at most every %g s")
        record.args = (reason, self._left_out, ACCEPT_ERROR_INTERVAL_S)
        record.exc_info, record.exc_text = None, None
        self._next_s, self._left_out = now + ACCEPT_ERROR_INTERVAL_S, 0
        return True


class AnnouncingServer(uvicorn.Server):
    """uvicorn.Server that prints its start-up line on stderr once it serves: by then its signal handlers are
    in place, so a SIGTERM or SIGINT right after the line shuts it down cleanly (sent while the event loop was
    still being made, before, it left a half-made loop and a traceback)."""

    def __init__(self, config: uvicorn.Config, line: str) -> None:
        super().__init__(config)
        self.line = line

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            print(self.line, file=sys.stderr, flush=True)
