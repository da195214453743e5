"""The Tk app on an X display (Xvfb in CI) against a real fer-server, driven by real X input (xdotool)
and checked on screenshots of the screen.

Set FER_SCREENSHOTS_DIR (e.g. to docs/) to keep the window screenshots of the 1-, 3- and 20-face tests there
(`make docs` does).
"""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import sys
import threading
import time
import tkinter as tk
import tkinter.font as tkfont
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from ferstream.annotate.draw import Style, overlaps
from ferstream.client.app import FLASH_MS, PAUSED_BADGE, ClientApp
from ferstream.client.capture import open_source
from ferstream.client.library import EmotionClient
from ferstream.client.messages import box_tuple, face_to_dict
from ferstream.client.render import annotation, colour_of, render_reply
from ferstream.client.session import ConnectionState, Stats, StreamOptions
from ferstream.client.widgets import TOOLTIP_BACKGROUND
from ferstream.v1 import emotion_pb2
from helpers import metrics_url, pump, scrape


@pytest.fixture(scope="module")
def server(fer_server_factory, fer_models_dir):
    return fer_server_factory("--models-dir", str(fer_models_dir))


@pytest.fixture
def make_app(client_display, client_faces_video, tmp_path) -> Iterator[Callable[..., ClientApp]]:
    apps: list[ClientApp] = []

    def make(target: str, source: Path | None = None, **options: object) -> ClientApp:
        app = ClientApp(
            tk.Tk(),
            open_source(str(source or client_faces_video.path)),
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


def window_of(app: ClientApp, shot: np.ndarray) -> np.ndarray:
    """The part of a screen shot that shows the app's window, status bar included."""
    x, y = app.root.winfo_rootx(), app.root.winfo_rooty()
    return shot[y : y + app.root.winfo_height(), x : x + app.root.winfo_width()]


def type_keys(*keys: str) -> None:
    subprocess.run(["xdotool", "key", "--delay", "20", *keys], check=True)


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

    click(app.controls.pause_button)  # freezes the picture on the last annotated frame
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
        colour = colour_of(annotation(face, 0).emotion)  # the emotion shown: smoothed over the face's track
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
    assert colour_pixels(snapshot, (x1 - 2, y1 - 2, x1 + w1 + 2, y1 + h1 + 2), colour_of(annotation(first, 0).emotion))

    click(app.controls.pause_button)
    received = app.stats.received
    pump(app, lambda: app.stats.received > received + 1, 10, "frames after Resume")


def test_the_detector_control_changes_what_the_server_is_asked(server, make_app):
    app = make_app(server.address, detector="ssd")
    pump(app, lambda: app.last_annotated is not None, 30, "an annotated frame")
    assert app.last_annotated.options.detector == emotion_pb2.DETECTOR_SSD

    app.controls.detector_box.set("haar")
    app.controls.detector_box.event_generate("<<ComboboxSelected>>")
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


def test_the_model_control_changes_which_model_answers(server, make_app):
    app = make_app(server.address)
    pump(app, lambda: app.last_annotated is not None, 30, "an annotated frame")
    assert app.last_annotated.response.model == "fast"  # the server's default for streams
    app.controls.model_box.set("accurate")
    app.controls.model_box.event_generate("<<ComboboxSelected>>")
    pump(app, lambda: app.last_annotated.response.model == "accurate", 20, "an answer of the accurate model")
    assert app.last_annotated.options.model == "accurate"


def test_every_control_explains_itself_on_hover(server, make_app, tmp_path):
    app = make_app(server.address)
    widgets = app.controls
    controls = [widgets.connect_button, widgets.detector_box, widgets.model_box, widgets.min_score_scale,
                widgets.quality_scale, widgets.pause_button, widgets.snapshot_button]
    assert set(controls) <= {tip.widget for tip in app.tooltips}
    box = app.controls.detector_box
    pump(app, lambda: box.winfo_viewable() and box.winfo_rootx() > 0, 10, "the window")
    x = app.controls.detector_box.winfo_rootx() + 5
    y = app.controls.detector_box.winfo_rooty() + 5
    subprocess.run(["xdotool", "mousemove", "0", "0", "sleep", "0.1", "mousemove", str(x), str(y)], check=True)

    def tooltip_text() -> str:
        return " ".join(tip.msg_var.get() for tip in app.tooltips if tip.winfo_viewable())

    pump(app, lambda: "detector" in tooltip_text().lower(), 5, "the detector's tooltip")
    app.root.update()
    # Shown means on top: with no window manager to raise it, the tooltip must not open under the window.
    [tip] = [tip for tip in app.tooltips if tip.winfo_viewable()]
    shot = screenshot(tmp_path / "tooltip.png")
    # Where the tooltip lies over the main window (elsewhere the screen is bare and shows it anyway).
    x1, y1 = max(tip.winfo_rootx(), app.root.winfo_rootx()), max(tip.winfo_rooty(), app.root.winfo_rooty())
    x2 = min(tip.winfo_rootx() + tip.winfo_width(), app.root.winfo_rootx() + app.root.winfo_width())
    y2 = min(tip.winfo_rooty() + tip.winfo_height(), app.root.winfo_rooty() + app.root.winfo_height())
    assert x2 - x1 > 20 and y2 - y1 > 10
    background = np.array([int(TOOLTIP_BACKGROUND[i : i + 2], 16) for i in (5, 3, 1)])  # '#rrggbb' as BGR
    shown = (np.abs(shot[y1:y2, x1:x2].astype(int) - background) <= 2).all(axis=-1).mean()
    assert shown > 0.5, f"the tooltip is hidden under the window ({shown:.0%} of it shows)"


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
    pump(app, lambda: app.last_annotated is not None and app.status_bar.stats_label.cget("text"), 30,
         "annotated frames")
    pump(app, lambda: app.controls.face_list.get_children(), 5, "the face list")
    click(app.controls.connect_button)
    pump(app, lambda: app.state is ConnectionState.DISCONNECTED, 5, "Disconnect")
    # The finished stream's figures and faces are not left on screen as if they were current.
    assert app.status_bar.stats_label.cget("text") == "" and app.stats == Stats()
    assert not app.controls.face_list.get_children()
    pump(app, lambda: not any(t.name == "fer-session" for t in threading.enumerate()), 2, "the session to end")
    before = app.last_annotated
    click(app.controls.connect_button)
    pump(app, lambda: app.last_annotated is not before, 20, "frames after Connect")
    assert app.state is ConnectionState.CONNECTED


def test_enter_in_the_server_field_connects_to_the_address_typed(server, make_app):
    app = make_app("127.0.0.1:1")  # nothing listens there: the app keeps retrying
    pump(app, lambda: app.state is ConnectionState.RECONNECTING, 10, "the app to give up on port 1")

    def enter(text: str) -> None:
        click(app.controls.server_entry)
        keys = [{".": "period", ":": "colon", "/": "slash"}.get(char, char) for char in text]
        type_keys("End", "shift+Home", "BackSpace", *keys, "Return")

    enter(f"http://{server.address}")
    pump(app, lambda: "not HTTP" in app.status_message, 5, "the http:// address to be refused")
    assert app.state is ConnectionState.DISCONNECTED and app.controls.connect_button.cget("text") == "Connect"
    enter(server.address)
    pump(app, lambda: app.last_annotated is not None, 30, "frames from the server typed in")
    assert app.state is ConnectionState.CONNECTED and app.status_message == f"connected to {server.address}"


@pytest.mark.slow
def test_pause_and_snapshot_say_what_they_did(server, make_app):
    app = make_app(server.address)
    pump(app, lambda: app.last_annotated is not None, 30, "an annotated frame")
    click(app.controls.pause_button)
    pump(app, lambda: app.options.paused, 5, "the Pause click")
    assert app.canvas.badge_banner.text == PAUSED_BADGE and app.controls.pause_button.cget("text") == "Resume"
    assert app.canvas.badge_banner.visible

    click(app.controls.snapshot_button)
    pump(app, lambda: app.status_message.startswith("saved "), 5, "the snapshot")
    connected = f"connected to {server.address}"
    pump(app, lambda: app.status_message == connected, FLASH_MS / 1000 + 3, "the snapshot message to clear")

    click(app.controls.pause_button)
    pump(app, lambda: not app.options.paused, 5, "the Resume click")
    assert not app.canvas.badge_banner.visible and app.controls.pause_button.cget("text") == "Pause"


def label_rect(label: tk.Widget) -> tuple[int, int, int, int]:
    x, y = label.winfo_rootx(), label.winfo_rooty()
    return (x, y, x + label.winfo_width(), y + label.winfo_height())


def test_the_status_bar_and_overlays_fit_a_small_window_and_grow_with_a_large_one(server, make_app):
    app = make_app(server.address)
    sizes = {}
    smallest = "{}x{}".format(*app.root.minsize())
    for geometry in (smallest, "1240x960"):  # the smallest the window may be, and most of the screen
        app.root.geometry(geometry)
        wide = geometry != smallest
        pump(app, lambda wide=wide: app.canvas.winfo_width() > 1000 if wide else app.canvas.winfo_width() < 300,
             10, f"the window at {geometry}")
        seen = app.stats.received
        pump(app, lambda seen=seen: app.stats.received > seen + 1 and app.drawing.placements, 30,
             f"frames at {geometry}")
        app.root.update()
        state, stats = app.status_bar.state_label, app.status_bar.stats_label
        assert stats.cget("text"), "the figures are shown"
        assert not overlaps(label_rect(state), label_rect(stats)), f"the status texts run together at {geometry}"
        font = tkfont.nametofont("TkDefaultFont")
        for label in (state, stats):
            assert font.measure(label.cget("text")) <= label.winfo_width(), f"{label.cget('text')!r} is cut"
            assert "…" not in label.cget("text"), f"{label.cget('text')!r}: there is room to show it whole"
            assert label.winfo_rootx() + label.winfo_width() <= app.root.winfo_rootx() + app.root.winfo_width()
        labels = [placed.label for placed in app.drawing.placements if placed.label is not None]
        sizes[geometry] = (max(rect[3] - rect[1] for rect in labels), app.canvas.banner_font.actual("size"))
    small, large = sizes[smallest], sizes["1240x960"]
    assert small[0] < large[0], f"label heights {small[0]} and {large[0]} px: overlays keep one size"
    assert small[1] < large[1], "the message over the picture keeps one size"


# Real photos from the shared test data, each shown as a still image: name, faces at least, window size.
CROWDS = {
    "1-face": ("Tom_Cruise_avp_2014_4.jpg", 1, "960x720"),
    "3-faces": ("2008_002506.jpg", 3, "960x720"),
    "20-faces": ("bald_guys.jpg", 20, "1240x980"),
}


@pytest.mark.parametrize("crowd", CROWDS)
def test_no_label_or_chart_covers_another_face_on_screen(server, make_app, faces_dir, tmp_path, crowd):
    photo, least, geometry = CROWDS[crowd]
    app = make_app(server.address, source=faces_dir / photo, detector="yunet")
    app.root.geometry(geometry)
    pump(app, lambda: app.stats.received >= 1 and len(app.last_annotated.response.faces) >= least
         and app.drawing is not None and len(app.drawing.placements) >= least, 60, f"{least}+ faces")
    for _ in range(5):  # a still image is answered once: the picture stays as it is now
        app.root.update()
    shot = screenshot(tmp_path / "screen.png")
    keep = os.environ.get("FER_SCREENSHOTS_DIR")
    if keep:
        cv2.imwrite(str(Path(keep) / f"client-{crowd}.png"), window_of(app, shot), [cv2.IMWRITE_PNG_COMPRESSION, 9])

    shown, drawing, view = app.last_annotated, app.drawing, app.view
    faces = shown.response.faces
    assert len(drawing.placements) == len(faces) >= least
    assert len(app.controls.face_list.get_children()) == len(faces), "every face is in the list"
    height, width = drawing.image.shape[:2]
    line = Style.for_size(width, height).line
    plain = render_reply(shown.frame.image, [], scale=view.scale).image  # the picture without annotations
    left, top = app.canvas.winfo_rootx() + view.offset_x, app.canvas.winfo_rooty() + view.offset_y
    on_screen = shot[top : top + height, left : left + width].astype(int)
    assert on_screen.shape == plain.shape, "the whole picture is on screen"

    outlines = np.zeros((height, width), bool)  # every box's outline, where a neighbour's may cross a face
    for placed in drawing.placements:
        x1, y1, x2, y2 = placed.box
        outlines[max(0, y1 - line - 1) : y2 + line + 2, max(0, x1 - line - 1) : x2 + line + 2] = True
        outlines[y1 + line + 1 : y2 - line - 1, x1 + line + 1 : x2 - line - 1] = False
    for placed, face in zip(drawing.placements, faces):
        assert placed.label is not None, f"face #{placed.number} has no label"
        for other in drawing.placements:
            if other is not placed:
                assert not overlaps(placed.label, other.box), f"#{placed.number}'s label covers #{other.number}"
                assert placed.chart is None or not overlaps(placed.chart, other.box)
        # On screen: the label is drawn in its emotion's colour, ...
        x1, y1, x2, y2 = placed.label
        colour = np.array(colour_of(annotation(face, 0).emotion))
        assert (np.abs(on_screen[y1:y2, x1:x2] - colour) <= 2).all(axis=-1).mean() > 0.4, f"#{placed.number}'s label"
        # ... and inside every face box, nothing but the picture (and box outlines) shows: no overlay at all,
        # apart from a face's own "#N" when no place outside was free.
        x1, y1, x2, y2 = placed.box
        inside = np.zeros((height, width), bool)
        inside[y1:y2, x1:x2] = True
        inside &= ~outlines
        lx1, ly1, lx2, ly2 = placed.label
        inside[ly1:ly2, lx1:lx2] = False
        same = (np.abs(on_screen - plain) <= 2).all(axis=-1)
        assert same[inside].mean() > 0.995, f"something is drawn over face #{placed.number}"


def test_waiting_on_a_closed_window_fails_instead_of_passing(server, make_app):
    app = make_app(server.address)
    app.close()
    with pytest.raises(pytest.fail.Exception, match="the window closed"):
        pump(app, lambda: app.last_annotated is not None, 5, "an annotated frame")


def test_tooltips_stay_on_the_screen_beside_a_window_at_its_right_edge(server, make_app):
    app = make_app(server.address)
    screen_width = app.root.winfo_screenwidth()
    app.root.geometry(f"960x720+{screen_width - 960}+0")
    pump(app, lambda: app.controls.detector_box.winfo_viewable() and app.root.winfo_rootx() == screen_width - 960,
         10, "the window at the right edge")
    # The pointer at the right end of the detector box: a tooltip opening right of it would run off.
    x = app.controls.detector_box.winfo_rootx() + app.controls.detector_box.winfo_width() - 5
    y = app.controls.detector_box.winfo_rooty() + 5
    subprocess.run(["xdotool", "mousemove", "0", "0", "sleep", "0.1", "mousemove", str(x), str(y)], check=True)
    pump(app, lambda: any(tip.winfo_viewable() for tip in app.tooltips), 5, "the detector's tooltip")
    app.root.update()
    [tip] = [tip for tip in app.tooltips if tip.winfo_viewable()]
    assert "detector" in tip.msg_var.get().lower()
    assert 0 <= tip.winfo_rootx() and tip.winfo_rootx() + tip.winfo_width() <= screen_width
    assert 0 <= tip.winfo_rooty() and tip.winfo_rooty() + tip.winfo_height() <= app.root.winfo_screenheight()


def test_server_default_names_the_servers_detector(server, make_app):
    app = make_app(server.address)
    with EmotionClient(server.address) as client:
        default = emotion_pb2.Detector.Name(client.model_info().default_detector).removeprefix("DETECTOR_").lower()
    label = f"server default ({default})"
    pump(app, lambda: app.controls.detector_var.get() == label, 30, f"the label {label!r}")
    assert tuple(app.controls.detector_box.cget("values"))[0] == label
    app.controls.detector_box.set("haar")
    app.controls.detector_box.event_generate("<<ComboboxSelected>>")
    app.controls.detector_box.set(label)
    app.controls.detector_box.event_generate("<<ComboboxSelected>>")
    assert app.options.detector is None  # the named default still asks for the server's choice


def test_no_frame_rate_shows_while_paused(server, make_app):
    app = make_app(server.address)
    pump(app, lambda: "fps" in app.stats_text, 30, "a frame rate")
    click(app.controls.pause_button)
    pump(app, lambda: app.options.paused, 5, "the Pause click")
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:  # frames answered before the pause still arrive
        app.root.update()
    assert "fps" not in app.stats_text and "fps" not in app.status_bar.stats_label.cget("text")


def test_the_face_list_is_in_number_order(server, make_app):
    app = make_app(server.address)
    faces = []
    for track_id, emotion in ((3, emotion_pb2.EMOTION_HAPPY), (1, emotion_pb2.EMOTION_SAD),
                              (2, emotion_pb2.EMOTION_ANGRY)):  # score order, as a stream answers
        face = emotion_pb2.Face(emotion=emotion, track_id=track_id, detection_score=0.9)
        face.scores.add(emotion=emotion, probability=1.0)
        faces.append(face)
    app.controls.list_faces(faces)
    numbers = [app.controls.face_list.item(row, "values")[0] for row in app.controls.face_list.get_children()]
    assert numbers == ["#1", "#2", "#3"]


def test_the_face_limit_says_what_it_left_out(server, make_app, faces_dir, face_boxes, tmp_path):
    from helpers import face_mosaic

    mosaic, _ = face_mosaic(faces_dir, face_boxes)
    path = tmp_path / "crowd.jpg"
    cv2.imwrite(str(path), mosaic, [cv2.IMWRITE_JPEG_QUALITY, 95])
    app = make_app(server.address, source=path)
    pump(app, lambda: app.last_annotated is not None and app.last_annotated.response.faces_omitted > 0, 60,
         "an answer with faces left out")
    app.root.update()
    response = app.last_annotated.response
    total = len(response.faces) + response.faces_omitted
    assert len(response.faces) == 32
    assert app.controls.faces_note.cget("text") == f"32 of {total} faces shown (limit 32)"
    assert app.controls.faces_note.winfo_viewable()


def frames_received(server) -> float:
    """Frames the server has received so far (stream frames and Annotate calls), from its metrics."""
    samples = scrape(metrics_url(server))
    return sum(value for (name, _), value in samples.items() if name == "ferstream_frames_received_total")


@pytest.mark.slow
def test_a_still_photo_is_sent_once_and_again_only_for_new_options(fer_server_factory, fer_models_dir, make_app,
                                                                 faces_dir):
    counted = fer_server_factory("--models-dir", str(fer_models_dir), "--metrics-port", "0")
    app = make_app(counted.address, source=faces_dir / "2008_002506.jpg", detector="yunet")
    pump(app, lambda: app.stats.received >= 1, 60, "the photo's answer")
    give_up = time.monotonic() + 2  # a re-sending app sent ten more frames by now
    pump(app, lambda: time.monotonic() > give_up, 5, "two seconds")
    assert (app.stats.sent, frames_received(counted)) == (1, 1)
    # It went as the file's bytes: the answer is the one any other client gets for the file.
    with EmotionClient(counted.address) as client:
        direct = client.annotate(str(faces_dir / "2008_002506.jpg"), detector="yunet")
    shown = app.last_annotated.response.faces
    assert [box_tuple(face) for face in shown] == [box_tuple(face) for face in direct.faces]
    for face, expected in zip(shown, direct.faces):
        assert face_to_dict(face)["probabilities"] == pytest.approx(face_to_dict(expected)["probabilities"], abs=1e-3)
    app.controls.detector_box.set("haar")
    app.controls.detector_box.event_generate("<<ComboboxSelected>>")
    pump(app, lambda: app.stats.received >= 2, 60, "the answer with the new detector")
    assert app.last_annotated.options.detector == emotion_pb2.DETECTOR_HAAR
    assert (app.stats.sent, frames_received(counted)) == (2, 3)  # the app's two and the direct Annotate call
