"""The one exception the frame path raises for a frame it cannot annotate, with its gRPC code."""

from __future__ import annotations

import grpc


class FrameError(Exception):
    """This frame cannot be annotated; the stream (and the server) go on."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message: str) -> FrameError:
    return FrameError(grpc.StatusCode.INVALID_ARGUMENT, message)
