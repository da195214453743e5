"""fer-web under load and odd input: crowds over the face limit, /healthz while calls wait or the token is
refused, slow and cancelled uploads, non-image bodies, orientation-tagged photos, errors as the OpenAPI
document says them, and its command line's token and TLS name options; against real fer-servers."""

from __future__ import annotations

import io
import json
import resource
import signal
import socket
import subprocess
import threading
import time

import cv2
import numpy as np
import pytest

from conftest import require_program
from helpers import face_mosaic, growth_after_settling, png_claiming, resident_bytes
from test_web import (GATEWAY, PAGE_TIMEOUT_MS, chromium, drawn_state, get, launch_gateway, multipart,  # noqa: F401
                      open_page, post, ws_url)
# The same real fer-server and gateway per module as test_web.py's (pytest registers imported fixtures).
from test_web import gateway, server  # noqa: F401


def address_of(gateway) -> tuple[str, int]:
    host, port = gateway.url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def raw_request(gateway, head: bytes, timeout: float = 120.0) -> socket.socket:
    """A socket to the gateway that has sent head (request line, headers, maybe part of a body)."""
    connection = socket.create_connection(address_of(gateway), timeout=timeout)
    connection.sendall(head)
    return connection


def read_answer(connection: socket.socket) -> tuple[int, bytes]:
    """(status, body) of the HTTP answer on connection, read until the gateway closes it or the body ends."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), None)
    while length is not None and len(body) < length:
        chunk = connection.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(head.split(b" ")[1]), body


# ----- crowds


@pytest.fixture(scope="module")
def crowd(faces_dir, face_boxes) -> bytes:
    image, _ = face_mosaic(faces_dir, face_boxes)
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


@pytest.mark.slow
def test_rest_honours_max_faces_up_to_the_servers_limit_and_says_what_it_left_out(fer_server_factory, crowd):
    roomy = fer_server_factory("--max-faces", "100")
    running = launch_gateway(roomy.address)
    try:
        status, everyone = post(f"{running.url}/v1/annotate", crowd)
        assert status == 200 and everyone["faces_omitted"] == 0
        found = len(everyone["faces"])
        assert found > 32  # more than the default limit: the crowd is one
        status, asked = post(f"{running.url}/v1/annotate?max_faces=200", crowd)
        assert (len(asked["faces"]), asked["faces_omitted"]) == (found, 0)
        status, few = post(f"{running.url}/v1/annotate?max_faces=5", crowd)
        assert (len(few["faces"]), few["faces_omitted"]) == (5, found - 5)
    finally:
        running.stop()


def test_the_servers_limit_caps_a_larger_request_and_is_reported(gateway, crowd):
    status, record = post(f"{gateway.url}/v1/annotate?max_faces=200", crowd)
    assert status == 200 and len(record["faces"]) == 32 and record["faces_omitted"] > 0


def test_the_websocket_says_what_the_limit_left_out(gateway, crowd):
    from websockets.sync.client import connect

    with connect(ws_url(gateway), max_size=None) as live:
        live.send(crowd)
        answer = json.loads(live.recv(timeout=120))
    assert answer["type"] == "frame" and len(answer["record"]["faces"]) == 32
    assert answer["record"]["faces_omitted"] > 0


# ----- /healthz


@pytest.mark.slow
def test_healthz_answers_while_every_rest_call_waits(fer_server_factory, photo):
    """Forty REST calls held by a server that stopped answering (SIGSTOP) fill the pool they wait in;
    /healthz does not wait there and reports the server while every call is still waiting."""
    frozen = fer_server_factory()
    running = launch_gateway(frozen.address, "--timeout", "120")
    answers: list[int] = []
    try:
        assert get(f"{running.url}/healthz")[0] == 200
        frozen.process.send_signal(signal.SIGSTOP)
        callers = [threading.Thread(target=lambda: answers.append(post(f"{running.url}/v1/annotate", photo)[0]),
                                    daemon=True) for _ in range(45)]
        for caller in callers:
            caller.start()
        time.sleep(3)  # let them reach the pool (no figure is checked against this)
        status, health = get(f"{running.url}/healthz")
        assert status == 503 and health["server"] == "unreachable", health
        assert answers == []  # every call was still waiting when /healthz answered
    finally:
        frozen.process.send_signal(signal.SIGCONT)
        running.stop()


@pytest.mark.slow
def test_healthz_reports_a_server_that_refuses_the_gateways_token(fer_server_factory, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("right-token\n")
    guarded = fer_server_factory("--auth-tokens", str(tokens))
    wrong = launch_gateway(guarded.address, "--token", "wrong-token")
    right = launch_gateway(guarded.address, "--token", "right-token")
    try:
        status, health = get(f"{wrong.url}/healthz")
        assert (status, health["server"], health["code"]) == (503, "refuses the gateway's token", "UNAUTHENTICATED")
        assert get(f"{right.url}/healthz") == (200, {"gateway": "ok", "server": "serving"})
    finally:
        wrong.stop()
        right.stop()


# ----- errors as /openapi.json describes them


def noise_png(side: int) -> bytes:
    """A PNG of random pixels (incompressible): side * side * 3 bytes and more."""
    pixels = np.random.default_rng(7).integers(0, 256, (side, side, 3), dtype=np.uint8)
    return cv2.imencode(".png", pixels)[1].tobytes()


@pytest.mark.slow
def test_a_body_over_the_servers_message_limit_is_413_not_429(fer_server_factory):
    strict = fer_server_factory("--max-message-bytes", str(4 * 1024 * 1024 + 4096), "--max-pixels", "1000000")
    running = launch_gateway(strict.address)  # forwards up to fer-server's default, 48 MiB
    try:
        big = noise_png(1400)  # about 5.9 MB
        assert len(big) > 4 * 1024 * 1024 + 4096
        status, error = post(f"{running.url}/v1/annotate", big, "image/png")
        assert (status, error["code"]) == (413, "RESOURCE_EXHAUSTED"), error
    finally:
        running.stop()


def test_wrong_methods_unknown_paths_and_bad_forms_answer_json(gateway, photo):
    status, error = get(f"{gateway.url}/v1/annotate")
    assert (status, error["code"]) == (405, "UNIMPLEMENTED"), error
    status, error = get(f"{gateway.url}/v1/nothing-here")
    assert (status, error["code"]) == (404, "NOT_FOUND")
    damaged = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.jpg\"\r\n\r\n" + photo[:100]
    status, error = post(f"{gateway.url}/v1/annotate", damaged, "multipart/form-data; boundary=b")
    assert (status, error["code"]) == (400, "INVALID_ARGUMENT"), error
    status, error = post(f"{gateway.url}/v1/annotate", b"--b--\r\n", "multipart/form-data")  # no boundary
    assert (status, error["code"]) == (400, "INVALID_ARGUMENT"), error
    assert set(error) == {"error", "code"} and "\n" not in error["error"]


def test_multipart_in_other_letter_case_is_a_form(gateway, photo):
    body, content_type = multipart("file", "photo.jpg", photo)
    status, record = post(f"{gateway.url}/v1/annotate", body, content_type.replace("multipart/form-data",
                                                                                   "Multipart/Form-Data"))
    assert status == 200 and len(record["faces"]) >= 3, record


# ----- slow, silent, cancelled and non-image bodies


@pytest.mark.slow
def test_a_connection_that_never_finishes_its_headers_is_closed(gateway):
    from ferstream.web.serving import HEADER_TIMEOUT_S

    connection = raw_request(gateway, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n",
                             timeout=HEADER_TIMEOUT_S + 60)
    with connection:
        assert connection.recv(1024) == b""  # closed, without an answer


def test_a_body_that_stops_coming_gets_408(server, photo):
    head = (f"POST /v1/annotate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {len(photo)}\r\n\r\n").encode() + photo[:1000]
    impatient = launch_gateway(server.address, "--body-timeout", "2")
    try:
        with raw_request(impatient, head, timeout=60) as connection:
            status, body = read_answer(connection)
    finally:
        impatient.stop()
    assert (status, json.loads(body)["code"]) == (408, "DEADLINE_EXCEEDED")
    assert "the body sent nothing for 2 s" in json.loads(body)["error"]


def test_a_cancelled_upload_is_one_log_line(gateway, photo):
    head = (f"POST /v1/annotate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {len(photo)}\r\n\r\n").encode() + photo[:1000]
    with raw_request(gateway, head):
        time.sleep(1)  # the gateway has started reading it
    give_up = time.monotonic() + 60
    while "went away" not in gateway.log():
        assert time.monotonic() < give_up, gateway.log()
        time.sleep(0.2)
    log = gateway.log()
    assert "Traceback" not in log and len([line for line in log.splitlines() if "went away" in line]) == 1


def test_a_large_non_image_body_is_refused_at_its_first_bytes(gateway):
    """45 MB announced, 64 KiB sent: the answer comes without the rest, so nothing of it is held."""
    size = 45 * 1024 * 1024
    head = (f"POST /v1/annotate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {size}\r\n\r\n").encode() + bytes(64 * 1024)
    with raw_request(gateway, head) as connection:
        status, body = read_answer(connection)
    error = json.loads(body)
    assert (status, error["code"]) == (400, "INVALID_ARGUMENT") and "before forwarding" in error["error"]


def test_a_large_body_that_only_starts_as_a_jpeg_is_refused_before_the_rest_comes(gateway):
    """45 MB announced, a JPEG signature and 2 MiB of noise sent: no frame header within the first MiB, so
    the answer comes without the rest (a gateway waiting for it would answer 408 after the idle timeout)."""
    from ferstream.web.app import JPEG_HEADER_BYTES

    size = 45 * 1024 * 1024
    sent = b"\xff\xd8\xff" + np.random.default_rng(0).bytes(2 * JPEG_HEADER_BYTES)
    head = (f"POST /v1/annotate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {size}\r\n\r\n").encode() + sent
    with raw_request(gateway, head) as connection:
        status, body = read_answer(connection)
    error = json.loads(body)
    assert (status, error["code"]) == (400, "INVALID_ARGUMENT") and "before forwarding" in error["error"]


def test_a_form_file_that_only_starts_as_a_jpeg_is_refused_before_forwarding(gateway):
    from ferstream.web.app import JPEG_HEADER_BYTES

    body, content_type = multipart("file", "photo.jpg",
                                   b"\xff\xd8\xff" + np.random.default_rng(0).bytes(2 * JPEG_HEADER_BYTES))
    status, error = post(f"{gateway.url}/v1/annotate", body, content_type)
    assert (status, error["code"]) == (400, "INVALID_ARGUMENT") and "before forwarding" in error["error"]


def test_a_jpeg_whose_frame_header_comes_late_is_still_forwarded(gateway, photo):
    """A photo whose EXIF, ICC and XMP segments put its frame header 300 KiB in: well within the limit."""
    segments = b"".join(b"\xff\xe2" + (65535).to_bytes(2, "big") + bytes(65533) for _ in range(5))
    late = photo[:2] + segments + photo[2:]
    status, answer = post(f"{gateway.url}/v1/annotate", late)
    assert status == 200 and answer["faces"], answer


# (fer-web options, a request header, what the answer holds): the server refuses the image; the gateway's
# client refuses to send a caller's token that is no printable ASCII (--forward-caller-token).
REFUSALS = {"by the server": ((), b"", (400, b"60000x60000")),
            "for the token": (("--forward-caller-token",), b"Authorization: Bearer t\xe9ken\r\n",
                              (401, b"UNAUTHENTICATED"))}


@pytest.mark.parametrize("refusal", list(REFUSALS))
def test_large_refused_images_leave_the_gateways_memory_as_it_was(server, refusal):
    """Eight 45 MB bodies at once, each a PNG header that claims 60000x60000 pixels and then noise, refused
    after the gateway read them. Afterwards the gateway holds no copy of them (it held 760 MB more when the
    failed calls' tracebacks kept their frames, and the images in them, alive, and about 420 MB in one run of
    two while it gathered a body as a list of chunks, whose freed memory the allocator kept)."""
    options, header, (expected_status, expected_text) = REFUSALS[refusal]
    running = launch_gateway(server.address, *options)
    try:
        size, bodies = 45 * 1024 * 1024, 8
        png = png_claiming(60000, 60000)  # over the server's pixel limit
        noise = np.random.default_rng(0).bytes(1024 * 1024)
        before = resident_bytes(running.process.pid)
        answers: list[int | bytes] = []  # the status of the expected refusal, or what came instead

        def send() -> None:
            head = (f"POST /v1/annotate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                    f"Content-Length: {size}\r\n").encode() + header + b"\r\n" + png
            with raw_request(running, head, timeout=300) as connection:
                left = size - len(png)
                while left > 0:
                    connection.sendall(noise[:left])
                    left -= len(noise)
                status, body = read_answer(connection)
                answers.append(status if expected_text in body else body)

        senders = [threading.Thread(target=send) for _ in range(bodies)]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        assert answers == [expected_status] * bodies
        grown = growth_after_settling(running.process.pid, before, 2 * size)
        assert grown < 2 * size, f"fer-web grew by {grown / 1e6:.0f} MB"
    finally:
        running.stop()


@pytest.mark.slow
def test_running_out_of_file_descriptors_is_logged_once_not_per_attempt(server):
    """With `ulimit -n 64` and 200 callers holding connections, accept() fails again and again: asyncio
    logged each failure with its traceback (10 MB in 5 s). One line now, and the gateway serves again once
    the callers leave."""
    from ferstream.web.serving import ACCEPT_ERROR_INTERVAL_S

    def few_files() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    running = launch_gateway(server.address, preexec_fn=few_files)
    try:
        callers = [socket.create_connection(address_of(running), timeout=60) for _ in range(200)]
        give_up = time.monotonic() + 60
        while "Too many open files" not in running.log():
            assert time.monotonic() < give_up, running.log()[-2000:]
            time.sleep(0.2)
        time.sleep(min(3.0, ACCEPT_ERROR_INTERVAL_S / 2))  # asyncio tries again each second
        for caller in callers:
            caller.close()
        log = running.log()
        assert len(log) < 64 * 1024 and "Traceback" not in log, f"{len(log)} bytes of log: {log[-2000:]}"
        assert len([line for line in log.splitlines() if "cannot accept connections" in line]) == 1
        assert "Too many open files" in log
        status, health = get(f"{running.url}/healthz")
        assert (status, health["server"]) == (200, "serving")
    finally:
        running.stop()


def test_a_non_image_file_in_a_form_is_refused_before_forwarding(gateway):
    body, content_type = multipart("file", "notes.txt", b"just some text, no image" * 100)
    status, error = post(f"{gateway.url}/v1/annotate", body, content_type)
    assert (status, error["code"]) == (400, "INVALID_ARGUMENT") and "before forwarding" in error["error"]


# ----- orientation-tagged photos


def tagged(photo: bytes, fmt: str) -> bytes:
    """photo as a phone held sideways stores it: its pixels turned a quarter anticlockwise, re-encoded as
    fmt, with EXIF orientation 6 (turn a quarter clockwise to show it upright)."""
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    stored = Image.open(io.BytesIO(photo)).convert("RGB").transpose(Image.Transpose.ROTATE_90)
    stored.save(out, fmt, exif=exif.tobytes(), quality=95)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "PNG"])
def test_answers_give_the_upright_size_of_orientation_tagged_photos(gateway, photo, fmt):
    from websockets.sync.client import connect

    image = cv2.imdecode(np.frombuffer(photo, np.uint8), cv2.IMREAD_COLOR)
    upright = (image.shape[1], image.shape[0])  # the header says the stored size, height and width
    data = tagged(photo, fmt)
    status, record = post(f"{gateway.url}/v1/annotate", data, f"image/{fmt.lower()}")
    assert status == 200 and (record["width"], record["height"]) == upright
    assert len(record["faces"]) >= 3  # found upright, as in the untagged photo
    assert all(face["box"]["x"] + face["box"]["width"] <= upright[0] for face in record["faces"])
    with connect(ws_url(gateway), max_size=None) as live:
        live.send(data)
        answer = json.loads(live.recv(timeout=120))
    assert (answer["record"]["width"], answer["record"]["height"]) == upright


def test_the_page_draws_a_tagged_webp_upright_under_its_boxes(chromium, gateway, photo, tmp_path):
    path = tmp_path / "turned.webp"
    path.write_bytes(tagged(photo, "WEBP"))
    context, page = open_page(chromium, tmp_path, gateway.url)
    try:
        page.set_input_files("#file", str(path))
        page.wait_for_function("window.ferWeb.lastRecord && window.ferWeb.lastRecord.faces.length >= 3",
                               timeout=PAGE_TIMEOUT_MS)
        record = page.evaluate("window.ferWeb.lastRecord")
        assert page.evaluate("window.ferWeb.shownSize") == [record["width"], record["height"]]
        assert record["width"] > record["height"]  # the landscape photo, turned upright from its portrait pixels
    finally:
        context.close()


# ----- the command line's token and TLS name


@pytest.mark.parametrize("args, env", [(["--token", "jeton-été"], {}), ([], {"FER_TOKEN": "s3cret\n"})])
def test_a_token_that_cannot_be_sent_is_one_line_and_exit_2(args, env):
    import os

    result = subprocess.run([*GATEWAY, *args], capture_output=True, text=True, timeout=60,
                            env={**os.environ, **env})
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "token" in result.stderr


@pytest.mark.slow
def test_server_name_is_the_name_the_servers_certificate_carries(fer_server_factory, tmp_path, photo):
    require_program("openssl")
    from test_security import make_ca, make_leaf

    make_ca(tmp_path, "ca")
    make_leaf(tmp_path, "named", "ca", "subjectAltName=DNS:ferstream.test\nextendedKeyUsage=serverAuth")
    tls_server = fer_server_factory("--tls-cert", str(tmp_path / "named.pem"), "--tls-key", str(tmp_path / "named.key"))
    named = launch_gateway(tls_server.address, "--tls-ca", str(tmp_path / "ca.pem"), "--server-name", "ferstream.test")
    unnamed = launch_gateway(tls_server.address, "--tls-ca", str(tmp_path / "ca.pem"))
    try:
        status, record = post(f"{named.url}/v1/annotate", photo)
        assert status == 200 and len(record["faces"]) >= 3
        assert post(f"{unnamed.url}/v1/annotate", photo)[0] == 503  # 127.0.0.1 is not the certificate's name
    finally:
        named.stop()
        unnamed.stop()
    result = subprocess.run([*GATEWAY, "--server-name", "ferstream.test"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--tls-ca" in result.stderr
