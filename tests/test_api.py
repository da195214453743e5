"""`ferstream.analyze`: the server's faces without a server, from a path, encoded bytes or a BGR array."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

import ferstream
from ferstream.client import EmotionClient, face_to_dict

PHOTOS = ("2008_002506.jpg", "2008_001009.jpg")  # three and two large faces


@pytest.mark.slow
def test_analyze_gives_the_faces_the_servers_annotate_gives(fer_server_factory, fer_models_dir: Path,
                                                             faces_dir: Path) -> None:
    server = fer_server_factory("--models-dir", str(fer_models_dir))
    with EmotionClient(server.address) as client:
        for name in PHOTOS:
            path = faces_dir / name
            served = [face_to_dict(face) for face in client.annotate(path.read_bytes()).faces]
            assert len(served) >= 2
            assert ferstream.analyze(str(path)) == served
            assert ferstream.analyze(path) == served
            assert ferstream.analyze(path.read_bytes()) == served
            # A decoded array skips the JPEG decoder, which gives the same pixels: the same faces.
            assert ferstream.analyze(cv2.imread(str(path))) == served
            # Both photos' defaults are the accurate model; the fast one is asked for by name.
            fast = client.annotate(path.read_bytes(), model="fast")
            assert fast.model == "fast" and client.annotate(path.read_bytes()).model == "accurate"
            assert ferstream.analyze(path, model="fast") == [face_to_dict(face) for face in fast.faces] != served


def test_analyze_loads_once_and_serves_threads(faces_dir: Path) -> None:
    from ferstream import inprocess

    path = faces_dir / PHOTOS[0]
    first = ferstream.analyze(path)
    loaded = inprocess._frame_path
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(ferstream.analyze, [path] * 8))
    assert answers == [first] * 8
    assert inprocess._frame_path is loaded


def test_bad_input_raises_one_clear_error(tmp_path: Path) -> None:
    import pytest

    from ferstream.pipeline.errors import FrameError

    with pytest.raises(FrameError, match="decode|image"):
        ferstream.analyze(b"not an image")
    with pytest.raises(ValueError, match="uint8"):
        ferstream.analyze(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(OSError):
        ferstream.analyze(tmp_path / "missing.jpg")
    with pytest.raises(ValueError, match="detector"):
        ferstream.analyze(b"", detector="nope")
    with pytest.raises(ValueError, match="unknown model 'precise'; choose one of fast, accurate"):
        ferstream.analyze(b"", model="precise")


def test_import_ferstream_is_light_and_keeps_the_sub_packages() -> None:
    probe = ("import sys, ferstream, ferstream.pipeline.settings, ferstream.client.library\n"
             "print(callable(ferstream.analyze), 'ferstream.server' in sys.modules, 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False", "False"]


def test_analyze_says_what_the_face_limit_left_out_and_honours_a_larger_one(faces_dir: Path, face_boxes) -> None:
    from helpers import face_mosaic

    from ferstream.pipeline.settings import MAX_FACES

    mosaic, tiles = face_mosaic(faces_dir, face_boxes)  # 43 faces
    everyone = ferstream.analyze(mosaic, max_faces=200)
    found = len(everyone)
    assert found > MAX_FACES and everyone.faces_omitted == 0
    limited = ferstream.analyze(mosaic)
    assert len(limited) == MAX_FACES and limited.faces_omitted == found - MAX_FACES
    assert limited == everyone[:MAX_FACES]  # the highest scored ones are kept
    asked = ferstream.analyze(mosaic, max_faces=5)
    assert len(asked) == 5 and asked.faces_omitted == found - 5


@pytest.mark.slow
def test_analyze_gives_each_face_as_the_servers_message_carries_it(faces_dir: Path) -> None:
    """analyze builds its dicts from the frame path's own answer; fer-server builds Face messages from the same
    answer (server/protoconv.py), which clients turn into dicts: for each shared photo, detector, threshold and
    model the two agree to the last decimal (the message's float32 included)."""
    from ferstream import inprocess
    from ferstream.pipeline.decode import EncodedImage
    from ferstream.pipeline.detectors import DetectorKind
    from ferstream.pipeline.framepath import DetectOptions
    from ferstream.pipeline.settings import MAX_FACES
    from ferstream.server.protoconv import annotate_response

    ferstream.analyze(faces_dir / PHOTOS[0])  # loads the process's frame path
    compared = 0
    for path in sorted(faces_dir.glob("*.jpg")):
        for detector, min_score, model in (("yunet", 0.0, "accurate"), ("ssd", 0.0, "fast"), ("yunet", 0.7, "fast")):
            options = DetectOptions(DetectorKind[detector.upper()], float(np.float32(min_score)), MAX_FACES,
                                    model=model)
            with inprocess._lock:
                served = annotate_response(inprocess._frame_path.annotate(EncodedImage(path.read_bytes()), options))
            answer = ferstream.analyze(path, detector=detector, min_detection_score=min_score, model=model)
            assert answer == [face_to_dict(face) for face in served.faces], (path.name, detector, model)
            assert answer.faces_omitted == served.faces_omitted
            compared += len(answer)
    assert compared > 20


def test_a_face_on_a_rounding_edge_gets_the_servers_numbers() -> None:
    """Detection scores are float64 in the frame path and float32 in the service's Face message; a score
    halfway between two 4-decimal values can round either way in the two. analyze's face (face_dict) and the
    server's message of the same FaceResult (server/protoconv.py, read back by face_to_dict) must agree there."""
    from ferstream.inprocess import face_dict
    from ferstream.pipeline.detectors import Detection
    from ferstream.pipeline.framepath import AnnotatedFrame, FaceResult
    from ferstream.server.protoconv import annotate_response

    probabilities = np.array([0.05, 0.05, 0.1, 0.5, 0.1, 0.1, 0.1], np.float32)
    faces = [FaceResult(Detection(10, 20, 30, 40, step / 1000 + 0.00005), probabilities, tuple(range(7)))
             for step in range(1, 1000)]
    served = annotate_response(AnnotatedFrame(640, 480, faces)).faces
    assert [face_dict(face) for face in faces] == [face_to_dict(face) for face in served]
