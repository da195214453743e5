"""EmotionClient against a real fer-server on loopback (unary calls, live and file streams), plus frame sources.

Drawing is tested in test_annotate_draw.py."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures

import cv2
import grpc
import numpy as np
import pytest

from ferstream.client import EmotionClient, emotion_name, face_to_dict, probabilities, video_frames
from ferstream.client.capture import LatestFrame, SourceError, open_source
from ferstream.client.messages import EMOTIONS, box_tuple
from ferstream.v1 import emotion_pb2, emotion_pb2_grpc

PHOTO = "2008_002506.jpg"  # three large faces


@pytest.fixture(scope="module")
def client(fer_server_factory, fer_models_dir):
    server = fer_server_factory("--models-dir", str(fer_models_dir))
    with EmotionClient(server.address, token="test-token") as client:
        yield client


def matched(found, expected, iou, threshold=0.3) -> int:
    return sum(any(iou(box, truth) >= threshold for truth in expected) for box in found)


def test_annotate_finds_the_photos_faces(client, faces_dir, face_boxes, client_box_iou):
    reply = client.annotate(cv2.imread(str(faces_dir / PHOTO)), detector="ssd")
    boxes = [box_tuple(face) for face in reply.faces]
    assert matched(boxes, face_boxes[PHOTO], client_box_iou) >= 2, boxes
    for face in reply.faces:
        probs = probabilities(face)
        assert sum(probs) == pytest.approx(1.0, abs=1e-3)
        assert emotion_name(face.emotion) == EMOTIONS[int(np.argmax(probs))]


def test_bytes_path_and_raw_pixels_give_the_same_faces(client, faces_dir, client_box_iou):
    path = faces_dir / PHOTO
    from_path = [box_tuple(f) for f in client.annotate(path, detector="ssd").faces]
    from_bytes = [box_tuple(f) for f in client.annotate(path.read_bytes(), detector="ssd").faces]
    raw = [box_tuple(f) for f in client.annotate(cv2.imread(str(path)), detector="ssd", jpeg_quality=None).faces]
    assert from_path == from_bytes and from_path
    assert len(raw) == len(from_path)
    assert all(max(client_box_iou(box, other) for other in from_path) > 0.7 for box in raw)


def test_stream_answers_or_skips_every_frame_in_order(client, faces_dir):
    frame = cv2.imread(str(faces_dir / PHOTO))
    responses = list(client.stream([frame] * 4, detector="haar"))
    answered = [response.frame_id for response in responses]
    skipped = [frame_id for response in responses for frame_id in response.skipped_frame_ids]
    assert answered == sorted(answered) and answered[-1] == 3
    assert sorted(answered + skipped) == [0, 1, 2, 3]
    assert all(response.faces for response in responses)


def test_live_mode_keeps_the_newest_frame_and_accounts_for_every_other(client, client_faces_video):
    """A file read faster than the server works: answers stay in order, each frame answered or skipped."""
    responses = list(client.stream(video_frames(client_faces_video.path), mode="live"))
    answered = [response.frame_id for response in responses]
    skipped = [frame_id for response in responses for frame_id in response.skipped_frame_ids]
    assert answered == sorted(answered) and answered[-1] == client_faces_video.frame_count - 1
    assert sorted(answered + skipped) == list(range(client_faces_video.frame_count))


class CountingRelay:
    """A gRPC server on loopback that passes StreamAnnotate on to fer-server, counting on the wire the frames
    in flight (passed on, neither answered nor skipped yet), and holding every answer back until release()."""

    def __init__(self, upstream: str) -> None:
        self._channel = grpc.insecure_channel(upstream)
        self._upstream = emotion_pb2_grpc.EmotionServiceStub(self._channel)
        self._lock = threading.Lock()
        self._released = threading.Event()
        self.in_flight = self.most_in_flight = 0
        self.passed_on: list[int] = []  # the capture_time_ms of each frame passed on, which the test sets
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handler = grpc.stream_stream_rpc_method_handler(
            self._relay, request_deserializer=emotion_pb2.StreamAnnotateRequest.FromString,
            response_serializer=emotion_pb2.StreamAnnotateResponse.SerializeToString)
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("ferstream.v1.EmotionService", {"StreamAnnotate": handler}),))
        self.address = f"127.0.0.1:{self._server.add_insecure_port('127.0.0.1:0')}"
        self._server.start()

    def release(self) -> None:
        self._released.set()

    def _count_in(self, requests) -> Iterator[emotion_pb2.StreamAnnotateRequest]:
        for request in requests:
            with self._lock:
                self.in_flight += 1
                self.most_in_flight = max(self.most_in_flight, self.in_flight)
                self.passed_on.append(request.capture_time_ms)
            yield request

    def _relay(self, requests, context) -> Iterator[emotion_pb2.StreamAnnotateResponse]:
        for response in self._upstream.StreamAnnotate(self._count_in(requests)):
            self._released.wait()
            with self._lock:
                self.in_flight -= 1 + len(response.skipped_frame_ids)
            yield response

    def close(self) -> None:
        self._released.set()
        self._server.stop(grace=None)
        self._channel.close()


@pytest.fixture()
def relay(client):
    relay = CountingRelay(client.target)
    yield relay
    relay.close()


@pytest.mark.parametrize("max_in_flight", [1, 2])
def test_live_mode_keeps_its_window_and_sends_the_newest_frame(relay, faces_dir, max_in_flight):
    """A producer far faster than the server (every answer held back until it has put all its frames): at
    most max_in_flight frames are ever in flight on the wire, the frames that waited meanwhile are replaced
    by the newest one and never sent, and the newest one is answered; every frame is answered or skipped."""
    photo = (faces_dir / PHOTO).read_bytes()
    count = 30
    with EmotionClient(relay.address) as client:
        stream = client.live_stream(max_in_flight=max_in_flight, detector="haar")
        replaced = [stream.put(emotion_pb2.StreamAnnotateRequest(
            frame_id=index, capture_time_ms=index, image=emotion_pb2.Image(encoded=photo))) for index in range(count)]
        stream.finish()
        relay.release()
        responses = list(stream)
    answered = [response.frame_id for response in responses]
    skipped = [frame_id for response in responses for frame_id in response.skipped_frame_ids]
    assert relay.most_in_flight <= max_in_flight
    assert answered == sorted(answered) and answered[-1] == count - 1
    assert sorted(answered + skipped) == list(range(count))
    dropped_here = [frame_id for frame_id in replaced if frame_id is not None]
    assert len(dropped_here) >= count - max_in_flight - 1 and set(dropped_here) <= set(skipped)
    assert relay.passed_on == answered  # only the frames answered went out: at most the window, then the newest
    assert all(response.faces for response in responses)


def test_live_mode_from_an_iterable_keeps_the_window_too(relay, faces_dir):
    """stream(mode="live") reads a fast iterable through the same window."""
    photo = (faces_dir / PHOTO).read_bytes()

    def frames() -> Iterator[bytes]:
        yield from [photo] * 20
        relay.release()  # the answers come once every frame is read

    with EmotionClient(relay.address) as client:
        responses = list(client.stream(frames(), mode="live", detector="haar"))
    answered = [response.frame_id for response in responses]
    skipped = [frame_id for response in responses for frame_id in response.skipped_frame_ids]
    assert relay.most_in_flight <= 2 and len(relay.passed_on) <= 3
    assert answered[-1] == 19 and sorted(answered + skipped) == list(range(20))


@pytest.mark.parametrize("max_in_flight", [1, 2, 6])
def test_file_mode_answers_every_frame_in_order(client, client_faces_video, client_box_iou, max_in_flight):
    """Every frame of a video gets its own answer, in order, whatever the window; with 6 frames in flight the
    server replaces some of them (it keeps one waiting per stream), and the client sends those again."""
    video = client_faces_video
    responses = list(client.stream(video_frames(video.path), mode="file", max_in_flight=max_in_flight,
                                   detector="ssd"))
    assert [response.frame_id for response in responses] == list(range(video.frame_count))
    assert not any(response.skipped_frame_ids for response in responses)
    for index, response in enumerate(responses):
        boxes = [box_tuple(face) for face in response.faces]
        assert matched(boxes, video.boxes[video.photo_at(index)], client_box_iou) >= 2, (index, boxes)


def test_file_mode_answers_bad_frames_in_place_and_keeps_the_callers_ids(client, faces_dir):
    photo = (faces_dir / PHOTO).read_bytes()
    requests = [emotion_pb2.StreamAnnotateRequest(frame_id=7, image=emotion_pb2.Image(encoded=data))
                for data in (photo, b"not an image", photo)]
    responses = list(client.stream(requests, mode="file"))
    assert [response.frame_id for response in responses] == [7, 7, 7]
    assert [len(response.faces) > 0 for response in responses] == [True, False, True]
    assert [response.error.code for response in responses] == [0, grpc.StatusCode.INVALID_ARGUMENT.value[0], 0]


@pytest.mark.parametrize("mode", ["live", "file"])
def test_an_error_in_the_frames_reaches_the_caller_after_the_frames_before_it(client, faces_dir, mode):
    photo = cv2.imread(str(faces_dir / PHOTO))

    def frames():
        yield photo
        yield photo
        raise OSError("the camera went away")

    answered = []
    with pytest.raises(OSError, match="the camera went away"):
        for response in client.stream(frames(), mode=mode):
            answered.append(response.frame_id)
    assert answered[-1] == 1 and set(answered) <= {0, 1}


def test_stream_refuses_an_unknown_mode_or_window(client):
    with pytest.raises(ValueError, match="mode"):
        client.stream([], mode="fast")
    with pytest.raises(ValueError, match="max_in_flight"):
        client.stream([], mode="file", max_in_flight=0)


def test_video_frames_reads_every_frame_and_refuses_what_it_cannot_open(client_faces_video, tmp_path):
    assert sum(1 for _ in video_frames(client_faces_video.path)) == client_faces_video.frame_count
    with pytest.raises(ValueError, match="cannot open"):
        next(video_frames(tmp_path / "missing.mp4"))


def test_the_default_server_is_fer_server_from_the_environment(client, faces_dir, monkeypatch):
    monkeypatch.setenv("FER_SERVER", client.target)
    with EmotionClient() as from_environment:
        assert from_environment.target == client.target
        reply = from_environment.annotate(faces_dir / PHOTO, detector="haar")
    assert [face_to_dict(face) for face in reply.faces] == \
        [face_to_dict(face) for face in client.annotate(faces_dir / PHOTO, detector="haar").faces]
    monkeypatch.delenv("FER_SERVER")
    with EmotionClient() as default:
        assert default.target == "127.0.0.1:50051"


def test_health_and_model_info(client):
    assert client.health()
    info = client.model_info()
    assert [emotion_name(value) for value in info.classes] == list(EMOTIONS)
    assert any(d.available for d in info.detectors)


def test_each_call_chooses_its_model(client, faces_dir):
    """Photos default to the accurate model, streams to the fast one; model= picks, the answers name it."""
    path = faces_dir / PHOTO
    assert client.annotate(path).model == "accurate"
    fast = client.annotate(path, model="fast")
    assert fast.model == "fast" and len(fast.faces) == 3
    frames = [cv2.imread(str(path))] * 2
    assert [r.model for r in client.stream(frames, mode="file")] == ["fast", "fast"]
    streamed = list(client.stream(frames, mode="file", model="accurate"))
    assert [r.model for r in streamed] == ["accurate", "accurate"] and all(len(r.faces) == 3 for r in streamed)
    assert [m.name for m in client.model_info().models] == ["fast", "accurate"]
    with pytest.raises(grpc.RpcError) as error:
        client.annotate(path, model="precise")
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "fast, accurate" in error.value.details()


def test_bad_image_is_an_invalid_argument_error(client):
    with pytest.raises(grpc.RpcError) as error:
        client.annotate(b"this is not an image")
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_open_source_explains_what_is_wrong(tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        open_source(str(tmp_path / "missing.mp4"))
    garbage = tmp_path / "garbage.mp4"
    garbage.write_text("not a video")
    with pytest.raises(SourceError, match="not a readable video"):
        open_source(str(garbage))
    with pytest.raises(SourceError, match="camera 97"):
        open_source("97")


def test_still_image_source_repeats_and_latest_frame_keeps_the_newest(faces_dir):
    source = open_source(str(faces_dir / PHOTO))
    first = source.read()
    assert source.read() is None and source.rewind()
    assert (source.read() == first).all()
    latest = LatestFrame()
    for value in (1, 2, 3):
        latest.put(np.full((2, 2), value, np.uint8))
    newest = latest.wait_newer(0, timeout=0.1)
    assert newest.seq == 3 and (newest.image == 3).all()
    assert latest.wait_newer(3, timeout=0.05) is None
