"""A stream's newest-frame slot: a client that outruns the server loses stale frames, never gains latency."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Arrival:
    frame_id: int
    request: Any
    arrived: float = field(default_factory=time.perf_counter)


class NewestFrameSlot:
    """Holds at most one unprocessed frame; putting a newer one skips the older."""

    def __init__(self) -> None:
        self.pending: Arrival | None = None
        self.skipped: list[int] = []
        self.received = 0
        self.closed = False
        self.changed = asyncio.Event()

    def put(self, arrival: Arrival) -> None:
        self.received += 1
        if self.closed:  # the server is draining: frames sent after that are not taken
            return
        if self.pending is not None:
            self.skipped.append(self.pending.frame_id)
        self.pending = arrival
        self.changed.set()

    def close(self) -> None:
        """No more frames will come; the pending one is still handed out."""
        self.closed = True
        self.changed.set()

    async def take(self) -> Arrival | None:
        """The newest frame, waiting for one; None once closed and empty."""
        while self.pending is None:
            if self.closed:
                return None
            self.changed.clear()
            await self.changed.wait()
        arrival, self.pending = self.pending, None
        return arrival

    def take_skipped(self) -> list[int]:
        skipped, self.skipped = self.skipped, []
        return skipped
