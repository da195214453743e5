"""`ferstream.analyze`: the server's faces without a server, from a path, encoded bytes or a BGR array."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2

import ferstream
from ferstream.client import EmotionClient, face_to_dict

PHOTOS = ("2008_002506.jpg", "2008_001009.jpg")  # three and two large faces


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
    import numpy as np
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
