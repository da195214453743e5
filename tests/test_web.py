"""fer-web: the gateway's REST endpoint, its page in headless Chromium, and its command line, against a
real fer-server on loopback."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import GROUP_PHOTO, REPO, require_program
from helpers import wait_for_log_line

GATEWAY = [sys.executable, "-m", "ferstream.web.cli"]
SERVING = "fer-web: serving "
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
# Frames go through a loaded 2-core machine: answers may take seconds.
PAGE_TIMEOUT_MS = 120_000
SCREENSHOT_ENV = "FER_WRITE_SCREENSHOTS"


@dataclass
class Gateway:
    """A fer-web subprocess, its base URL and its log file (in a folder of its own, removed by stop)."""

    process: subprocess.Popen
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Stops the gateway (if it still runs) and removes its log's folder."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        shutil.rmtree(self.log_path.parent, ignore_errors=True)


def launch_gateway(server_address: str, *args: str, timeout: float = 60.0,
                   preexec_fn: Callable[[], None] | None = None) -> Gateway:
    """`fer-web --port 0 --server ADDRESS ARGS`; returns once it says where it serves. preexec_fn runs in
    the child before fer-web starts (resource limits)."""
    log_path = Path(tempfile.mkdtemp(prefix="fer-web-")) / "fer-web.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([*GATEWAY, "--port", "0", "--server", server_address, *args],
                                   stdout=log, stderr=subprocess.STDOUT, preexec_fn=preexec_fn)
    try:
        url = wait_for_log_line(process, log_path, SERVING, "fer-web", timeout)
    except BaseException:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        shutil.rmtree(log_path.parent, ignore_errors=True)
        raise
    return Gateway(process, url.split()[0].rstrip("/"), log_path)


@pytest.fixture(scope="module")
def server(fer_server_factory):
    return fer_server_factory()


@pytest.fixture(scope="module")
def gateway(server):
    running = launch_gateway(server.address)
    yield running
    running.stop()


def post(url: str, body: bytes, content_type: str = "image/jpeg", **headers: str) -> tuple[int, dict]:
    """(HTTP status, JSON body) of a POST; headers given as keyword arguments (x_y for x-y)."""
    headers = {name.replace("_", "-"): value for name, value in headers.items()}
    request = urllib.request.Request(url, data=body, method="POST", headers={"content-type": content_type, **headers})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def get(url: str, **headers: str) -> tuple[int, dict]:
    """(HTTP status, JSON body) of a GET; headers as for post."""
    request = urllib.request.Request(url, headers={name.replace("_", "-"): value for name, value in headers.items()})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def multipart(field: str, filename: str, data: bytes) -> tuple[bytes, str]:
    """A multipart/form-data body with one file, and its content type."""
    boundary = "ferstream-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def assert_finds_hand_boxes(record: dict, hand_boxes, iou) -> None:
    """Every hand-drawn face box is matched by an answered box with IoU >= 0.4."""
    boxes = [(f["box"]["x"], f["box"]["y"], f["box"]["width"], f["box"]["height"]) for f in record["faces"]]
    for hand in hand_boxes:
        assert max((iou(hand, box) for box in boxes), default=0) >= 0.4, (hand, boxes)


# ----- REST


def test_annotate_photo_gives_its_faces_as_a_frame_record(gateway, photo, face_boxes, client_box_iou):
    status, record = post(f"{gateway.url}/v1/annotate", photo)
    assert status == 200, record
    image = cv2.imdecode(np.frombuffer(photo, np.uint8), cv2.IMREAD_COLOR)
    assert (record["frame"], record["width"], record["height"]) == (0, image.shape[1], image.shape[0])
    assert len(record["faces"]) >= 3
    assert_finds_hand_boxes(record, face_boxes[GROUP_PHOTO], client_box_iou)
    for face in record["faces"]:
        assert set(face) == {"box", "detection_score", "emotion", "probabilities"}
        assert face["emotion"] == max(face["probabilities"], key=face["probabilities"].get)
        assert sum(face["probabilities"].values()) == pytest.approx(1, abs=1e-3)


def test_annotate_takes_a_multipart_form_too(gateway, photo):
    body, content_type = multipart("file", "photo.jpg", photo)
    status, record = post(f"{gateway.url}/v1/annotate", body, content_type)
    assert status == 200, record
    assert record == post(f"{gateway.url}/v1/annotate", photo)[1]


@pytest.mark.parametrize("body", [b"garbage, not an image", b"\xff\xd8\xff\xe0 truncated JPEG", b""])
def test_annotate_refuses_what_is_not_an_image_with_400(gateway, body):
    status, error = post(f"{gateway.url}/v1/annotate", body)
    assert status == 400
    assert error["code"] == "INVALID_ARGUMENT" and error["error"] and "\n" not in error["error"]


@pytest.mark.parametrize("query, named", [("detector=none-such", "none-such"), ("max_faces=many", "many"),
                                          ("min_detection_score=2", "min_detection_score")])
def test_annotate_refuses_a_bad_option_with_400(gateway, photo, query, named):
    status, error = post(f"{gateway.url}/v1/annotate?{query}", photo)
    assert (status, error["code"]) == (400, "INVALID_ARGUMENT")
    assert named in error["error"]


def test_annotate_passes_its_options_on(gateway, photo):
    status, record = post(f"{gateway.url}/v1/annotate?max_faces=1&detector=yunet", photo)
    assert status == 200 and len(record["faces"]) == 1


def test_annotate_chooses_the_model(gateway, photo):
    """Photos default to the accurate model; ?model= picks; an unknown one is the server's 400."""
    assert post(f"{gateway.url}/v1/annotate", photo)[1]["model"] == "accurate"
    status, fast = post(f"{gateway.url}/v1/annotate?model=fast", photo)
    assert status == 200 and fast["model"] == "fast"
    status, error = post(f"{gateway.url}/v1/annotate?model=precise", photo)
    assert (status, error["code"]) == (400, "INVALID_ARGUMENT") and "fast, accurate" in error["error"]


def test_annotate_refuses_a_body_over_the_limit_with_413_before_forwarding(server, photo):
    limit = len(photo) - 1
    small = launch_gateway(server.address, "--max-message-bytes", str(limit))
    try:
        status, error = post(f"{small.url}/v1/annotate", photo)
        assert (status, error["code"]) == (413, "RESOURCE_EXHAUSTED")
        assert str(limit) in error["error"]
        body, content_type = multipart("file", "photo.jpg", photo)
        assert post(f"{small.url}/v1/annotate", body, content_type)[0] == 413
        # A body just under the limit is still forwarded: the server says whether it is an image.
        assert post(f"{small.url}/v1/annotate", photo[: limit - 200])[0] == 400
    finally:
        small.stop()


def test_default_limit_is_the_servers_message_limit():
    from ferstream.pipeline.settings import DEFAULT_MAX_MESSAGE_BYTES
    from ferstream.server.streams import IN_FLIGHT
    from ferstream.web.app import GatewaySettings

    assert GatewaySettings().max_message_bytes == DEFAULT_MAX_MESSAGE_BYTES
    assert GatewaySettings().max_in_flight == IN_FLIGHT
    help_text = subprocess.run([*GATEWAY, "--help"], capture_output=True, text=True, timeout=60).stdout
    assert str(DEFAULT_MAX_MESSAGE_BYTES) in help_text


@pytest.mark.slow
def test_stopped_server_gives_503_and_unhealthy(fer_server_factory, photo):
    doomed = fer_server_factory()
    gateway = launch_gateway(doomed.address)
    try:
        assert get(f"{gateway.url}/healthz") == (200, {"gateway": "ok", "server": "serving"})
        doomed.stop()
        status, error = post(f"{gateway.url}/v1/annotate", photo)
        assert (status, error["code"]) == (503, "UNAVAILABLE"), error
        status, health = get(f"{gateway.url}/healthz")
        assert status == 503 and health["server"] == "unreachable"
    finally:
        gateway.stop()


@pytest.mark.slow
def test_token_is_forwarded_and_its_absence_gives_401(fer_server_factory, tmp_path, photo):
    tokens = tmp_path / "tokens"
    tokens.write_text("s3cret-token\n")
    guarded = fer_server_factory("--auth-tokens", str(tokens))
    without = launch_gateway(guarded.address)
    with_token = launch_gateway(guarded.address, "--token", "s3cret-token")
    try:
        status, error = post(f"{without.url}/v1/annotate", photo)
        assert (status, error["code"]) == (401, "UNAUTHENTICATED")
        status, record = post(f"{with_token.url}/v1/annotate", photo)
        assert status == 200 and len(record["faces"]) >= 3
    finally:
        without.stop()
        with_token.stop()


@pytest.mark.slow
def test_https_gateway_to_a_tls_server_with_a_token(fer_server_factory, tmp_path, photo):
    require_program("openssl")
    from test_security import make_ca, make_leaf

    make_ca(tmp_path, "ca")
    make_leaf(tmp_path, "host", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth")
    tokens = tmp_path / "tokens"
    tokens.write_text("s3cret-token\n")
    tls_server = fer_server_factory("--tls-cert", str(tmp_path / "host.pem"), "--tls-key", str(tmp_path / "host.key"),
                                    "--auth-tokens", str(tokens))
    secure = launch_gateway(tls_server.address, "--tls-ca", str(tmp_path / "ca.pem"), "--token", "s3cret-token",
                            "--tls-cert", str(tmp_path / "host.pem"), "--tls-key", str(tmp_path / "host.key"))
    try:
        assert secure.url.startswith("https://")
        context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        request = urllib.request.Request(f"{secure.url}/v1/annotate", data=photo, method="POST")
        with urllib.request.urlopen(request, timeout=120, context=context) as response:
            assert response.status == 200 and len(json.loads(response.read())["faces"]) >= 3
    finally:
        secure.stop()


def test_openapi_describes_the_endpoint(gateway):
    status, document = get(f"{gateway.url}/openapi.json")
    assert status == 200 and document["openapi"].startswith("3.")
    responses = document["paths"]["/v1/annotate"]["post"]["responses"]
    assert {"200", "400", "401", "403", "413", "503", "504"} <= set(responses)
    assert "FrameRecord" in document["components"]["schemas"]


# ----- the live WebSocket


def ws_url(gateway: Gateway) -> str:
    return gateway.url.replace("http://", "ws://") + "/v1/live"


def receive_json(socket, timeout: float = 120.0) -> dict:
    return json.loads(socket.recv(timeout=timeout))


def test_live_socket_keeps_the_newest_frame_and_counts_the_dropped(gateway, photo):
    from websockets.sync.client import connect

    sent = 20
    with connect(ws_url(gateway), max_size=None) as socket:
        for _ in range(sent):  # far faster than the server answers
            socket.send(photo)
        answers = []
        while not answers or answers[-1]["counts"]["answered"] + answers[-1]["counts"]["dropped"] < sent:
            message = receive_json(socket)
            assert message["type"] == "frame", message
            answers.append(message)
    counts = answers[-1]["counts"]
    assert counts["received"] == sent
    assert counts["dropped"] >= 1 and counts["answered"] == len(answers)
    assert answers[-1]["record"]["frame"] == sent - 1  # the newest frame is always answered
    frames = [answer["record"]["frame"] for answer in answers]
    assert frames == sorted(frames)
    assert len(answers[-1]["record"]["faces"]) >= 3


def test_live_socket_answers_a_bad_frame_and_goes_on(server, photo):
    from websockets.sync.client import connect

    small = launch_gateway(server.address, "--max-message-bytes", str(len(photo) + 100))
    try:
        with connect(ws_url(small), max_size=None) as socket:
            socket.send(photo + bytes(200))  # over the gateway's limit: refused before the server
            refused = receive_json(socket)
            assert (refused["type"], refused["code"], refused["http_status"]) == ("error", "RESOURCE_EXHAUSTED", 413)
            socket.send(b"not a JPEG")  # the server's own per-frame error
            damaged = receive_json(socket)
            assert damaged["type"] == "frame" and damaged["record"]["error"] and damaged["record"]["faces"] == []
            socket.send(photo)
            good = receive_json(socket)
            assert good["type"] == "frame" and len(good["record"]["faces"]) >= 3, good
    finally:
        small.stop()


@pytest.mark.slow
def test_live_socket_reports_a_stopped_server_and_closes(fer_server_factory, photo):
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    doomed = fer_server_factory()
    gateway = launch_gateway(doomed.address)
    try:
        with connect(ws_url(gateway), max_size=None) as socket:
            socket.send(photo)
            assert receive_json(socket)["type"] == "frame"
            doomed.stop()
            error = receive_json(socket)
            assert (error["type"], error["code"], error["http_status"], error["ends_stream"]) == (
                "error", "UNAVAILABLE", 503, True), error
            with pytest.raises(ConnectionClosed) as closed:
                socket.recv(timeout=60)
            assert closed.value.rcvd.code == 1013
    finally:
        gateway.stop()


# ----- command line


def test_other_host_without_tls_exits_2_with_one_line():
    result = subprocess.run([*GATEWAY, "--host", "0.0.0.0", "--port", "0"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "--tls-cert" in result.stderr


def test_exit_codes_stopped_interrupted_and_port_taken(server):
    import signal
    import socket

    for signum, code in ((signal.SIGTERM, 0), (signal.SIGINT, 130)):
        running = launch_gateway(server.address)
        try:
            running.process.send_signal(signum)
            assert running.process.wait(timeout=60) == code, running.log()
            # Stopped or interrupted, it says nothing more: an interrupt is no error.
            assert running.log().splitlines()[1:] == [], running.log()
        finally:
            running.stop()
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        result = subprocess.run([*GATEWAY, "--port", port], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and port in result.stderr and len(result.stderr.splitlines()) == 1


def test_half_given_https_and_missing_files_exit_2():
    result = subprocess.run([*GATEWAY, "--tls-cert", "cert.pem"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    result = subprocess.run([*GATEWAY, "--tls-cert", "/no/cert.pem", "--tls-key", "/no/key.pem"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "/no/cert.pem" in result.stderr and len(result.stderr.splitlines()) == 1


def test_version_and_help_describe_every_option():
    import argparse

    from ferstream.commandline import package_version
    from ferstream.web.cli import build_parser

    version = subprocess.run([*GATEWAY, "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith(f"fer-web {package_version()} (ferstream, ")
    undescribed = [action.dest for action in build_parser()._actions
                   if not action.help or action.help == argparse.SUPPRESS]
    assert not undescribed
    help_text = subprocess.run([*GATEWAY, "--help"], capture_output=True, text=True, timeout=60).stdout
    for option in ("--host", "--port", "--server", "--tls-cert", "--tls-key", "--insecure", "--tls-ca",
                   "--client-cert", "--client-key", "--token", "--max-message-bytes", "--timeout"):
        assert option in help_text


def test_bad_option_values_exit_2_with_one_line():
    for args in (["--server", "http://127.0.0.1:50051"], ["--port", "70000"], ["--timeout", "0"],
                 ["--max-message-bytes", "-1"], ["--client-cert", "client.pem"]):
        result = subprocess.run([*GATEWAY, *args], capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, args
        assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("fer-web: error: ")


# ----- the page in headless Chromium


@pytest.fixture(scope="module")
def chromium():
    """Debian's chromium, driven by Playwright (which cannot download its own browser here)."""
    require_program("chromium")
    executable = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("playwright not installed (pip install -e .[dev])")
        pytest.skip("playwright not installed (pip install -e .[dev])")
    with sync_playwright() as playwright:
        yield playwright.chromium, executable


def fake_camera_file(folder: Path, image: np.ndarray, frames: int = 4) -> Path:
    """A Y4M video (I420, 10 fps) of image, which Chromium's fake camera plays in a loop."""
    height, width = image.shape[:2]
    planes = cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420).tobytes()
    path = folder / "camera.y4m"
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F10:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            out.write(b"FRAME\n" + planes)
    return path


def webm_video(folder: Path, image: np.ndarray, seconds: float = 4.0) -> Path:
    """A VP8 WebM video (10 fps) of image, which Chromium plays in a <video> element."""
    import av

    path = folder / "clip.webm"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libvpx", rate=10)
        stream.width, stream.height, stream.pix_fmt = image.shape[1], image.shape[0], "yuv420p"
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        for _ in range(int(seconds * 10)):
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def open_page(chromium, tmp_path: Path, url: str, *extra_flags: str):
    """A fresh Chromium profile showing the page; Debian's chromium, not one Playwright downloads."""
    browser_type, executable = chromium
    context = browser_type.launch_persistent_context(str(tmp_path / "profile"), executable_path=executable,
                                                 headless=True, args=[*CHROMIUM_FLAGS, *extra_flags],
                                                 viewport={"width": 1100, "height": 680})
    page = context.new_page()
    page.goto(url)
    page.wait_for_function("window.ferWeb && window.ferWeb.ready", timeout=PAGE_TIMEOUT_MS)
    return context, page


def drawn_state(page) -> dict:
    """The page's last answer, where its overlays went, each box's top-edge pixel and the face list."""
    return page.evaluate("""() => {
        const s = window.ferWeb, ctx = document.getElementById('view').getContext('2d');
        const edge = s.placements.map((p) => Array.from(
            ctx.getImageData(Math.round((p.box[0] + p.box[2]) / 2), p.box[1], 1, 1).data.slice(0, 3)));
        const list = Array.from(document.querySelectorAll('#faces li')).map((li) =>
            ({text: li.textContent, emotion: li.dataset.emotion, background: getComputedStyle(li).backgroundColor}));
        return {record: s.lastRecord, answered: s.answered, placements: s.placements, edge, list, config: s.config,
                stats: document.getElementById('stats').textContent, counts: s.counts, status: s.status};
    }""")


def rgb(css: str) -> tuple[int, int, int]:
    return tuple(int(css[i:i + 2], 16) for i in (1, 3, 5))


def overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def assert_drawn_like_the_tk_app(state: dict, faces: int) -> None:
    """Boxes in their emotion's colour, no label or chart over any face, a face list row per face."""
    placements, config = state["placements"], state["config"]
    assert len(placements) == len(state["record"]["faces"]) >= faces
    for placement, edge in zip(placements, state["edge"]):
        expected = rgb(config["colours"][placement["emotion"]])
        assert max(abs(a - b) for a, b in zip(edge, expected)) <= 8, (placement, edge, expected)
        for overlay in (placement["label"], placement["chart"]):
            if overlay is not None:
                assert not any(overlaps(overlay, other["box"]) for other in placements), (overlay, placements)
    assert len(state["list"]) == len(placements)
    for row, placement in zip(state["list"], placements):
        assert row["emotion"] == placement["emotion"] and row["text"].startswith(f"#{placement['number']} ")
        assert row["background"] == "rgb({}, {}, {})".format(*rgb(config["colours"][placement["emotion"]]))


def test_page_annotates_the_camera_live(chromium, gateway, faces_dir, tmp_path):
    photo = cv2.resize(cv2.imread(str(faces_dir / GROUP_PHOTO)), (640, 480), interpolation=cv2.INTER_AREA)
    camera = fake_camera_file(tmp_path, photo)
    context, page = open_page(chromium, tmp_path, gateway.url, f"--use-file-for-fake-video-capture={camera}")
    try:
        page.click("#camera")
        page.wait_for_function("window.ferWeb.answered >= 3 && window.ferWeb.lastRecord "
                               "&& window.ferWeb.lastRecord.faces.length >= 3", timeout=PAGE_TIMEOUT_MS)
        state = drawn_state(page)
        assert (state["record"]["width"], state["record"]["height"]) == (640, 480)
        assert all(face["track_id"] >= 1 for face in state["record"]["faces"])  # a stream's faces, on tracks
        assert_drawn_like_the_tk_app(state, faces=3)
        counts = state["counts"]
        assert counts["received"] >= counts["answered"] + counts["dropped_waiting"] >= 3
        assert f"answered {state['answered']} · dropped {counts['dropped']}" in state["stats"]
        if os.environ.get(SCREENSHOT_ENV) == "1":
            page.screenshot(path=str(REPO / "docs" / "web.png"))
    finally:
        context.close()


@pytest.mark.slow
def test_page_says_why_the_stream_stopped_and_reconnects(chromium, fer_server_factory, faces_dir, tmp_path):
    doomed = fer_server_factory()
    gateway = launch_gateway(doomed.address)
    photo = cv2.resize(cv2.imread(str(faces_dir / GROUP_PHOTO)), (640, 480), interpolation=cv2.INTER_AREA)
    camera = fake_camera_file(tmp_path, photo)
    context, page = open_page(chromium, tmp_path, gateway.url, f"--use-file-for-fake-video-capture={camera}")
    try:
        page.click("#camera")
        page.wait_for_function("window.ferWeb.answered >= 1", timeout=PAGE_TIMEOUT_MS)
        doomed.stop()
        page.wait_for_function("window.ferWeb.status.includes('reconnecting')", timeout=PAGE_TIMEOUT_MS)
        # One readable line, the server's own words only in the tooltip; no boxes of a stream that ended.
        line = page.text_content("#state")
        assert line.startswith("the server cannot be reached (UNAVAILABLE); reconnecting in "), line
        assert page.evaluate("document.getElementById('state').getBoundingClientRect().height") < 30
        assert page.get_attribute("#state", "title")
        assert page.evaluate("window.ferWeb.placements.length") == 0
        assert page.evaluate("document.querySelectorAll('#faces li').length") == 0
        answered = page.evaluate("window.ferWeb.answered")
        fer_server_factory("--port", doomed.address.rsplit(":", 1)[1])  # back on the same address
        page.wait_for_function(f"window.ferWeb.answered > {answered} && window.ferWeb.status.startsWith('streaming')",
                               timeout=PAGE_TIMEOUT_MS)
    finally:
        context.close()
        gateway.stop()


def test_page_layout_keeps_labels_and_charts_off_every_face_in_a_crowd(chromium, gateway, tmp_path):
    """The page's layout (draw.js) on 24 faces too close for labels between them: as annotate.draw's, no
    label covers another face, no chart covers any, overlays never cover each other, and labels that fit
    nowhere else shrink to "#N" inside their own box."""
    context, page = open_page(chromium, tmp_path, gateway.url)
    try:
        result = page.evaluate("""async () => {
            const {layout} = await import('/static/draw.js');
            const ctx = new OffscreenCanvas(640, 480).getContext('2d');
            const faces = [];
            for (let row = 0; row < 4; row++) for (let column = 0; column < 6; column++)
                faces.push({box: [4 + column * 106, 4 + row * 118, 98, 110], emotion: 'happy',
                            probabilities: [0, 0, 0, 0.9, 0, 0, 0.1], top: 0.9, number: faces.length + 1});
            const {style, placements} = layout(ctx, faces, 640, 480, 1, true);
            return {line: style.line, placements};
        }""")
    finally:
        context.close()
    line, placements = result["line"], result["placements"]
    guarded = [[p["box"][0] - line, p["box"][1] - line, p["box"][2] + line, p["box"][3] + line] for p in placements]
    overlays = [o for p in placements for o in (p["label"], p["chart"]) if o is not None]
    for index, placement in enumerate(placements):
        label, chart = placement["label"], placement["chart"]
        assert label is not None  # each fits at least as "#N" inside its own box
        assert not any(overlaps(label, box) for other, box in enumerate(guarded) if other != index)
        assert chart is None or not any(overlaps(chart, box) for box in guarded)
    assert all(not overlaps(a, b) for i, a in enumerate(overlays) for b in overlays[i + 1:])
    assert all(0 <= o[0] and 0 <= o[1] and o[2] <= 640 and o[3] <= 480 for o in overlays)
    assert any(p["labelText"] == f"#{p['number']}" for p in placements)


def test_page_annotates_an_opened_photo(chromium, gateway, faces_dir, tmp_path, face_boxes, client_box_iou):
    context, page = open_page(chromium, tmp_path, gateway.url)
    try:
        page.set_input_files("#file", str(faces_dir / GROUP_PHOTO))
        page.wait_for_function("window.ferWeb.lastRecord && window.ferWeb.lastRecord.faces.length >= 3",
                               timeout=PAGE_TIMEOUT_MS)
        state = drawn_state(page)
        assert "track_id" not in state["record"]["faces"][0]  # one Annotate call, not a stream
        assert_finds_hand_boxes(state["record"], face_boxes[GROUP_PHOTO], client_box_iou)
        assert_drawn_like_the_tk_app(state, faces=3)
    finally:
        context.close()


def test_page_annotates_an_opened_video(chromium, gateway, faces_dir, tmp_path):
    photo = cv2.resize(cv2.imread(str(faces_dir / GROUP_PHOTO)), (640, 480), interpolation=cv2.INTER_AREA)
    video = webm_video(tmp_path, photo)
    context, page = open_page(chromium, tmp_path, gateway.url)
    try:
        page.set_input_files("#file", str(video))
        page.wait_for_function("window.ferWeb.lastRecord && window.ferWeb.lastRecord.faces.length >= 3",
                               timeout=PAGE_TIMEOUT_MS)
        state = drawn_state(page)
        assert all(face["track_id"] >= 1 for face in state["record"]["faces"])
        assert_drawn_like_the_tk_app(state, faces=3)
    finally:
        context.close()


def test_page_shows_a_garbage_photo_as_an_error(chromium, gateway, tmp_path):
    garbage = tmp_path / "not-a-photo.jpg"
    garbage.write_bytes(b"garbage")
    context, page = open_page(chromium, tmp_path, gateway.url)
    try:
        page.set_input_files("#file", str(garbage))
        page.wait_for_function("window.ferWeb.error !== null", timeout=PAGE_TIMEOUT_MS)
        assert "INVALID_ARGUMENT" in page.text_content("#state")
    finally:
        context.close()


@pytest.mark.slow
def test_page_plays_the_mp4_fer_annotate_writes(chromium, gateway, faces_dir, fer_models_dir, tmp_path):
    photo = cv2.resize(cv2.imread(str(faces_dir / GROUP_PHOTO)), (640, 480), interpolation=cv2.INTER_AREA)
    annotated = tmp_path / "clip.annotated.mp4"
    result = subprocess.run([sys.executable, "-m", "ferstream.annotate_command", str(webm_video(tmp_path, photo)),
                             "--out", str(annotated), "--models-dir", str(fer_models_dir), "--detector", "ssd",
                             "--no-timeline", "--threads", "1"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    context, page = open_page(chromium, tmp_path, gateway.url)
    try:
        page.set_input_files("#file", str(annotated))
        page.wait_for_function("window.ferWeb.lastRecord || window.ferWeb.status.startsWith('cannot start')",
                               timeout=PAGE_TIMEOUT_MS)
        assert not page.evaluate("window.ferWeb.status").startswith("cannot start"), page.text_content("#state")
        page.wait_for_function("window.ferWeb.lastRecord.faces.length >= 1", timeout=PAGE_TIMEOUT_MS)
    finally:
        context.close()
