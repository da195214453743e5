"""Per-stream and per-message limits of a real server: idle streams, stream lifetime, message size, and the
pixel and message limits agreeing (every frame the pixel limit admits, raw included, fits a message).

Covered elsewhere: --max-pixels and --max-streams (test_server_api.py), the one-pending-frame bound per
stream (skipped frames, test_client_library.py), memory under a client that never reads (test_faults.py).
"""

from __future__ import annotations

import inspect
import time
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest

from ferstream.client.limits import FrameTooLarge, check_request_size
from ferstream.pipeline.settings import DEFAULT_MAX_MESSAGE_BYTES, MAX_PIXELS, message_limit
from ferstream.server.config import ServerConfig, build_parser, config_from_args
from ferstream.v1 import emotion_pb2 as pb
from ferstream.v1 import emotion_pb2_grpc as pb_grpc
from helpers import stream_frame

IDLE_S = 2.0
LIFETIME_S = 5.0
# 1000 x 1000 pixels: a raw BGR frame at the limit is 3,000,000 bytes.
LIMITED_PIXELS = 1_000_000
GROUP_PHOTO = "2008_002506.jpg"  # three large faces


@pytest.fixture(scope="module")
def server(fer_server_factory, tmp_path_factory):
    return fer_server_factory("--models-dir", str(tmp_path_factory.mktemp("no-models")), "--max-streams", "1",
                              "--idle-timeout-s", str(IDLE_S), "--max-stream-seconds", str(LIFETIME_S),
                              "--max-pixels", str(LIMITED_PIXELS))


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.address) as channel:
        yield pb_grpc.EmotionServiceStub(channel)


def raw_photo(faces_dir: Path, width: int, height: int) -> pb.Image:
    """The group photo stretched to width x height, as a raw BGR8 image."""
    pixels = cv2.resize(cv2.imread(str(faces_dir / GROUP_PHOTO)), (width, height), interpolation=cv2.INTER_LINEAR)
    return pb.Image(raw=pb.RawImage(width=width, height=height, format=pb.PIXEL_FORMAT_BGR8, data=pixels.tobytes()))


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


@pytest.mark.slow
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


def test_raw_frames_at_the_pixel_limit_are_answered_and_one_pixel_more_is_refused_per_frame(
        stub, lockstep_stream, photo: bytes, faces_dir: Path) -> None:
    stream = lockstep_stream(stub)
    at_limit = stream.send(pb.StreamAnnotateRequest(frame_id=1, image=raw_photo(faces_dir, 1000, 1000)))
    assert not at_limit.HasField("error") and len(at_limit.faces) >= 3  # the stretched photo's three, or more
    over = stream.send(pb.StreamAnnotateRequest(frame_id=2, image=raw_photo(faces_dir, 1000, 1001)))
    assert over.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "1000x1001" in over.error.message and str(LIMITED_PIXELS) in over.error.message
    # The frames after them are answered on the same stream.
    after = stream.send(stream_frame(3, photo))
    assert after.frame_id == 3 and len(after.faces) == 3 and not after.HasField("error")
    assert stream.close() == []


def test_message_over_the_transport_limit_is_refused_and_the_server_goes_on(stub, photo: bytes) -> None:
    too_large = b"\xff\xd8" + bytes(message_limit(LIMITED_PIXELS))
    with pytest.raises(grpc.RpcError) as raised:
        stub.Annotate(pb.AnnotateRequest(image=pb.Image(encoded=too_large)), timeout=30)
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert len(stub.Annotate(pb.AnnotateRequest(image=pb.Image(encoded=photo)), timeout=60).faces) == 3


def test_a_raw_4k_frame_is_answered_by_a_default_server_and_the_stream_goes_on(
        fer_server_factory, fer_models_dir: Path, lockstep_stream, photo: bytes, faces_dir: Path) -> None:
    """The field report: one raw 3840x2160 BGR frame (24.9 MB) used to end its whole stream."""
    server = fer_server_factory("--models-dir", str(fer_models_dir))
    options = [("grpc.max_send_message_length", DEFAULT_MAX_MESSAGE_BYTES)]
    with grpc.insecure_channel(server.address, options=options) as channel:
        stream = lockstep_stream(pb_grpc.EmotionServiceStub(channel), timeout=120)
        large = stream.send(pb.StreamAnnotateRequest(frame_id=1, image=raw_photo(faces_dir, 3840, 2160)))
        assert not large.HasField("error") and len(large.faces) >= 3
        assert len(stream.send(stream_frame(2, photo)).faces) == 3
        assert stream.close() == []


def test_the_default_limits_agree() -> None:
    assert message_limit(MAX_PIXELS) == DEFAULT_MAX_MESSAGE_BYTES
    client_default = inspect.signature(check_request_size).parameters["max_message_bytes"].default
    assert client_default == ServerConfig().max_message_bytes, "the client checks against the server's default"
    assert DEFAULT_MAX_MESSAGE_BYTES == 4096 * 4096 * 3 + 65536 == ServerConfig().max_message_bytes
    assert config_from_args(build_parser().parse_args([])).max_message_bytes == DEFAULT_MAX_MESSAGE_BYTES
    # The message limit follows --max-pixels unless given.
    assert config_from_args(build_parser().parse_args(["--max-pixels", "100"])).max_message_bytes == 300 + 65536


def test_limits_that_disagree_are_refused() -> None:
    with pytest.raises(ValueError, match="--max-message-bytes 400000 cannot carry a raw frame"):
        config_from_args(build_parser().parse_args(["--max-message-bytes", "400000"]))
    with pytest.raises(ValueError, match="--max-pixels"):
        ServerConfig(max_message_bytes=16 * 1024 * 1024)
    fits = config_from_args(build_parser().parse_args(["--max-message-bytes", "400000", "--max-pixels", "111488"]))
    assert fits.max_message_bytes == 400000


def test_limits_are_checked_on_the_command_line() -> None:
    for argv in (["--idle-timeout-s", "0"], ["--max-stream-seconds", "-1"], ["--metrics-port", "70000"],
                 ["--detect-workers", "-1"], ["--max-message-bytes", "0"]):
        with pytest.raises(ValueError):
            config_from_args(build_parser().parse_args(argv))


def test_raw_pixels_fit_the_limit_exactly() -> None:
    """The arithmetic docs/deploy.md states, checked against a real message's size."""
    pixels = np.zeros((100, 100, 3), np.uint8).tobytes()
    request = pb.StreamAnnotateRequest(frame_id=2**64 - 1, image=pb.Image(raw=pb.RawImage(
        width=100, height=100, format=pb.PIXEL_FORMAT_BGR8, data=pixels)),
        options=pb.AnnotateOptions(detector=pb.DETECTOR_YUNET, min_detection_score=0.5, max_faces=2**32 - 1))
    assert request.ByteSize() <= message_limit(100 * 100)


def test_the_client_refuses_a_request_the_server_would_not_take() -> None:
    at_pixel_limit = pb.StreamAnnotateRequest(frame_id=1, image=pb.Image(raw=pb.RawImage(
        width=4096, height=4096, format=pb.PIXEL_FORMAT_BGR8, data=bytes(4096 * 4096 * 3))))
    check_request_size(at_pixel_limit)  # the largest raw frame the default server admits fits its messages
    too_large = pb.AnnotateRequest(image=pb.Image(encoded=bytes(DEFAULT_MAX_MESSAGE_BYTES)))
    with pytest.raises(FrameTooLarge, match=f"more than the server's {DEFAULT_MAX_MESSAGE_BYTES}"):
        check_request_size(too_large)
    with pytest.raises(FrameTooLarge, match="--max-message-bytes"):
        check_request_size(at_pixel_limit, max_message_bytes=message_limit(LIMITED_PIXELS))
