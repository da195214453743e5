"""The gRPC surface of fer-server: health, reflection, model info, bad input, limits, class subsets.

The server's models dir holds a damaged YuNet (overriding the package's copy, so YuNet is unavailable: Haar
and the packaged SSD only), it serves five classes and allows four streams, so unavailable detectors,
--classes and --max-streams are all exercised on one server.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from ferstream.model.modelfile import load_model
from ferstream.v1 import emotion_pb2 as pb
from ferstream.v1 import emotion_pb2_grpc as pb_grpc
from helpers import stream_frame

SERVED = [pb.EMOTION_ANGRY, pb.EMOTION_HAPPY, pb.EMOTION_SAD, pb.EMOTION_SURPRISE, pb.EMOTION_NEUTRAL]
GROUP_PHOTO = "2008_002470.jpg"  # six people
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]
YUNET = "face_detection_yunet_2026may.onnx"


@pytest.fixture(scope="module")
def server(fer_server_factory, tmp_path_factory, fer_models_dir: Path):
    damaged_models_dir = tmp_path_factory.mktemp("damaged-yunet")
    damaged = bytearray((fer_models_dir / YUNET).read_bytes())
    damaged[-1] ^= 0xFF
    (damaged_models_dir / YUNET).write_bytes(bytes(damaged))
    return fer_server_factory("--models-dir", str(damaged_models_dir), "--classes", "surprise,angry,happy,neutral,sad",
                              "--max-streams", "4", "--max-pixels", "4000000")


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(server.address) as channel:
        yield channel


@pytest.fixture(scope="module")
def stub(channel):
    return pb_grpc.EmotionServiceStub(channel)


@pytest.fixture(scope="module")
def photo(faces_dir: Path) -> bytes:
    return (faces_dir / GROUP_PHOTO).read_bytes()



def assert_annotated(faces) -> None:
    assert len(faces) >= 4
    for face in faces:
        assert [s.emotion for s in face.scores] == SERVED
        probabilities = [s.probability for s in face.scores]
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-4)
        assert face.emotion == face.scores[int(np.argmax(probabilities))].emotion
        assert 0.0 < face.detection_score <= 1.0 and face.box.width > 0 and face.box.height > 0


def test_health_is_serving(channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "ferstream.v1.EmotionService"):
        response = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_service(channel) -> None:
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    response = next(reflection.ServerReflectionInfo(iter([request]), timeout=10))
    names = {service.name for service in response.list_services_response.service}
    assert {"ferstream.v1.EmotionService", "grpc.health.v1.Health"} <= names


def test_model_info(stub) -> None:
    info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
    assert list(info.classes) == SERVED
    detectors = {d.detector: d for d in info.detectors}
    assert detectors[pb.DETECTOR_HAAR].available and detectors[pb.DETECTOR_SSD].available
    assert "caffemodel" in detectors[pb.DETECTOR_SSD].detail
    assert not detectors[pb.DETECTOR_YUNET].available
    assert "face_detection_yunet" in detectors[pb.DETECTOR_YUNET].detail
    assert "sha256 mismatch" in detectors[pb.DETECTOR_YUNET].detail
    assert info.default_detector == pb.DETECTOR_SSD
    shipped = load_model()
    assert info.model.weights_sha256 == shipped.meta["weights_sha256"]
    assert info.model.architecture == shipped.spec.name and info.model.width == pytest.approx(shipped.spec.width)
    assert info.model.input_size == 48 and info.model.parameters > 1000
    assert info.model.training_command == shipped.meta["training_command"]
    models = {model.name: model for model in info.models}
    assert list(models) == ["fast", "accurate"]
    assert (info.default_annotate_model, info.default_stream_model) == ("accurate", "fast")
    assert models["fast"].inputs == ["48x48 grey face, aligned on YuNet's landmarks to FER2013's framing"]
    assert any("112x112 colour" in text for text in models["accurate"].inputs)
    assert "Apache-2.0" in models["accurate"].provenance and "MobileFaceNet" in models["accurate"].description
    assert models["accurate"].weights_sha256 == "f0d7093aff10e2638c734c5f18a6a7eabd2b9239b20bdb9b8090865a6f69a1ed"
    assert models["fast"].weights_sha256 == shipped.meta["weights_sha256"]
    for model in models.values():
        assert list(model.classes) == SERVED and model.cost_ms > 0


def test_each_model_answers_and_names_itself(stub, lockstep_stream, photo: bytes) -> None:
    """Photos default to the accurate model, streams to the fast one; each answer names its model. Without
    YuNet (this server's is damaged) the accurate model's faces are cut by the box fallback."""
    answers = {}
    for name in ("", "fast", "accurate"):
        response = stub.Annotate(pb.AnnotateRequest(image=pb.Image(encoded=photo),
                                                    options=pb.AnnotateOptions(model=name)), timeout=60)
        assert response.model == (name or "accurate")
        assert_annotated(response.faces)
        answers[name] = np.array([[s.probability for s in face.scores] for face in response.faces])
    assert np.allclose(answers[""], answers["accurate"], atol=1e-6)
    assert not np.allclose(answers["fast"], answers["accurate"], atol=1e-3)  # two different models
    stream = lockstep_stream(stub)
    assert stream.send(stream_frame(1, photo)).model == "fast"
    streamed = stream.send(stream_frame(2, photo, model="accurate"))
    assert streamed.model == "accurate" and np.allclose(
        [[s.probability for s in face.scores] for face in streamed.faces], answers["accurate"], atol=1e-5)
    assert stream.close() == []


def test_an_unknown_model_is_invalid_argument_naming_the_choices(stub, lockstep_stream, photo: bytes) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        stub.Annotate(pb.AnnotateRequest(image=pb.Image(encoded=photo), options=pb.AnnotateOptions(model="precise")),
                      timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'precise'" in raised.value.details() and "fast, accurate" in raised.value.details()
    stream = lockstep_stream(stub)
    refused = stream.send(stream_frame(1, photo, model="Fast"))
    assert refused.error.code == INVALID_ARGUMENT and "fast, accurate" in refused.error.message
    assert refused.model == "" and not refused.faces
    assert_annotated(stream.send(stream_frame(2, photo)).faces)  # the stream goes on
    assert stream.close() == []


def test_unary_annotate(stub, photo: bytes) -> None:
    response = stub.Annotate(pb.AnnotateRequest(image=pb.Image(encoded=photo)), timeout=30)
    assert_annotated(response.faces)
    assert response.timing.batch_faces >= len(response.faces) and response.timing.total_ms > 0


def test_unary_annotate_of_raw_pixels(stub, faces_dir: Path) -> None:
    bgr = cv2.imread(str(faces_dir / GROUP_PHOTO))
    height, width = bgr.shape[:2]
    for pixel_format, pixels in [(pb.PIXEL_FORMAT_BGR8, bgr), (pb.PIXEL_FORMAT_RGB8, bgr[:, :, ::-1]),
                                 (pb.PIXEL_FORMAT_GRAY8, cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))]:
        raw = pb.RawImage(width=width, height=height, format=pixel_format, data=np.ascontiguousarray(pixels).tobytes())
        response = stub.Annotate(pb.AnnotateRequest(image=pb.Image(raw=raw)), timeout=30)
        assert_annotated(response.faces)


def test_unary_annotate_bad_input_is_a_status(stub) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        stub.Annotate(pb.AnnotateRequest(image=pb.Image(encoded=b"not an image")), timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_unavailable_detector_is_failed_precondition(stub, lockstep_stream, photo: bytes) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        stub.Annotate(pb.AnnotateRequest(image=pb.Image(encoded=photo),
                                         options=pb.AnnotateOptions(detector=pb.DETECTOR_YUNET)), timeout=10)
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    stream = lockstep_stream(stub)
    refused = stream.send(stream_frame(1, photo, detector=pb.DETECTOR_YUNET))
    assert refused.error.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert "YUNET" in refused.error.message
    assert_annotated(stream.send(stream_frame(2, photo, detector=pb.DETECTOR_HAAR)).faces)
    assert stream.close() == []


def png_claiming(width: int, height: int) -> bytes:
    """A real PNG header claiming width x height followed by junk: refused from the header alone."""
    ok, small = cv2.imencode(".png", np.zeros((2, 2, 3), np.uint8))
    data = bytearray(small.tobytes())
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    return bytes(data[:33]) + b"junk" * 8


def test_bad_frames_in_a_stream_get_errors_and_the_stream_goes_on(stub, lockstep_stream, photo: bytes) -> None:
    bad_frames = {
        "empty bytes": pb.StreamAnnotateRequest(image=pb.Image(encoded=b"")),
        "no image": pb.StreamAnnotateRequest(),
        "garbage": pb.StreamAnnotateRequest(image=pb.Image(encoded=b"\x00garbage" * 100)),
        "truncated jpeg": pb.StreamAnnotateRequest(image=pb.Image(encoded=photo[:300])),
        "oversized header": pb.StreamAnnotateRequest(image=pb.Image(encoded=png_claiming(3000, 2000))),
        "raw length": pb.StreamAnnotateRequest(image=pb.Image(raw=pb.RawImage(
            width=10, height=10, format=pb.PIXEL_FORMAT_BGR8, data=bytes(299)))),
        "raw format unset": pb.StreamAnnotateRequest(image=pb.Image(raw=pb.RawImage(width=1, height=1, data=b"x"))),
        "unknown pixel format": pb.StreamAnnotateRequest(image=pb.Image(raw=pb.RawImage(
            width=1, height=1, format=9, data=b"x"))),
        "unknown detector": stream_frame(0, photo, detector=42),
        "score out of range": stream_frame(0, photo, min_detection_score=1.5),
    }
    stream = lockstep_stream(stub)
    frame_id = 0
    assert_annotated(stream.send(stream_frame(frame_id, photo)).faces)
    for what, request in bad_frames.items():
        frame_id += 1
        request.frame_id = frame_id
        response = stream.send(request)
        assert response.frame_id == frame_id
        assert response.error.code == INVALID_ARGUMENT, what
        assert response.error.message and not response.faces, what
        frame_id += 1
        good = stream.send(stream_frame(frame_id, photo))
        assert good.frame_id == frame_id and not good.HasField("error"), what
        assert_annotated(good.faces)
    assert stream.close() == []


def test_oversized_image_message_names_the_limit(stub) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        stub.Annotate(pb.AnnotateRequest(image=pb.Image(encoded=png_claiming(3000, 2000))), timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "3000x2000" in raised.value.details() and "4000000" in raised.value.details()


def test_min_score_and_max_faces_options(stub, photo: bytes) -> None:
    request = pb.AnnotateRequest(image=pb.Image(encoded=photo),
                                 options=pb.AnnotateOptions(detector=pb.DETECTOR_SSD, max_faces=2))
    faces = stub.Annotate(request, timeout=30).faces
    assert len(faces) == 2 and faces[0].detection_score >= faces[1].detection_score
    request.options.max_faces = 0
    request.options.min_detection_score = 0.99
    assert all(face.detection_score >= 0.99 for face in stub.Annotate(request, timeout=30).faces)


def test_four_concurrent_streams_and_a_fifth_is_refused(stub, lockstep_stream, photo: bytes, server) -> None:
    streams = [lockstep_stream(stub) for _ in range(4)]
    for number, stream in enumerate(streams):  # every stream holds a server slot once it has been answered
        assert_annotated(stream.send(stream_frame(number, photo)).faces)

    with pytest.raises(grpc.RpcError) as raised:
        list(stub.StreamAnnotate(iter([stream_frame(0, photo)]), timeout=10))
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

    failures: list[str] = []

    def run(stream) -> None:
        try:
            for frame_id in range(10, 16):
                response = stream.send(stream_frame(frame_id, photo))
                if response.frame_id != frame_id or response.HasField("error") or len(response.faces) < 4:
                    failures.append(f"frame {frame_id}: {response}")
            stream.close()
        except grpc.RpcError as error:
            failures.append(str(error))

    threads = [threading.Thread(target=run, args=(stream,)) for stream in streams]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    # The slots are free again.
    assert len(list(stub.StreamAnnotate(iter([stream_frame(0, photo)]), timeout=30))) == 1
    log = server.log()
    assert "refused: 4 streams already open" in log
    assert "stream 1 opened by" in log and "frames received" in log and "fps" in log


def first_response_when_a_slot_is_free(stub, request, wait_s: float = 10.0):
    """The first response of a new stream, retrying while the server still counts a just-ended stream."""
    give_up = time.monotonic() + wait_s
    while True:
        responses = stub.StreamAnnotate(iter([request] * 3), timeout=30)
        try:
            return responses, next(responses)
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED or time.monotonic() > give_up:
                raise
            time.sleep(0.1)


def test_cancelled_stream_frees_its_slot(stub, photo: bytes) -> None:
    for _ in range(6):  # more cancelled streams than --max-streams: each must give its slot back
        responses, first = first_response_when_a_slot_is_free(stub, stream_frame(0, photo))
        assert not first.HasField("error")
        responses.cancel()


def test_expired_deadline_is_reported_and_the_server_goes_on(stub, photo: bytes) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        stub.Annotate(pb.AnnotateRequest(image=pb.Image(encoded=photo)), timeout=0.001)
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert_annotated(stub.Annotate(pb.AnnotateRequest(image=pb.Image(encoded=photo)), timeout=30).faces)
