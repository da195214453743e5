"""The face limit says what it left out: a crowd mosaic of the shared photos' faces through a real fer-server,
with the server's default limit (32), a request's max_faces, and --max-faces."""

from __future__ import annotations

from pathlib import Path

import cv2
import grpc
import pytest

from ferstream.client.messages import omitted_note
from ferstream.pipeline.settings import MAX_FACES
from ferstream.v1 import emotion_pb2 as pb
from ferstream.v1 import emotion_pb2_grpc as pb_grpc
from helpers import face_mosaic


@pytest.fixture(scope="module")
def crowd(faces_dir: Path, face_boxes) -> bytes:
    """The mosaic of the 43 hand-boxed faces, as a JPEG."""
    mosaic, tiles = face_mosaic(faces_dir, face_boxes)
    assert tiles == sum(len(boxes) for boxes in face_boxes.values()) > MAX_FACES
    return cv2.imencode(".jpg", mosaic, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


def annotate(address: str, image: bytes, **options) -> pb.AnnotateResponse:
    with grpc.insecure_channel(address) as channel:
        request = pb.AnnotateRequest(image=pb.Image(encoded=image), options=pb.AnnotateOptions(**options))
        return pb_grpc.EmotionServiceStub(channel).Annotate(request, timeout=120)


def boxes(response) -> list[tuple[int, int, int, int]]:
    return [(face.box.x, face.box.y, face.box.width, face.box.height) for face in response.faces]


@pytest.mark.slow
def test_faces_left_out_by_the_limit_are_counted(fer_server_factory, fer_models_dir: Path, crowd: bytes,
                                                 lockstep_stream) -> None:
    roomy = fer_server_factory("--models-dir", str(fer_models_dir), "--max-faces", "100")
    everyone = annotate(roomy.address, crowd)
    found = len(everyone.faces)
    assert found > MAX_FACES and everyone.faces_omitted == 0 and omitted_note(everyone) == ""

    default = fer_server_factory("--models-dir", str(fer_models_dir))
    limited = annotate(default.address, crowd)
    assert len(limited.faces) == MAX_FACES and limited.faces_omitted == found - MAX_FACES
    assert boxes(limited) == boxes(everyone)[:MAX_FACES]  # the highest scored ones are kept
    assert omitted_note(limited) == f"{MAX_FACES} of {found} faces shown (limit {MAX_FACES})"

    # A request's own limit, below the server's; above it, the server's still holds.
    asked = annotate(roomy.address, crowd, max_faces=10)
    assert len(asked.faces) == 10 and asked.faces_omitted == found - 10
    assert annotate(default.address, crowd, max_faces=40).faces_omitted == found - MAX_FACES

    with grpc.insecure_channel(default.address) as channel:
        stream = lockstep_stream(pb_grpc.EmotionServiceStub(channel))
        answer = stream.send(pb.StreamAnnotateRequest(frame_id=1, image=pb.Image(encoded=crowd)))
        assert len(answer.faces) == MAX_FACES and answer.faces_omitted == found - MAX_FACES
        assert stream.close() == []
