"""The app survives its server going away: it says so, keeps retrying with backoff, and resumes on the
restarted server (same port)."""

from __future__ import annotations

import tkinter as tk

import pytest

from ferstream.client.app import ClientApp
from ferstream.client.capture import open_source
from ferstream.client.library import EmotionClient
from ferstream.client.session import ConnectionState, StreamOptions
from helpers import pump


@pytest.mark.slow
def test_the_app_survives_a_server_restart(fer_server_factory, fer_models_dir, client_display, client_faces_video):
    server = fer_server_factory("--models-dir", str(fer_models_dir))
    port = server.address.rsplit(":", 1)[1]
    app = ClientApp(tk.Tk(), open_source(str(client_faces_video.path)), EmotionClient, server.address,
                    StreamOptions(detector="haar"))
    try:
        pump(app, lambda: app.stats.received >= 2, 30, "annotated frames")

        server.process.kill()  # gone without a goodbye
        server.process.wait()
        pump(app, lambda: app.state is ConnectionState.RECONNECTING, 10, "the app to notice")
        assert "server" in app.status_message
        assert app.overlay_message == app.status_message, "the trouble is shown over the picture too"

        received = app.stats.received
        fer_server_factory("--models-dir", str(fer_models_dir), "--port", port)
        pump(app, lambda: app.stats.received > received + 2, 30, "frames from the restarted server")
        assert app.state is ConnectionState.CONNECTED
        assert app.overlay_message == ""
    finally:
        app.close()
