"""The Tk app on an X display (Xvfb in CI) against a real fer-server, driven by real X input (xdotool)
and checked on screenshots of the screen."""

from __future__ import annotations

import gc
import shutil
import subprocess
import sys
import threading
import time
import tkinter as tk
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from ferstream.client.app import ClientApp
from ferstream.client.capture import open_source
from ferstream.client.library import EmotionClient, box_tuple, emotion_name
from ferstream.client.render import colour_of
from ferstream.client.session import ConnectionState, StreamOptions
from ferstream.v1 import emotion_pb2
from helpers import pump


@pytest.fixture(scope="module")
def server(fer_server_factory, fer_models_dir):
    return fer_server_factory("--models-dir", str(fer_models_dir))


@pytest.fixture
def make_app(client_display, client_faces_video, tmp_path) -> Iterator[Callable[..., ClientApp]]:
    apps: list[ClientApp] = []

    def make(target: str, **options: object) -> ClientApp:
        app = ClientApp(
            tk.Tk(),
            open_source(str(client_faces_video.path)),
            EmotionClient,
            target,
            StreamOptions(**options),
            snapshot_dir=tmp_path,
        )
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()
    # Tk objects must die on the main thread: collect them now, not in some gRPC thread's garbage collection.
    apps.clear()
    gc.collect()




def click(widget: tk.Widget) -> None:
    x = widget.winfo_rootx() + widget.winfo_width() // 2
    y = widget.winfo_rooty() + widget.winfo_height() // 2
    subprocess.run(["xdotool", "mousemove", str(x), str(y), "click", "1"], check=True)


def screenshot(path: Path) -> np.ndarray:
    subprocess.run(["import", "-window", "root", str(path)], check=True)
    return cv2.imread(str(path))


def colour_pixels(image: np.ndarray, box: tuple[int, int, int, int], colour: tuple[int, int, int]) -> int:
    x1, y1, x2, y2 = (max(0, value) for value in box)
    region = image[y1:y2, x1:x2].astype(int)
    return int((np.abs(region - np.array(colour)) <= 8).all(axis=-1).sum())


def test_annotations_are_drawn_on_the_faces_of_the_scaled_frame(
    server, make_app, client_faces_video, client_box_iou, tmp_path
):
    video = client_faces_video
    app = make_app(server.address, detector="ssd")
    app.root.geometry("1150x640")  # not the frame's size: the picture is scaled to the window
    pump(app, lambda: app.stats.received >= 3, 30, "annotated frames")
    assert app.state is ConnectionState.CONNECTED

    click(app.pause_button)  # freezes the picture on the last annotated frame
    pump(app, lambda: app.options.paused, 5, "the Pause click")
    app.root.update()
    shot = screenshot(tmp_path / "screen.png")

    shown = app.last_annotated
    photo = video.photo_of(shown.frame.image)
    view = app.view
    assert view.scale != 1.0
    origin_x = app.canvas.winfo_rootx() + view.offset_x
    origin_y = app.canvas.winfo_rooty() + view.offset_y
    checked = 0
    for face in shown.response.faces:
        box = box_tuple(face)
        truths = [truth for truth in video.boxes[photo] if client_box_iou(box, truth) >= 0.3]
        if not truths:
            continue
        x, y, w, h = truths[0]
        margin_x, margin_y = 0.3 * w, 0.3 * h  # the detector's box is not the hand-drawn one
        on_screen = (
            round(origin_x + (x - margin_x) * view.scale),
            round(origin_y + (y - margin_y) * view.scale),
            round(origin_x + (x + w + margin_x) * view.scale),
            round(origin_y + (y + h + margin_y) * view.scale),
        )
        colour = colour_of(emotion_name(face.emotion))
        perimeter = 2 * (box[2] + box[3]) * view.scale
        assert colour_pixels(shot, on_screen, colour) >= perimeter, f"no {colour} box around {truths[0]}"
        in_photo = (round(x - margin_x), round(y - margin_y), round(x + w + margin_x), round(y + h + margin_y))
        assert colour_pixels(video.frames[photo], in_photo, colour) < 0.1 * perimeter, "the colour is ours"
        checked += 1
    assert checked >= 2, f"{checked} faces of {photo} found on screen"

    saved = app.snapshot()
    snapshot = cv2.imread(str(saved))
    assert snapshot.shape == (480, 640, 3) and saved.suffix == ".png"
    first = shown.response.faces[0]
    x1, y1, w1, h1 = box_tuple(first)
    assert colour_pixels(snapshot, (x1 - 2, y1 - 2, x1 + w1 + 2, y1 + h1 + 2), colour_of(emotion_name(first.emotion)))

    click(app.pause_button)
    received = app.stats.received
    pump(app, lambda: app.stats.received > received + 1, 10, "frames after Resume")


def test_the_detector_control_changes_what_the_server_is_asked(server, make_app):
    app = make_app(server.address, detector="ssd")
    pump(app, lambda: app.last_annotated is not None, 30, "an annotated frame")
    assert app.last_annotated.options.detector == emotion_pb2.DETECTOR_SSD

    app.detector_box.set("haar")
    app.detector_box.event_generate("<<ComboboxSelected>>")
    pump(app, lambda: app.last_annotated.options.detector == emotion_pb2.DETECTOR_HAAR, 10, "a Haar answer")

    # The server's answer for that frame is what Haar finds on it, and not what SSD finds.
    shown = app.last_annotated
    boxes = [box_tuple(face) for face in shown.response.faces]
    with EmotionClient(server.address) as client:
        quality = app.options.jpeg_quality
        haar = [box_tuple(f) for f in client.annotate(shown.frame.image, detector="haar", jpeg_quality=quality).faces]
        ssd = [box_tuple(f) for f in client.annotate(shown.frame.image, detector="ssd", jpeg_quality=quality).faces]
    assert haar != ssd
    assert boxes == haar


def test_every_control_explains_itself_on_hover(server, make_app):
    app = make_app(server.address)
    controls = [app.connect_button, app.detector_box, app.min_score_scale, app.quality_scale, app.pause_button,
                app.snapshot_button]
    assert set(controls) <= {tip.widget for tip in app.tooltips}
    pump(app, lambda: app.detector_box.winfo_viewable() and app.detector_box.winfo_rootx() > 0, 10, "the window")
    x = app.detector_box.winfo_rootx() + 5
    y = app.detector_box.winfo_rooty() + 5
    subprocess.run(["xdotool", "mousemove", "0", "0", "sleep", "0.1", "mousemove", str(x), str(y)], check=True)

    def tooltip_text() -> str:
        return " ".join(tip.msg_var.get() for tip in app.tooltips if tip.winfo_viewable())

    pump(app, lambda: "detector" in tooltip_text().lower(), 5, "the detector's tooltip")


def test_closing_the_window_stops_every_thread_within_a_second(server, make_app):
    app = make_app(server.address)
    pump(app, lambda: app.last_annotated is not None, 30, "an annotated frame")
    ours = [thread for thread in threading.enumerate() if thread.name.startswith("fer-")]
    assert {thread.name for thread in ours} == {"fer-capture", "fer-session"}

    click(app.canvas)  # the pointer over the window gives it the keyboard
    subprocess.run(["xdotool", "key", "ctrl+q"], check=True)
    pressed = time.monotonic()
    pump(app, lambda: app.closed, 5, "the window to close")
    for thread in ours:
        thread.join(timeout=max(0.0, pressed + 1.0 - time.monotonic()))
    assert not [thread.name for thread in ours if thread.is_alive()]


def test_the_command_opens_the_window_and_exits_cleanly_on_sigterm(
    server, client_display, client_faces_video, tmp_path
):
    source = tmp_path / "cli-test-video.mp4"  # its name is in the window's title: no other window has it
    shutil.copy(client_faces_video.path, source)
    script = Path(sys.executable).with_name("fer-client")
    command = [str(script) if script.exists() else "fer-client"]
    process = subprocess.Popen(
        [*command, "--server", server.address, "--source", str(source)], stderr=subprocess.PIPE, text=True
    )
    try:
        found = subprocess.run(
            ["xdotool", "search", "--sync", "--name", source.name], capture_output=True, timeout=30
        )
        assert found.returncode == 0
        time.sleep(1.0)
        process.terminate()
        assert process.wait(timeout=10) == 0
        assert "Traceback" not in process.stderr.read()
    finally:
        process.kill()


def test_disconnect_and_connect_buttons(server, make_app):
    app = make_app(server.address)
    pump(app, lambda: app.last_annotated is not None, 30, "an annotated frame")
    click(app.connect_button)
    pump(app, lambda: app.state is ConnectionState.DISCONNECTED, 5, "Disconnect")
    pump(app, lambda: not any(t.name == "fer-session" for t in threading.enumerate()), 2, "the session to end")
    before = app.last_annotated
    click(app.connect_button)
    pump(app, lambda: app.last_annotated is not before, 20, "frames after Connect")
    assert app.state is ConnectionState.CONNECTED
