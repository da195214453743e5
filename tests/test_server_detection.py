"""Detection quality and stream ordering against a real fer-server with the shared detector weights."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from ferstream.bench.detectors import iou
from ferstream.v1 import emotion_pb2 as pb
from ferstream.v1 import emotion_pb2_grpc as pb_grpc

Box = tuple[float, float, float, float]


@pytest.fixture(scope="module")
def stub(fer_server_factory, fer_models_dir: Path):
    server = fer_server_factory("--models-dir", str(fer_models_dir))
    with grpc.insecure_channel(server.address) as channel:
        yield pb_grpc.EmotionServiceStub(channel)


def as_square(box: Box) -> Box:
    """The square of the same area and centre: hand-drawn boxes are tight squares, while detectors
    draw taller boxes that include forehead and chin, so raw IoU would punish a correct detection."""
    left, top, width, height = box
    side = (width * height) ** 0.5
    return left + width / 2 - side / 2, top + height / 2 - side / 2, side, side


def square_iou(a: Box, b: Box) -> float:
    return iou(as_square(a), as_square(b))


@pytest.mark.parametrize("detector,required", [(pb.DETECTOR_YUNET, 0.95), (pb.DETECTOR_SSD, 0.95),
                                               (pb.DETECTOR_HAAR, 0.80)])
def test_boxed_faces_are_found(stub, lockstep_stream, faces_dir: Path, face_boxes, detector, required) -> None:
    stream = lockstep_stream(stub)
    found = total = 0
    for frame_id, (name, boxes) in enumerate(sorted(face_boxes.items())):
        request = pb.StreamAnnotateRequest(frame_id=frame_id, image=pb.Image(encoded=(faces_dir / name).read_bytes()),
                                           options=pb.AnnotateOptions(detector=detector))
        response = stream.send(request)
        assert response.frame_id == frame_id and not response.HasField("error"), response.error
        detected = [(f.box.x, f.box.y, f.box.width, f.box.height) for f in response.faces]
        total += len(boxes)
        found += sum(max((square_iou(box, other) for other in detected), default=0.0) >= 0.5 for box in boxes)
    assert stream.close() == []
    assert total == 43
    assert found / total >= required, f"{pb.Detector.Name(detector)} found {found} of {total} faces"


def test_every_frame_is_answered_in_order_or_listed_as_skipped(stub, faces_dir: Path) -> None:
    photo = (faces_dir / "2008_002470.jpg").read_bytes()
    frame_ids = list(range(100, 140))
    requests = (pb.StreamAnnotateRequest(frame_id=i, image=pb.Image(encoded=photo)) for i in frame_ids)
    responses = list(stub.StreamAnnotate(requests, timeout=120))
    answered = [r.frame_id for r in responses]
    skipped = [i for r in responses for i in r.skipped_frame_ids]
    assert answered == sorted(answered) and len(set(answered)) == len(answered)
    assert sorted(answered + skipped) == frame_ids
    assert answered[-1] == frame_ids[-1]  # the newest frame is never dropped
    for response in responses:
        assert not response.HasField("error")
        assert len(response.faces) >= 5  # six people in the photo
        # A frame listed as skipped is older than the next frame answered.
        assert all(i < response.frame_id or i not in answered for i in response.skipped_frame_ids)
