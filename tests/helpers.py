"""Small builders shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from ferstream.v1 import emotion_pb2 as pb


def stream_frame(frame_id: int, data: bytes, **options) -> pb.StreamAnnotateRequest:
    """A StreamAnnotateRequest with an encoded image and optional AnnotateOptions fields."""
    return pb.StreamAnnotateRequest(frame_id=frame_id, image=pb.Image(encoded=data),
                                    options=pb.AnnotateOptions(**options))


def pump(app, until: Callable[[], bool], timeout: float, what: str) -> None:
    """Runs a ClientApp's Tk event loop until the condition holds.

    Fails the test when timeout seconds pass first, or when the window closes before the condition holds
    (a closed window runs no more events, so the condition could only hold by accident).
    """
    give_up = time.monotonic() + timeout
    while not until():
        if app.closed:
            pytest.fail(f"the window closed while waiting for {what}; app says: {app.status_message!r}")
        if time.monotonic() > give_up:
            pytest.fail(f"timed out waiting for {what}; app says: {app.status_message!r}")
        app.root.update()
        time.sleep(0.01)
