"""Shared test fixtures. Data comes from ../shared (FER_DATA_DIR), never from copies in the repo."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from ferstream.server.ready import SERVING_PREFIX
from helpers import wait_for_log_line

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """$FER_DATA_DIR, else the shared/ folder beside the repository."""
    return Path(os.environ.get("FER_DATA_DIR", REPO.parent / "shared")).resolve()


def models_dir() -> Path:
    """$FER_MODELS_DIR, else the shared folder's models/."""
    return Path(os.environ.get("FER_MODELS_DIR", shared_dir() / "models")).resolve()


@pytest.fixture(scope="session")
def shared() -> Path:
    """The shared data folder; fails the session when it is missing."""
    path = shared_dir()
    if not (path / "datasets").is_dir():
        pytest.fail(f"{path}: shared data not found; set FER_DATA_DIR to the shared/ folder")
    return path


@pytest.fixture(scope="session")
def faces_dir(shared: Path) -> Path:
    """The hand-boxed test photos (testdata/faces)."""
    return shared / "testdata" / "faces"


@pytest.fixture(scope="session")
def fer_models_dir() -> Path:
    """The detector weights folder the tests give fer-server and fer-annotate."""
    return models_dir()


# A photo with three large, frontal faces: every detector finds them.
GROUP_PHOTO = "2008_002506.jpg"


@pytest.fixture(scope="session")
def photo(faces_dir: Path) -> bytes:
    """JPEG bytes of GROUP_PHOTO."""
    return (faces_dir / GROUP_PHOTO).read_bytes()


@pytest.fixture(autouse=True, scope="session")
def private_dataset_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Each test session decodes datasets into its own cache, so tests never read a stale one."""
    os.environ.setdefault("FER_CACHE_DIR", str(tmp_path_factory.mktemp("dataset-cache")))


# --- fer-server on loopback (used by tests/test_server_*.py) ---


@dataclass
class RunningServer:
    """A fer-server subprocess, the address it serves on, and its log file."""

    process: subprocess.Popen
    address: str
    log_path: Path

    def log(self) -> str:
        """Everything the server logged so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM (if still running), then its exit code."""
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.wait(timeout=30)


def launch_fer_server(log_path: Path, *args: str, timeout: float = 120.0) -> RunningServer:
    """`fer-server --port 0 ARGS` as a subprocess; returns once it logs its address (models loaded)."""
    command = [sys.executable, "-m", "ferstream.server.cli", "--port", "0", "--threads", "1", *args]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    address = wait_for_log_line(process, log_path, SERVING_PREFIX, "fer-server", timeout)
    return RunningServer(process, address.strip(), log_path)


@pytest.fixture(scope="module")
def fer_server_factory(tmp_path_factory: pytest.TempPathFactory):
    """Starts fer-server subprocesses for one test module and stops them at its end."""
    servers: list[RunningServer] = []

    def start(*args: str) -> RunningServer:
        log_path = tmp_path_factory.mktemp("fer-server") / "server.log"
        server = launch_fer_server(log_path, *args)
        servers.append(server)
        return server

    yield start
    for server in servers:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


@pytest.fixture(scope="session")
def face_boxes(faces_dir: Path) -> dict[str, list[tuple[int, int, int, int]]]:
    """Hand-drawn face boxes (left, top, width, height) per photo, from testing.xml and training.xml."""
    from ferstream.bench.photos import read_boxes

    return read_boxes(faces_dir)


class LockstepStream:
    """A StreamAnnotate call that sends one request and waits for its response before the next."""

    def __init__(self, stub, timeout: float = 60.0) -> None:
        import queue

        self.requests: queue.Queue = queue.Queue()
        self.responses = stub.StreamAnnotate(iter(self.requests.get, None), timeout=timeout)

    def send(self, request):
        """Sends request and returns its response."""
        self.requests.put(request)
        return next(self.responses)

    def close(self) -> list:
        """Ends the request stream; the responses still to come."""
        self.requests.put(None)
        return list(self.responses)


@pytest.fixture(scope="session")
def lockstep_stream():
    """The LockstepStream class, for tests that need one answer per request before the next."""
    return LockstepStream


# --- programs besides Python ---


def require_program(*names: str) -> None:
    """Skips the calling test when a program is missing, or fails it under CI (CI=true), where `make test`
    has installed everything (.ci/test-deps) and a missing program is a broken setup, not a choice."""
    missing = [name for name in names if shutil.which(name) is None]
    if not missing:
        return
    message = f"{', '.join(missing)} not installed (`make test-deps` installs it)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def node_and_npm() -> None:
    """Node.js and npm, for the Node example (skipped without them, except under CI=true: failed)."""
    require_program("node", "npm")


# --- README's examples (tests/test_examples.py): a folder holding what they name ---


@pytest.fixture(scope="module")
def example_folder(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path, client_faces_video) -> Path:
    """A working folder like a user's: photo.jpg (three faces), clip.mp4 (16 frames of two photos), and
    examples/ (a link to the repository's, so README's `examples/...` paths work from here)."""
    folder = tmp_path_factory.mktemp("examples")
    shutil.copy(faces_dir / GROUP_PHOTO, folder / "photo.jpg")
    shutil.copy(client_faces_video.path, folder / "clip.mp4")
    (folder / "examples").symlink_to(REPO / "examples", target_is_directory=True)
    return folder


# --- fer-client: an X display and a video of the test photos (used by tests/test_client_*.py) ---


@pytest.fixture(scope="session")
def client_display(tmp_path_factory: pytest.TempPathFactory):
    """An X display for Tk: $DISPLAY when set, else a private Xvfb started here (and stopped at the end).

    Fails, never skips, without either: `make test` installs Xvfb first (its test-deps step, .ci/test-deps).
    """
    if os.environ.get("DISPLAY"):
        yield os.environ["DISPLAY"]
        return
    if shutil.which("Xvfb") is None:
        pytest.fail("no $DISPLAY and no Xvfb: run `make test-deps` (as root) or apt-get install -y xvfb xdotool "
                    "imagemagick")
    read_end, write_end = os.pipe()
    xvfb = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_end), "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
        pass_fds=(write_end,),
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    with os.fdopen(read_end) as display_number:
        display = f":{display_number.readline().strip()}"
    os.environ["DISPLAY"] = display
    yield display
    del os.environ["DISPLAY"]
    xvfb.terminate()
    xvfb.wait()


@dataclass(frozen=True)
class FacesVideo:
    """A video made of test photos resized to 640x480, each held for frames_per_photo frames."""

    path: Path
    photos: tuple[str, ...]
    frames_per_photo: int
    fps: float
    frames: dict  # photo name -> the 640x480 BGR frame written for it
    boxes: dict  # photo name -> hand-drawn face boxes (x, y, width, height) scaled to 640x480

    @property
    def frame_count(self) -> int:
        """Frames in the video."""
        return len(self.photos) * self.frames_per_photo

    def photo_at(self, index: int) -> str:
        """The photo shown by frame index (0-based)."""
        return self.photos[index // self.frames_per_photo]

    def photo_of(self, image) -> str:
        """The photo a decoded frame shows (the nearest one, since the video is lossy)."""
        import numpy as np

        return min(self.photos, key=lambda name: np.abs(self.frames[name].astype(int) - image).mean())


@pytest.fixture(scope="session")
def client_faces_video(faces_dir: Path, face_boxes, tmp_path_factory: pytest.TempPathFactory) -> FacesVideo:
    """An MPEG-4 video at 10 fps: 8 frames of a photo with three large faces, then 8 of one with two."""
    import cv2

    from ferstream.bench.photos import scale_box

    photos = ("2008_002506.jpg", "2008_001009.jpg")  # large faces: 3 and 2 of them
    size, fps, frames_per_photo = (640, 480), 10.0, 8
    path = tmp_path_factory.mktemp("client-video") / "faces.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    frames, boxes = {}, {}
    for name in photos:
        photo = cv2.imread(str(faces_dir / name))
        scale_x, scale_y = size[0] / photo.shape[1], size[1] / photo.shape[0]
        frames[name] = cv2.resize(photo, size, interpolation=cv2.INTER_AREA)
        boxes[name] = [scale_box(box, scale_x, scale_y) for box in face_boxes[name]]
        for _ in range(frames_per_photo):
            writer.write(frames[name])
    writer.release()
    return FacesVideo(path, photos, frames_per_photo, fps, frames, boxes)


@pytest.fixture(scope="session")
def client_box_iou():
    """Intersection over union of two (x, y, width, height) boxes: the one fer-bench scores with."""
    from ferstream.bench.detectors import iou

    return iou


@pytest.fixture(scope="session")
def small_test_folder(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bare folder of class subfolders: the first 15 PublicTest images of each class."""
    root = tmp_path_factory.mktemp("public-small")
    for class_dir in sorted((shared / "datasets" / "fer2013" / "test").iterdir()):
        (root / class_dir.name).mkdir()
        for image in sorted(class_dir.iterdir())[:15]:
            shutil.copy(image, root / class_dir.name / image.name)
    return root
