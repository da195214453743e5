"""fer-web's guard against other web pages (Origin, Host) and its callers' tokens, over plain HTTP and
WebSocket and with a real foreign page in headless Chromium, against a real fer-server on loopback."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import subprocess

import pytest

from conftest import GROUP_PHOTO
from test_web import (GATEWAY, PAGE_TIMEOUT_MS, Gateway, chromium, get, launch_gateway, multipart,  # noqa: F401
                      open_page, post, ws_url)
# The same real fer-server and gateway per module as test_web.py's (pytest registers imported fixtures).
from test_web import gateway, server  # noqa: F401

EVIL = "https://evil.example"


@pytest.fixture(scope="module")
def tokens_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("web-tokens") / "tokens"
    path.write_text("# callers of the gateway\ncaller-one\ncaller-two, caller-three\n")
    return path


@pytest.fixture(scope="module")
def guarded(server, tokens_file):
    """A gateway that wants one of its callers' tokens."""
    running = launch_gateway(server.address, "--auth-tokens", str(tokens_file))
    yield running
    running.stop()


def own_origin(gateway: Gateway) -> str:
    return gateway.url


def handshake_status(url: str, **options) -> int:
    """101 when the WebSocket opens, else the HTTP status that refused its handshake."""
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    try:
        with connect(url, max_size=None, open_timeout=60, **options):
            return 101
    except InvalidStatus as refused:
        return refused.response.status_code


def token_subprotocol(token: str) -> str:
    return "bearer." + base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")


# ----- Origin and Host


@pytest.mark.parametrize("origin", [EVIL, "null", "http://127.0.0.1:1"])
def test_a_post_from_a_foreign_origin_is_refused_with_403(gateway, photo, origin):
    status, error = post(f"{gateway.url}/v1/annotate", photo, origin=origin)
    assert (status, error["code"]) == (403, "PERMISSION_DENIED"), error
    assert "--allow-origin" in error["error"] and "\n" not in error["error"]
    body, content_type = multipart("file", "photo.jpg", photo)  # what a cross-site <form> sends
    assert post(f"{gateway.url}/v1/annotate", body, content_type, origin=origin)[0] == 403


def test_a_cross_site_post_without_origin_is_refused(gateway, photo):
    assert post(f"{gateway.url}/v1/annotate", photo, sec_fetch_site="cross-site")[0] == 403


def test_the_gateways_own_origin_and_programs_without_one_pass(gateway, photo):
    status, record = post(f"{gateway.url}/v1/annotate", photo, origin=own_origin(gateway), sec_fetch_site="same-origin")
    assert status == 200 and len(record["faces"]) >= 3
    assert post(f"{gateway.url}/v1/annotate", photo)[0] == 200  # curl sends no Origin


@pytest.mark.parametrize("host", ["attacker.test", "attacker.test:8080", "127.0.0.1.evil.example"])
def test_a_foreign_host_name_is_refused_with_403(gateway, photo, host):
    """DNS rebinding: the attacker's name resolves to the gateway, so its page is same-origin with it; only
    the Host header tells."""
    for path in ("/", "/v1/config", "/healthz", "/openapi.json"):
        status, error = get(f"{gateway.url}{path}", host=host)
        assert (status, error["code"]) == (403, "PERMISSION_DENIED"), (path, error)
        assert "--allow-host" in error["error"]
    assert post(f"{gateway.url}/v1/annotate", photo, host=host)[0] == 403
    port = gateway.url.rsplit(":", 1)[1]
    for name in ("127.0.0.1", "localhost", "[::1]"):
        assert get(f"{gateway.url}/v1/config", host=f"{name}:{port}")[0] == 200, name


def test_allow_host_adds_a_name(server):
    named = launch_gateway(server.address, "--allow-host", "ferstream.test", "--allow-host", "Other.Test:443")
    try:
        assert get(f"{named.url}/v1/config", host="ferstream.test:8080")[0] == 200
        assert get(f"{named.url}/v1/config", host="other.test")[0] == 200
        assert get(f"{named.url}/v1/config", host="attacker.test")[0] == 403
    finally:
        named.stop()


def test_a_websocket_from_a_foreign_origin_or_host_is_refused_before_it_opens(gateway):
    assert handshake_status(ws_url(gateway), origin=EVIL) == 403
    assert handshake_status(ws_url(gateway), origin="null") == 403
    address = gateway.url.removeprefix("http://").rsplit(":", 1)
    rebound = socket.create_connection((address[0], int(address[1])), timeout=60)  # attacker.test -> the gateway
    assert handshake_status(f"ws://attacker.test:{address[1]}/v1/live", sock=rebound) == 403
    assert handshake_status(ws_url(gateway), origin=own_origin(gateway)) == 101
    assert handshake_status(ws_url(gateway)) == 101


def test_allow_origin_lets_that_origins_pages_in_and_read_answers(server, photo):
    allowing = launch_gateway(server.address, "--allow-origin", EVIL)
    try:
        assert handshake_status(ws_url(allowing), origin=EVIL) == 101
        assert handshake_status(ws_url(allowing), origin="https://other.example") == 403
        import urllib.request

        request = urllib.request.Request(f"{allowing.url}/v1/annotate", data=photo, method="POST",
                                         headers={"content-type": "image/jpeg", "origin": EVIL})
        with urllib.request.urlopen(request, timeout=120) as response:
            assert response.status == 200 and response.headers["access-control-allow-origin"] == EVIL
    finally:
        allowing.stop()


def test_bad_allow_origin_exits_2_with_one_line():
    result = subprocess.run([*GATEWAY, "--allow-origin", "evil.example/path"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and "origin" in result.stderr


FOREIGN_PAGE = """<!doctype html><html><body>
<form id="form" method="post" enctype="multipart/form-data" action="GATEWAY/v1/annotate">
  <input id="file" type="file" name="file"><button id="send" type="submit">send</button>
</form>
<script>
window.socketResult = new Promise((resolve) => {
  const socket = new WebSocket("WS_URL");
  socket.onopen = () => { resolve("open"); socket.close(); };
  socket.onerror = () => resolve("refused");
});
</script></body></html>"""


@contextlib.contextmanager
def foreign_site(folder):
    """Another site on this machine (its own port, so its own origin): a real HTTP server of folder's
    files. Yields its origin."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as site:
        threading.Thread(target=site.serve_forever, daemon=True).start()
        try:
            yield f"http://127.0.0.1:{site.server_address[1]}"
        finally:
            site.shutdown()


@pytest.mark.parametrize("allowed", [False, True])
def test_a_foreign_page_in_chromium_cannot_use_the_gateway(chromium, server, faces_dir, tmp_path, allowed):
    """A page from another site, in a real browser, opens the gateway's WebSocket and posts a multipart
    form to it: both are refused; with --allow-origin for its site, the same page gets in (so the refusal
    is the gateway's, not the browser's)."""
    folder = tmp_path / "site"
    folder.mkdir()
    with contextlib.ExitStack() as stack:
        origin = stack.enter_context(foreign_site(folder))
        gateway = launch_gateway(server.address, *(["--allow-origin", origin] if allowed else []))
        stack.callback(gateway.stop)
        (folder / "attack.html").write_text(FOREIGN_PAGE.replace("WS_URL", ws_url(gateway))
                                            .replace("GATEWAY", gateway.url))
        context, page = open_page(chromium, tmp_path, gateway.url)
        stack.callback(context.close)
        page.goto(f"{origin}/attack.html")
        assert page.evaluate("window.socketResult") == ("open" if allowed else "refused")
        page.set_input_files("#file", str(faces_dir / GROUP_PHOTO))
        with page.expect_response(lambda response: "/v1/annotate" in response.url,
                                  timeout=PAGE_TIMEOUT_MS) as answer:
            page.click("#send")
        assert answer.value.status == (200 if allowed else 403)
        if not allowed:
            assert json.loads(answer.value.body())["code"] == "PERMISSION_DENIED"


# ----- callers' tokens


def test_rest_without_or_with_a_wrong_token_gets_401_and_nothing_done(guarded, photo):
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "Basic Y2FsbGVyLW9uZQ=="}):
        status, error = post(f"{guarded.url}/v1/annotate", photo, **headers)
        assert (status, error["code"]) == (401, "UNAUTHENTICATED"), (headers, error)
        assert error["error"] and "\n" not in error["error"]
    for token in ("caller-one", "caller-three"):
        status, record = post(f"{guarded.url}/v1/annotate", photo, authorization=f"Bearer {token}")
        assert status == 200 and len(record["faces"]) >= 3


def test_a_refused_caller_costs_no_work(guarded):
    """The token is checked before the body is read: a refused call's body never reaches the server (a
    garbage body would otherwise be answered 400)."""
    status, error = post(f"{guarded.url}/v1/annotate", b"garbage, not an image")
    assert status == 401, error


def test_the_page_and_health_stay_open_while_config_needs_the_token(guarded):
    import urllib.request

    with urllib.request.urlopen(f"{guarded.url}/", timeout=60) as response:
        assert response.status == 200
    assert get(f"{guarded.url}/healthz")[0] == 200
    assert get(f"{guarded.url}/openapi.json")[0] == 200
    assert get(f"{guarded.url}/v1/config")[0] == 401
    assert get(f"{guarded.url}/v1/config", authorization="Bearer caller-two")[0] == 200


def test_websocket_checks_the_token_on_upgrade(guarded, photo):
    from websockets.sync.client import connect

    assert handshake_status(ws_url(guarded)) == 401
    assert handshake_status(ws_url(guarded), subprotocols=["ferstream", token_subprotocol("wrong")]) == 401
    assert handshake_status(ws_url(guarded), additional_headers={"Authorization": "Bearer caller-two"}) == 101
    with connect(ws_url(guarded), max_size=None, subprotocols=["ferstream", token_subprotocol("caller-one")]) as socket:
        assert socket.subprotocol == "ferstream"  # the token's own entry is never echoed
        socket.send(photo)
        answer = json.loads(socket.recv(timeout=120))
        assert answer["type"] == "frame" and len(answer["record"]["faces"]) >= 3


@pytest.mark.slow
def test_forward_caller_token_lets_the_server_decide(fer_server_factory, tmp_path, photo):
    tokens = tmp_path / "server-tokens"
    tokens.write_text("server-side-token\n")
    guarded_server = fer_server_factory("--auth-tokens", str(tokens))
    forwarding = launch_gateway(guarded_server.address, "--forward-caller-token", "--token", "gateway-own-token")
    try:
        status, record = post(f"{forwarding.url}/v1/annotate", photo, authorization="Bearer server-side-token")
        assert status == 200 and len(record["faces"]) >= 3
        for headers in ({}, {"authorization": "Bearer gateway-own-token"}, {"authorization": "Bearer wrong"}):
            status, error = post(f"{forwarding.url}/v1/annotate", photo, **headers)
            assert (status, error["code"]) == (401, "UNAUTHENTICATED"), (headers, error)
        from websockets.sync.client import connect

        with connect(ws_url(forwarding), max_size=None,
                     subprotocols=["ferstream", token_subprotocol("server-side-token")]) as socket:
            socket.send(photo)
            answer = json.loads(socket.recv(timeout=120))
            assert answer["type"] == "frame" and len(answer["record"]["faces"]) >= 3
        with connect(ws_url(forwarding), max_size=None,
                     subprotocols=["ferstream", token_subprotocol("wrong")]) as socket:
            socket.send(photo)
            answer = json.loads(socket.recv(timeout=120))
            assert (answer["type"], answer["code"], answer["http_status"]) == ("error", "UNAUTHENTICATED", 401)
    finally:
        forwarding.stop()


def test_non_loopback_needs_caller_tokens_or_insecure(tmp_path):
    result = subprocess.run([*GATEWAY, "--host", "0.0.0.0", "--port", "0", "--tls-cert", "c.pem", "--tls-key", "k.pem"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "--auth-tokens" in result.stderr
    empty = tmp_path / "empty"
    empty.write_text("# nobody\n")
    for path in (empty, tmp_path / "missing"):
        result = subprocess.run([*GATEWAY, "--auth-tokens", str(path)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and str(path) in result.stderr


def test_the_page_asks_for_a_token_once_per_tab(chromium, guarded, faces_dir, tmp_path):
    context = None
    browser_type, executable = chromium
    from test_web import CHROMIUM_FLAGS

    context = browser_type.launch_persistent_context(str(tmp_path / "profile"), executable_path=executable,
                                                     headless=True, args=CHROMIUM_FLAGS,
                                                     viewport={"width": 1100, "height": 680})
    try:
        page = context.new_page()
        page.goto(guarded.url)
        page.wait_for_function("window.ferWeb && window.ferWeb.needsToken", timeout=PAGE_TIMEOUT_MS)
        assert page.is_visible("#login")
        page.fill("#token", "wrong")
        page.click("#login button")
        # The first prompt's reason is on the page already: wait for the refusal of the wrong token itself.
        page.wait_for_function("window.ferWeb.needsToken && "
                               "document.getElementById('login-why').textContent.includes('not one this gateway')",
                               timeout=PAGE_TIMEOUT_MS)
        page.fill("#token", "caller-two")
        page.click("#login button")
        page.wait_for_function("window.ferWeb.ready", timeout=PAGE_TIMEOUT_MS)
        assert not page.is_visible("#login")
        page.set_input_files("#file", str(faces_dir / GROUP_PHOTO))
        page.wait_for_function("window.ferWeb.lastRecord && window.ferWeb.lastRecord.faces.length >= 3",
                               timeout=PAGE_TIMEOUT_MS)
        page.reload()  # the same tab keeps its token
        page.wait_for_function("window.ferWeb && window.ferWeb.ready", timeout=PAGE_TIMEOUT_MS)
        assert not page.is_visible("#login")
        other = context.new_page()  # another tab asks again
        other.goto(guarded.url)
        other.wait_for_function("window.ferWeb && window.ferWeb.needsToken", timeout=PAGE_TIMEOUT_MS)
    finally:
        context.close()


def test_the_page_streams_with_its_token(chromium, guarded, faces_dir, tmp_path):
    from test_web import webm_video

    import cv2

    photo = cv2.resize(cv2.imread(str(faces_dir / GROUP_PHOTO)), (640, 480), interpolation=cv2.INTER_AREA)
    video = webm_video(tmp_path, photo)
    browser_type, executable = chromium
    from test_web import CHROMIUM_FLAGS

    context = browser_type.launch_persistent_context(str(tmp_path / "profile"), executable_path=executable,
                                                     headless=True, args=CHROMIUM_FLAGS)
    try:
        page = context.new_page()
        page.goto(guarded.url)
        page.wait_for_function("window.ferWeb && window.ferWeb.needsToken", timeout=PAGE_TIMEOUT_MS)
        page.fill("#token", "caller-one")
        page.click("#login button")
        page.wait_for_function("window.ferWeb.ready", timeout=PAGE_TIMEOUT_MS)
        page.set_input_files("#file", str(video))
        page.wait_for_function("window.ferWeb.lastRecord && window.ferWeb.lastRecord.faces.length >= 3",
                               timeout=PAGE_TIMEOUT_MS)
        assert all(face["track_id"] >= 1 for face in page.evaluate("window.ferWeb.lastRecord.faces"))
    finally:
        context.close()
