"""The service's edge: the frame path's error kinds become gRPC status codes here and nowhere else."""

from __future__ import annotations

import grpc

from ferstream.pipeline.errors import BadInput, DetectorUnavailable, FrameError


class CallError(FrameError):
    """A frame error the service itself decides, with its status: the caller stopped waiting, or a bug."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def status_code(error: FrameError) -> grpc.StatusCode:
    """INVALID_ARGUMENT for bad input (too large included), FAILED_PRECONDITION for a missing detector."""
    if isinstance(error, CallError):
        return error.code
    if isinstance(error, BadInput):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(error, DetectorUnavailable):
        return grpc.StatusCode.FAILED_PRECONDITION
    return grpc.StatusCode.INTERNAL
