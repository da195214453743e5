"""Per-stream and per-message limits of a real server: idle streams, stream lifetime, message size.

Covered elsewhere: --max-pixels and --max-streams (test_server_api.py), the one-pending-frame bound per
stream (skipped frames, test_client_library.py), memory under a client that never reads (test_faults.py).
"""

from __future__ import annotations

import time

import grpc
import pytest

from ferstream.v1 import emotion_pb2 as pb
from ferstream.v1 import emotion_pb2_grpc as pb_grpc
from helpers import stream_frame

IDLE_S = 2.0
LIFETIME_S = 5.0
MAX_MESSAGE_BYTES = 400_000


@pytest.fixture(scope="module")
def server(fer_server_factory, tmp_path_factory):
    return fer_server_factory("--models-dir", str(tmp_path_factory.mktemp("no-models")), "--max-streams", "1",
                              "--idle-timeout-s", str(IDLE_S), "--max-stream-seconds", str(LIFETIME_S),
                              "--max-message-bytes", str(MAX_MESSAGE_BYTES))


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.address) as channel:
        yield pb_grpc.EmotionServiceStub(channel)




def test_idle_stream_is_ended_and_its_slot_freed(stub, lockstep_stream, photo: bytes) -> None:
    stream = lockstep_stream(stub)
    assert len(stream.send(stream_frame(1, photo)).faces) == 3
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as raised:
        next(stream.responses)  # no frame sent: the next thing to come is the end of the call
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "no frame for 2 s" in raised.value.details() and "--idle-timeout-s" in raised.value.details()
    assert time.monotonic() - started >= IDLE_S * 0.9
    # --max-streams is 1: the idle stream's slot is free again.
    assert len(list(stub.StreamAnnotate(iter([stream_frame(2, photo)]), timeout=60))) == 1


def test_long_stream_ends_unavailable_so_the_client_reconnects(stub, lockstep_stream, photo: bytes) -> None:
    stream = lockstep_stream(stub)
    started = time.monotonic()
    answered = 0
    with pytest.raises(grpc.RpcError) as raised:
        for frame_id in range(1, 10_000):
            assert not stream.send(stream_frame(frame_id, photo)).HasField("error")
            answered += 1
    lasted = time.monotonic() - started
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "--max-stream-seconds" in raised.value.details() and "reconnect" in raised.value.details()
    assert answered >= 1 and lasted >= LIFETIME_S * 0.9
    # A new stream is welcome straight away.
    assert len(list(stub.StreamAnnotate(iter([stream_frame(1, photo)]), timeout=60))) == 1


def test_oversized_message_is_refused_and_the_server_goes_on(stub, photo: bytes) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        stub.Annotate(pb.AnnotateRequest(image=pb.Image(encoded=b"\xff\xd8" + bytes(MAX_MESSAGE_BYTES))), timeout=30)
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert len(stub.Annotate(pb.AnnotateRequest(image=pb.Image(encoded=photo)), timeout=60).faces) == 3


def test_limits_are_checked_on_the_command_line() -> None:
    from ferstream.server.config import build_parser, config_from_args

    for argv in (["--idle-timeout-s", "0"], ["--max-stream-seconds", "-1"], ["--metrics-port", "70000"]):
        with pytest.raises(ValueError):
            config_from_args(build_parser().parse_args(argv))
