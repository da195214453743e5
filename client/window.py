"""Flow control of one stream: at most `limit` frames sent and not yet answered.

The one window of the client: file mode's in-order stream (library.py), the app's live session
(session.py) and fer-bench's streams (bench/stream.py) all count their frames in flight here.

A frame leaves the window when it is answered, when the server lists it in an answer's skipped_frame_ids
(it will get no answer of its own), or when a frame sent after it is answered: fer-server answers a
stream's frames in the order they were sent, so an older frame still counted would never be answered.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Generic, TypeVar

# Frames sent but not yet answered, by default. fer-server works on up to two frames of a stream at once
# (one detected while the other is classified; server/streams.py) and replaces a third that waits: with 2
# it stays busy and replaces none, while one answer travels back (docs/performance.md#design-measurements).
DEFAULT_MAX_IN_FLIGHT = 2

T = TypeVar("T")


class InFlightWindow(Generic[T]):
    """Frames sent and not yet answered, each with a value of the sender's (what it needs to handle the
    answer: the frame, its send time...), in the order they were sent.

    Thread-safe. The sending side waits for room (wait_for_room) and records each frame (sent); the
    receiving side records each answer (answered). `changed` is the window's condition (on an RLock):
    an owner with state of its own may hold it around several calls and wait on it for conditions that
    include has_room(); every change notifies it. ValueError when limit is below 1.
    """

    def __init__(self, limit: int = DEFAULT_MAX_IN_FLIGHT) -> None:
        if limit < 1:
            raise ValueError(f"max_in_flight must be at least 1, not {limit}")
        self.limit = limit
        self.changed = threading.Condition(threading.RLock())
        self._in_flight: dict[int, T | None] = {}  # frame id -> the sender's value, in send order
        self._closed = False

    def __len__(self) -> int:
        with self.changed:
            return len(self._in_flight)

    def has_room(self) -> bool:
        """True while fewer than limit frames are in flight."""
        with self.changed:
            return len(self._in_flight) < self.limit

    def wait_for_room(self, timeout: float | None = None) -> bool:
        """Blocks until there is room (True), or until timeout seconds pass or close() is called (False)."""
        with self.changed:
            self.changed.wait_for(lambda: self._closed or len(self._in_flight) < self.limit, timeout)
            return not self._closed and len(self._in_flight) < self.limit

    def sent(self, frame_id: int, value: T | None = None) -> None:
        """Counts frame_id as in flight (again, at the end of the send order, if it was re-sent)."""
        with self.changed:
            self._in_flight.pop(frame_id, None)
            self._in_flight[frame_id] = value

    def answered(self, frame_id: int, skipped: Iterable[int] = ()) -> T | None:
        """Frees frame_id, the skipped frame ids and every frame sent before frame_id; returns frame_id's
        value (None when it was not in flight, or was sent without one)."""
        with self.changed:
            for skipped_id in skipped:
                self._in_flight.pop(skipped_id, None)
            value = None
            if frame_id in self._in_flight:
                for older in list(self._in_flight):
                    if older == frame_id:
                        break
                    del self._in_flight[older]
                value = self._in_flight.pop(frame_id)
            self.changed.notify_all()
            return value

    def clear(self) -> None:
        """Forgets every frame in flight (a new stream after a reconnect)."""
        with self.changed:
            self._in_flight.clear()
            self.changed.notify_all()

    def close(self) -> None:
        """Wakes every waiter; wait_for_room returns False from now on."""
        with self.changed:
            self._closed = True
            self.changed.notify_all()
