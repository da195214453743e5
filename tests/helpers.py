"""Small builders shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

from ferstream.v1 import emotion_pb2 as pb


def stream_frame(frame_id: int, data: bytes, **options) -> pb.StreamAnnotateRequest:
    """A StreamAnnotateRequest with an encoded image and optional AnnotateOptions fields."""
    return pb.StreamAnnotateRequest(frame_id=frame_id, image=pb.Image(encoded=data),
                                    options=pb.AnnotateOptions(**options))
