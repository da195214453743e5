"""EmotionClient against a real fer-server on loopback, plus the client's pure parts (render, sources)."""

from __future__ import annotations

import cv2
import grpc
import numpy as np
import pytest

from ferstream.client import EmotionClient, emotion_name, probabilities
from ferstream.client.capture import LatestFrame, SourceError, open_source
from ferstream.client.library import EMOTIONS, box_tuple
from ferstream.client.render import BOX_THICKNESS, colour_of, draw_annotations
from ferstream.v1 import emotion_pb2

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
    assert answered == sorted(answered) and answered[-1] == 4
    assert sorted(answered + skipped) == [1, 2, 3, 4]
    assert all(response.faces for response in responses)


def test_health_and_model_info(client):
    assert client.health()
    info = client.model_info()
    assert [emotion_name(value) for value in info.classes] == list(EMOTIONS)
    assert any(d.available for d in info.detectors)


def test_bad_image_is_an_invalid_argument_error(client):
    with pytest.raises(grpc.RpcError) as error:
        client.annotate(b"this is not an image")
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def _face(box, emotion, probs) -> emotion_pb2.Face:
    return emotion_pb2.Face(
        box=emotion_pb2.Box(x=box[0], y=box[1], width=box[2], height=box[3]),
        detection_score=0.9,
        emotion=emotion,
        scores=[emotion_pb2.EmotionScore(emotion=i + 1, probability=p) for i, p in enumerate(probs)],
    )


def test_render_draws_boxes_and_bars_in_the_emotion_colours_at_any_scale():
    image = np.full((400, 600, 3), 90, np.uint8)
    face = _face((100, 60, 80, 80), emotion_pb2.EMOTION_HAPPY, (0.05, 0.05, 0.05, 0.6, 0.1, 0.1, 0.05))
    drawn = draw_annotations(image, [face], scale=0.5)
    assert drawn.shape == (200, 300, 3)
    assert (image == 90).all(), "the input frame is left untouched"
    happy = np.array(colour_of("happy"))

    def is_happy(pixels: np.ndarray) -> np.ndarray:
        return (np.abs(pixels.astype(int) - happy) <= 1).all(axis=-1)

    # The box lands at the scaled coordinates: left edge at x=50 from y=30 to y=70.
    assert is_happy(drawn[35:65, 50 : 50 + BOX_THICKNESS // 2 + 1]).all()
    assert (drawn[40:60, 60:80] == 90).all(), "the face itself is not painted over"
    # Under the box, the "happy" bar (4th row) is 0.6 of its span long; the others are shorter.
    happy_row = 74 + 2 + 3 * 12 + 6
    assert is_happy(drawn[happy_row, 82:120]).all()
    assert not is_happy(drawn[happy_row, 130:160]).any()
    assert not is_happy(drawn[happy_row - 12, 100:120]).any()


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
