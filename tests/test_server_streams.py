"""One stream object end to end, on the real detection workers and model, without the gRPC layer around it.

- a stream answers every frame it takes, in order, each face on its track; a frame whose track settings are
  bad is answered with its error in its place and the tracks go on past it;
- closing a stream's answers (what a cancelled call does) abandons its frame still in the workers: the
  workers drop it unanswered and hold no frame afterwards.

The gRPC surface of the same (status codes, limits, skipped ids under load) is tested through real servers
in test_server_api.py, test_server_workers.py, test_limits.py and test_faults.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import cv2
import grpc
import pytest

from ferstream.model.tiers import FAST
from ferstream.pipeline.detectors import load_detectors
from ferstream.pipeline.framepath import load_frame_path
from ferstream.server.metrics import ServerMetrics
from ferstream.server.streams import StreamDefaults, StreamLimits, StreamRegistry
from ferstream.server.workers import FrameWorkers
from ferstream.v1 import emotion_pb2 as pb
from helpers import stream_frame

# Long enough that no limit ends a stream while a loaded machine works on it.
LIMITS = StreamLimits(idle_s=120.0, lifetime_s=0.0)
# A 4096 x 4096 frame searched for faces of 20 px: seconds of detection (16 tiles), so it is surely still in
# the workers when the stream is closed.
LARGE_SIDE = 4096


@pytest.fixture(scope="module")
def workers(fer_models_dir: Path):
    frame_path = load_frame_path(fer_models_dir, None, tuple(range(7)), LARGE_SIDE * LARGE_SIDE, 32)
    workers = FrameWorkers(frame_path, lambda: load_detectors(fer_models_dir), 1, 32, 5.0, ServerMetrics())
    workers.start()
    yield workers
    workers.stop()


def registry(workers: FrameWorkers) -> StreamRegistry:
    """A registry of its own on the shared workers (and their metrics)."""
    return StreamRegistry(2, LIMITS, StreamDefaults(FAST), workers, workers.metrics)


def counted(workers: FrameWorkers, name: str, **labels: str) -> float:
    """The value of one of the workers' counters (0 before its first count)."""
    return workers.metrics.registry.get_sample_value(name, labels) or 0.0


async def from_queue(requests: asyncio.Queue) -> AsyncIterator[pb.StreamAnnotateRequest]:
    """The requests put on the queue, until None (the client half-closes)."""
    while (request := await requests.get()) is not None:
        yield request


def test_a_stream_answers_in_order_and_a_refused_frame_keeps_its_place(workers: FrameWorkers, photo: bytes) -> None:
    streams = registry(workers)
    failed = counted(workers, "ferstream_frames_failed_total", code="INVALID_ARGUMENT")
    answered = counted(workers, "ferstream_frames_answered_total")

    async def lockstep() -> tuple[list[pb.StreamAnnotateResponse], str]:
        requests: asyncio.Queue = asyncio.Queue()
        stream = streams.open("test", None)
        answers = stream.answers(from_queue(requests))
        responses = []
        for request in (stream_frame(1, photo), stream_frame(2, photo, track_smoothing_ms=-1.0),
                        stream_frame(3, photo)):
            requests.put_nowait(request)
            responses.append(await anext(answers))
        requests.put_nowait(None)
        assert [response async for response in answers] == []
        streams.close(stream)
        return responses, stream.ending

    responses, ending = asyncio.run(lockstep())
    assert [response.frame_id for response in responses] == [1, 2, 3]
    first, refused, third = responses
    assert refused.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert refused.error.message.startswith("track_smoothing_ms:")
    assert len(first.faces) == 3 and [face.track_id for face in third.faces] == [face.track_id for face in first.faces]
    assert ending == "ended" and len(streams) == 0
    assert counted(workers, "ferstream_frames_failed_total", code="INVALID_ARGUMENT") - failed == 1
    assert counted(workers, "ferstream_frames_answered_total") - answered == 2


def test_closing_a_stream_abandons_its_frame_in_the_workers(workers: FrameWorkers, faces_dir: Path,
                                                            photo: bytes) -> None:
    streams = registry(workers)
    answered = counted(workers, "ferstream_frames_answered_total")
    expired = counted(workers, "ferstream_frames_expired_total")
    group = cv2.imread(str(faces_dir / "2008_002506.jpg"))
    large = cv2.resize(group, (LARGE_SIDE, LARGE_SIDE)).tobytes()
    slow = pb.StreamAnnotateRequest(frame_id=2, options=pb.AnnotateOptions(min_face_px=20), image=pb.Image(
        raw=pb.RawImage(width=LARGE_SIDE, height=LARGE_SIDE, format=pb.PIXEL_FORMAT_BGR8, data=large)))

    async def close_while_detecting() -> str:
        requests: asyncio.Queue = asyncio.Queue()
        stream = streams.open("test", None)
        answers = stream.answers(from_queue(requests))
        requests.put_nowait(stream_frame(1, photo))
        assert (await anext(answers)).frame_id == 1
        requests.put_nowait(slow)
        while workers.in_flight == 0:  # taken and submitted
            await asyncio.sleep(0.01)
        await answers.aclose()
        streams.close(stream)
        while workers.in_flight:  # the workers let it go at their next stage boundary
            await asyncio.sleep(0.05)
        return stream.ending

    assert asyncio.run(close_while_detecting()) == "cancelled"
    assert counted(workers, "ferstream_frames_answered_total") - answered == 1
    assert counted(workers, "ferstream_frames_expired_total") - expired == 1, "dropped, not answered"
    assert len(streams) == 0
