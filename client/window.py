"""Flow control of one stream: at most `limit` frames sent and not yet answered.

The one window of the client: file mode's in-order stream and live mode's newest-frame stream
(streaming.py, which fer-web's live page uses too), the app's live session (session.py) and fer-bench's
streams (bench/stream.py) all count their frames in flight here.

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


class NewestFrameWindow(Generic[T]):
    """Live flow control: at most `limit` frames in flight (an InFlightWindow) and at most one waiting to be
    sent. A frame put while another waits replaces it, and the older one is dropped: the newest frame wins,
    as at fer-server (server/streams.py). So a producer faster than the server loses stale frames and never
    gains latency, and at most 1 + limit frames are held.

    Thread-safe: the producing side calls put() and finish(), the sending side take(), the receiving side
    answered(). Frame ids are the sender's, unique within the stream. `changed` is the window's condition
    (as InFlightWindow's). ValueError when limit is below 1.
    """

    def __init__(self, limit: int = DEFAULT_MAX_IN_FLIGHT) -> None:
        self._in_flight: InFlightWindow[T] = InFlightWindow(limit)
        self.changed = self._in_flight.changed
        self._waiting: tuple[int, T] | None = None
        self._finished = False
        self._closed = False

    @property
    def limit(self) -> int:
        """The most frames in flight at once."""
        return self._in_flight.limit

    @property
    def closed(self) -> bool:
        """True once close() was called."""
        return self._closed

    def __len__(self) -> int:
        """Frames in flight (the waiting one not counted)."""
        return len(self._in_flight)

    def put(self, frame_id: int, frame: T) -> tuple[int, T] | None:
        """Makes frame the one waiting to be sent; returns the (frame_id, frame) it replaced, None when none
        waited. After finish() or close() nothing more is sent: the frame itself is returned, dropped."""
        with self.changed:
            if self._finished or self._closed:
                return frame_id, frame
            replaced, self._waiting = self._waiting, (frame_id, frame)
            self.changed.notify_all()
            return replaced

    def finish(self) -> None:
        """No more frames will be put: take() returns None once the waiting frame is taken."""
        with self.changed:
            self._finished = True
            self.changed.notify_all()

    def take(self, block: bool = True) -> tuple[int, T] | None:
        """Blocks until a frame waits and fewer than limit are in flight, counts that frame in flight and
        returns its (frame_id, frame); None once finished with nothing waiting, or closed. With block False
        it returns at once: None unless a frame could go."""
        with self.changed:
            if block:
                self.changed.wait_for(lambda: self._closed or (self._waiting is None and self._finished)
                                      or (self._waiting is not None and self._in_flight.has_room()))
            if self._closed or self._waiting is None or not self._in_flight.has_room():
                return None
            frame_id, frame = taken = self._waiting
            self._waiting = None
            self._in_flight.sent(frame_id, frame)
            return taken

    def answered(self, frame_id: int, skipped: Iterable[int] = ()) -> T | None:
        """As InFlightWindow.answered: frees frame_id, the skipped ids and every frame sent before frame_id;
        returns frame_id's frame (None when it was not in flight)."""
        return self._in_flight.answered(frame_id, skipped)

    def close(self) -> None:
        """Drops the waiting frame and wakes every waiter; take() returns None from now on."""
        with self.changed:
            self._closed = True
            self._waiting = None
            self.changed.notify_all()
