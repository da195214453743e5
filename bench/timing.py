"""Repeating an action for a while and reading the clock around it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Measured:
    """How many calls ran in how many seconds."""

    calls: int
    seconds: float

    @property
    def ms_per_call(self) -> float:
        """Milliseconds per call."""
        return self.seconds * 1000.0 / self.calls

    @property
    def calls_per_s(self) -> float:
        """Calls per second."""
        return self.calls / self.seconds


def repeat_for(action: Callable[[], object], seconds: float, min_calls: int = 1) -> Measured:
    """Calls action until seconds have passed and it ran at least min_calls times."""
    calls = 0
    start = time.perf_counter()
    while True:
        action()
        calls += 1
        elapsed = time.perf_counter() - start
        if calls >= min_calls and elapsed >= seconds:
            return Measured(calls, elapsed)
