"""Small builders shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ferstream.v1 import emotion_pb2 as pb


def stream_frame(frame_id: int, data: bytes, **options) -> pb.StreamAnnotateRequest:
    """A StreamAnnotateRequest with an encoded image and optional AnnotateOptions fields."""
    return pb.StreamAnnotateRequest(frame_id=frame_id, image=pb.Image(encoded=data),
                                    options=pb.AnnotateOptions(**options))


def pump(app, until: Callable[[], bool], timeout: float, what: str) -> None:
    """Runs a ClientApp's Tk event loop until the condition holds.

    Fails the test when timeout seconds pass first, or when the window closes before the condition holds
    (a closed window runs no more events, so the condition could only hold by accident).
    """
    give_up = time.monotonic() + timeout
    while not until():
        if app.closed:
            pytest.fail(f"the window closed while waiting for {what}; app says: {app.status_message!r}")
        if time.monotonic() > give_up:
            pytest.fail(f"timed out waiting for {what}; app says: {app.status_message!r}")
        app.root.update()
        time.sleep(0.01)


def metrics_url(server) -> str:
    """The http://host:port/metrics address a fer-server started with --metrics-port logged (waits up to 10 s)."""
    give_up = time.monotonic() + 10
    while (found := re.search(r"metrics on (http://\S+)", server.log())) is None:
        assert time.monotonic() < give_up, server.log()
        time.sleep(0.1)
    return found.group(1)


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of every sample at a Prometheus endpoint."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def face_mosaic(faces_dir, face_boxes: dict, tile: int = 128, columns: int = 8):
    """A crowd: every hand-boxed face of the shared photos (43), each cut out with its surroundings (a square
    1.8 times the box's longer side, the photo's edge repeated where it runs out), scaled to tile x tile px
    and laid out in rows of `columns`. Returns (BGR uint8 image, number of tiles)."""
    import cv2
    import numpy as np

    tiles = []
    for name in sorted(face_boxes):
        photo = cv2.imread(str(faces_dir / name))
        for x, y, width, height in face_boxes[name]:
            side = int(1.8 * max(width, height))
            padded = cv2.copyMakeBorder(photo, side, side, side, side, cv2.BORDER_REPLICATE)
            left, top = x + width // 2 + side - side // 2, y + height // 2 + side - side // 2
            crop = padded[top:top + side, left:left + side]
            shrink = side > tile
            tiles.append(cv2.resize(crop, (tile, tile), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC))
    rows = -(-len(tiles) // columns)
    mosaic = np.zeros((rows * tile, columns * tile, 3), np.uint8)
    for index, face in enumerate(tiles):
        row, column = divmod(index, columns)
        mosaic[row * tile:(row + 1) * tile, column * tile:(column + 1) * tile] = face
    return mosaic, len(tiles)


def wait_for_log_line(process, log_path, marker: str, name: str, timeout: float) -> str:
    """What follows `marker` on the first line of log_path that holds it, waiting up to timeout seconds for
    `process` (a subprocess.Popen writing log_path) to print it; fails the test, killing a process that did
    not answer, when it exits or the time runs out."""
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        text = log_path.read_text(errors="replace")
        for line in text.splitlines():
            if marker in line:
                return line.rsplit(marker, 1)[1]
        if process.poll() is not None:
            pytest.fail(f"{name} exited with {process.returncode}:\n{text}")
        time.sleep(0.1)
    process.kill()
    pytest.fail(f"{name} did not start within {timeout} s:\n{log_path.read_text(errors='replace')}")


def resident_bytes(pid: int | str = "self") -> int:
    """The resident set size of process pid (this process by default), in bytes, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/{pid}/status has no VmRSS line")


def growth_after_settling(pid: int, before: int, bound: int, timeout_s: float = 30.0) -> int:
    """Bytes process pid holds above before, once under bound or after timeout_s (buffers of the last calls
    go just after their answers), for tests of what large requests leave behind."""
    give_up = time.monotonic() + timeout_s
    while (grown := resident_bytes(pid) - before) >= bound and time.monotonic() < give_up:
        time.sleep(0.5)
    return grown


def png_claiming(width: int, height: int) -> bytes:
    """The start of an 8x8 PNG whose header (IHDR) claims width x height pixels: what a size check reads
    before refusing an image over its pixel limit."""
    import struct

    import cv2
    import numpy as np

    png = bytearray(cv2.imencode(".png", np.zeros((8, 8), np.uint8))[1].tobytes())
    png[16:24] = struct.pack(">II", width, height)
    return bytes(png)
