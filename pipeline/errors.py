"""The frame path's own error kinds; the gRPC service maps them to status codes at its edge."""

from __future__ import annotations


class FrameError(Exception):
    """This frame cannot be annotated; the stream (and the server) go on. `message` is one line for the caller."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadInput(FrameError):
    """The request itself is wrong: undecodable or damaged image, wrong raw size, out-of-range option."""


class TooLarge(BadInput):
    """The image declares more pixels than the configured limit (checked before decoding)."""


class DetectorUnavailable(FrameError):
    """The requested detector's weights were not found when the frame path was loaded."""


class Abandoned(FrameError):
    """Nobody waits for this frame any more (its call's deadline passed or it was cancelled): the work left
    is dropped at the next stage boundary."""


def invalid(message: str) -> BadInput:
    """Shorthand used by decoders and option checks."""
    return BadInput(message)
