"""One photo, one answer: the shared photos sent through every surface (fer-web's REST endpoint, the gRPC
client, the in-process API, fer-annotate in-process and through --server) give the same faces with the
same probabilities, because a still travels as its file's bytes everywhere and is decoded by one decoder."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

import ferstream
from ferstream.client import EmotionClient, face_to_dict
from helpers import wait_for_log_line

DETECTOR = "yunet"
# Probabilities agree to this much across surfaces (the same pixels through the same model).
TOLERANCE = 1e-3

Answer = list[tuple[tuple[int, int, int, int], dict[str, float]]]


def answer(faces: list[dict]) -> Answer:
    """Faces as (box, probabilities), in box order, so that surfaces listing them differently compare."""
    return sorted((tuple(face["box"][key] for key in ("x", "y", "width", "height")), face["probabilities"])
                  for face in faces)


@pytest.fixture(scope="module")
def photos(faces_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the shared photos (and nothing else), for fer-annotate's batches."""
    folder = tmp_path_factory.mktemp("photos")
    for path in sorted(faces_dir.glob("*.jpg")):
        shutil.copy(path, folder / path.name)
    return folder


@pytest.fixture(scope="module")
def server(fer_server_factory, fer_models_dir):
    return fer_server_factory("--models-dir", str(fer_models_dir))


@pytest.fixture(scope="module")
def gateway(server, tmp_path_factory: pytest.TempPathFactory):
    """fer-web in front of the server; its base URL."""
    log_path = tmp_path_factory.mktemp("fer-web") / "fer-web.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "ferstream.web.cli", "--port", "0", "--server",
                                    server.address], stdout=log, stderr=subprocess.STDOUT)
    url = wait_for_log_line(process, log_path, "fer-web: serving ", "fer-web", 60)
    yield url.split()[0].rstrip("/")
    process.terminate()
    process.wait(timeout=30)


def fer_annotate_batch(folder: Path, jsonl: Path, *arguments: str) -> dict[str, Answer]:
    """{photo name: answer} from `fer-annotate FOLDER --jsonl JSONL ARGUMENTS` (one run for every photo)."""
    result = subprocess.run([sys.executable, "-m", "ferstream.annotate_command", str(folder), "--jsonl", str(jsonl),
                             "--detector", DETECTOR, *arguments], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    return {Path(record["file"]).name: answer(record["faces"]) for record in records}


def assert_same(name: str, surface: str, got: Answer, expected: Answer) -> None:
    assert [box for box, _ in got] == [box for box, _ in expected], f"{name}: {surface} found other faces"
    for (box, probabilities), (_, wanted) in zip(got, expected):
        assert probabilities.keys() == wanted.keys()
        worst = max(abs(probabilities[key] - wanted[key]) for key in wanted)
        assert worst <= TOLERANCE, f"{name}, face at {box}: {surface} differs by {worst:.4f}"


@pytest.mark.slow
def test_every_surface_gives_a_photo_the_same_answer(photos, server, gateway, fer_models_dir, tmp_path):
    names = sorted(path.name for path in photos.iterdir())
    inprocess = fer_annotate_batch(photos, tmp_path / "inprocess.jsonl", "--models-dir", str(fer_models_dir))
    remote = fer_annotate_batch(photos, tmp_path / "remote.jsonl", "--server", server.address)
    assert sorted(inprocess) == sorted(remote) == names
    assert sum(len(faces) for faces in inprocess.values()) >= 40  # the hand-boxed photos hold 43 faces
    with EmotionClient(server.address) as client:
        for name in names:
            expected = answer(ferstream.analyze(str(photos / name), detector=DETECTOR))
            grpc_faces = [face_to_dict(face) for face in client.annotate(str(photos / name), detector=DETECTOR).faces]
            request = urllib.request.Request(f"{gateway}/v1/annotate?detector={DETECTOR}", method="POST",
                                             data=(photos / name).read_bytes(),
                                             headers={"content-type": "image/jpeg"})
            with urllib.request.urlopen(request, timeout=120) as response:
                rest_faces = json.loads(response.read())["faces"]
            for surface, got in (("gRPC", answer(grpc_faces)), ("REST", answer(rest_faces)),
                                 ("fer-annotate", inprocess[name]), ("fer-annotate --server", remote[name])):
                assert_same(name, surface, got, expected)
