"""The fer-client window's behaviour: connecting and streaming, the controls' effects, what the picture,
the face list and the status bar show, snapshots and shutdown. The widgets themselves are widgets.py's.

Tk is touched from the main thread alone: the capture and session threads put events on a queue that
`_poll` drains every POLL_MS with `after`. Drawing is the one renderer's (ferstream.annotate.draw, through
client/render.py): it keeps every label and chart off every face box, and the face list beside the picture
gives each face's numbers when a crowd leaves no room for charts.
"""

from __future__ import annotations

import queue
import threading
import time
import tkinter as tk
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from tktooltip import ToolTip

from ferstream.annotate.draw import Drawing
from ferstream.client.capture import CaptureThread, FrameSource, LatestFrame
from ferstream.client.library import EmotionClient
from ferstream.client.messages import detector_name, omitted_note
from ferstream.client.render import render_reply
from ferstream.client.session import (
    Annotated,
    ConnectionState,
    Event,
    Stats,
    StateChanged,
    StreamOptions,
    StreamSession,
    target_problem,
)
from ferstream.client.widgets import (
    DEFAULT_DETECTOR_LABEL,
    ControlActions,
    Controls,
    PictureCanvas,
    StatusBar,
    ViewTransform,
)
from ferstream.v1 import emotion_pb2

POLL_MS = 20
# Every thread gets this long, together, to finish when the window closes.
SHUTDOWN_S = 0.8
# A passing message (a snapshot saved) stays this long in the status bar, then the connection state returns.
FLASH_MS = 4000
WINDOW_TITLE = "ferstream client"
MIN_WIDTH = 480
PAUSED_BADGE = "paused"


@dataclass(frozen=True)
class SourceStopped:
    """The frame source ended or failed; message says why."""

    message: str


@dataclass(frozen=True)
class ServerDefaultDetector:
    """The detector the server runs when a request names none, from its GetModelInfo ("yunet")."""

    name: str


class ClientApp:
    """The fer-client window over a frame source, streaming to the server at `target`.

    connect builds an EmotionClient for a target (the app connects again with it after Disconnect or a new
    address). close_requested: set it from any thread or a signal handler to close the window on the next
    poll. Tests read `state`, `status_message`, `stats`, `last_annotated`, `drawing` and `view`, and use the
    widgets: `controls`, `canvas` (the picture) and `status_bar`.
    """

    def __init__(
        self,
        root: tk.Tk,
        source: FrameSource,
        connect: Callable[[str], EmotionClient],
        target: str,
        options: StreamOptions = StreamOptions(),
        snapshot_dir: Path = Path("."),
        autoconnect: bool = True,
        close_requested: threading.Event | None = None,
    ) -> None:
        self.root = root
        self._connect_client = connect
        self._options = options
        self._snapshot_dir = snapshot_dir
        self._events: queue.Queue[tuple[object, Event | SourceStopped | ServerDefaultDetector]] = queue.Queue()
        self._latest = LatestFrame()
        self._capture = CaptureThread(source, self._latest, on_error=self._source_stopped)
        self._session: StreamSession | None = None
        self._stopping: list[StreamSession] = []  # disconnected sessions still winding down
        self._close_requested = close_requested or threading.Event()
        self._closed = False
        self._shown_seq = 0
        self._state_message = "disconnected"  # the lasting status; a flash replaces it for FLASH_MS
        self._flash_job: str | None = None
        self.state = ConnectionState.DISCONNECTED
        self.status_message = self._state_message
        self.stats_text = ""
        self.stats = Stats()
        self.last_annotated: Annotated | None = None

        root.title(f"{WINDOW_TITLE} — {source.description}")
        root.geometry("960x720")
        self.status_bar = StatusBar(root, self.status_message)
        actions = ControlActions(
            connect_to_entered_server=self.connect_to_entered_server, toggle_connection=self.toggle_connection,
            detector_changed=self._detector_changed, model_changed=self._model_changed,
            min_score_changed=self._min_score_changed, quality_changed=self._quality_changed,
            toggle_pause=self.toggle_pause, snapshot=self.snapshot, charts_toggled=lambda: self.canvas.redraw())
        self.controls = Controls(root, target, options, snapshot_dir, actions)
        self.canvas = PictureCanvas(root, charts=self.controls.charts_var.get)
        self.status_bar.pack(side=tk.BOTTOM, fill=tk.X)
        self.controls.pack(side=tk.RIGHT, fill=tk.Y)
        self.canvas.pack(side=tk.LEFT, fill=tk.BOTH, expand=True)
        self.canvas.message_banner.show("waiting for frames…")
        # As small as the picture stays usable, and tall enough for every control (the face list's 3 rows).
        root.update_idletasks()
        root.minsize(MIN_WIDTH, self.controls.winfo_reqheight() + self.status_bar.winfo_reqheight())
        root.protocol("WM_DELETE_WINDOW", self.close)
        root.bind("<Control-q>", lambda event: self.close())

        self._capture.start()
        if autoconnect:
            self.connect()
        self._poll_job = self.root.after(POLL_MS, self._poll)

    @property
    def drawing(self) -> Drawing | None:
        """Where the picture's labels and charts went (canvas pixels); None before the first frame."""
        return self.canvas.drawing

    @property
    def view(self) -> ViewTransform | None:
        """How the frame sits on the canvas; None before the first frame."""
        return self.canvas.view

    @property
    def tooltips(self) -> list[ToolTip]:
        """Every widget's tooltip."""
        return [*self.controls.tooltips, *self.status_bar.tooltips]

    # ----- controls
    def connect(self) -> None:
        """Starts streaming to the address in the server field (nothing when already connected; an address
        that cannot be a gRPC target, such as an http:// URL, is refused in the status bar)."""
        if self._session is not None:
            return
        target = self.controls.server_var.get().strip()
        problem = target_problem(target)
        if problem is not None:
            self._set_state(ConnectionState.DISCONNECTED, problem)
            return
        session: StreamSession

        def emit(event: Event) -> None:  # tagged, so that a stopped session's late events are ignored
            self._events.put((session, event))

        client = self._connect_client(target)
        session = StreamSession(client, self._latest, emit=emit, options=self._options)
        self._session = session
        self._session.start()
        threading.Thread(target=self._ask_default_detector, args=(client, emit), name="fer-model-info",
                         daemon=True).start()
        self.controls.connect_button.configure(text="Disconnect")

    def disconnect(self) -> None:
        """Stops streaming; the figures of the finished stream and its faces are cleared."""
        if self._session is None:
            return
        self._session.stop()
        self._stopping = [*(old for old in self._stopping if old.is_alive()), self._session]
        self._session = None
        self.controls.connect_button.configure(text="Connect")
        self._set_state(ConnectionState.DISCONNECTED, "disconnected")

    def toggle_connection(self) -> None:
        """The Connect/Disconnect button."""
        if self._session is not None:
            self.disconnect()
        else:
            self.connect()

    def connect_to_entered_server(self) -> None:
        """Enter in the server field: (re)connects to the address typed there."""
        self.disconnect()
        self.connect()

    def toggle_pause(self) -> None:
        """The Pause/Resume button: frames stop being sent and the picture freezes, with a 'paused' badge."""
        self._set_options(paused=not self._options.paused)
        self.controls.pause_button.configure(text="Resume" if self._options.paused else "Pause")
        self.canvas.badge_banner.show(PAUSED_BADGE if self._options.paused else "")
        if self._options.paused:  # no frames go out: a frame rate would read as current
            self.stats_text = ""
            self._layout_status()

    def _model_changed(self) -> None:
        chosen = self.controls.model_var.get()
        self._set_options(model="" if chosen == DEFAULT_DETECTOR_LABEL else chosen)

    def _detector_changed(self) -> None:
        chosen = self.controls.detector_var.get()
        self._set_options(detector=None if chosen == self.controls.default_detector_label else chosen)

    @staticmethod
    def _ask_default_detector(client: EmotionClient, emit: Callable[[ServerDefaultDetector], None]) -> None:
        """On its own thread: the server's default detector, from GetModelInfo, as an event for _poll; nothing
        when the server does not answer (the stream reports connection trouble itself)."""
        try:
            info = client.model_info()
        except Exception:  # grpc.RpcError or a closed channel: the label just stays unnamed
            return
        emit(ServerDefaultDetector(detector_name(info.default_detector)))

    def _min_score_changed(self, value: str) -> None:
        self._set_options(min_detection_score=round(float(value), 2))
        self.controls.show_values()

    def _quality_changed(self, value: str) -> None:
        self.controls.quality_var.set(round(float(value)))
        self._set_options(jpeg_quality=self.controls.quality_var.get())
        self.controls.show_values()

    def _set_options(self, **changes: object) -> None:
        self._options = replace(self._options, **changes)
        if self._session is not None:
            self._session.set_options(**changes)

    @property
    def options(self) -> StreamOptions:
        """The stream options as the controls set them."""
        return self._options

    def snapshot(self) -> Path | None:
        """Saves the annotated frame at its full size as PNG; returns the file written (None on failure,
        with the reason in the status bar)."""
        if self.last_annotated is None:
            self._flash("nothing to save yet: no annotated frame")
            return None
        shown = self.last_annotated
        image = render_reply(shown.frame.image, shown.response.faces, charts=self.controls.charts_var.get()).image
        path = self._snapshot_dir / f"ferstream-{time.strftime('%Y%m%d-%H%M%S')}-{self._shown_seq}.png"
        try:
            self._snapshot_dir.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(path), image):
                raise OSError("OpenCV could not write it")
        except (OSError, cv2.error) as error:
            self._flash(f"could not save {path}: {error}")
            return None
        self._flash(f"saved {path}")
        return path

    # ----- shutdown
    @property
    def overlay_message(self) -> str:
        """The message shown over the picture ('' while all is well)."""
        return self.canvas.message_banner.text

    @property
    def closed(self) -> bool:
        """True once close() has run (the window is gone)."""
        return self._closed

    def close(self) -> None:
        """Stops every thread (within SHUTDOWN_S) and destroys the window."""
        if self._closed:
            return
        self._closed = True
        self.root.after_cancel(self._poll_job)
        if self._flash_job is not None:
            self.root.after_cancel(self._flash_job)
        if self._session is not None:
            self._session.stop()
            self._stopping.append(self._session)
            self._session = None
        self._capture.stop()
        deadline = time.monotonic() + SHUTDOWN_S
        for thread in (*self._stopping, self._capture):
            thread.join(max(0.0, deadline - time.monotonic()))
        self.root.destroy()

    # ----- the main-thread side of the queue
    def _source_stopped(self, message: str) -> None:
        self._events.put((None, SourceStopped(message)))

    def _poll(self) -> None:
        if self._closed:
            return
        if self._close_requested.is_set():
            self.close()
            return
        newest: Annotated | None = None
        while True:
            try:
                sender, event = self._events.get_nowait()
            except queue.Empty:
                break
            if isinstance(event, SourceStopped):
                self._state_message = event.message
                self._show_status(event.message, on_canvas=True)
            elif sender is not self._session:
                continue  # a late word from a session already stopped
            elif isinstance(event, StateChanged):
                self._set_state(event.state, event.message)
            elif isinstance(event, ServerDefaultDetector):
                self.controls.name_default_detector(event.name)
            elif isinstance(event, Annotated):
                newest = event
        if newest is not None and not self._options.paused:
            self.last_annotated = newest
            self.stats = newest.stats
            self._show(newest.frame.image, newest.frame.seq, newest.response.faces, omitted_note(newest.response))
            self._show_stats()
        elif self.state is not ConnectionState.CONNECTED and not self._options.paused:
            self._show_raw_frame()
        self._poll_job = self.root.after(POLL_MS, self._poll)

    def _show_raw_frame(self) -> None:
        frame = self._latest.newest()
        if frame is not None and frame.seq != self._shown_seq:
            self._show(frame.image, frame.seq, ())

    def _show(self, image: np.ndarray, seq: int, faces: Sequence[emotion_pb2.Face], note: str = "") -> None:
        """Shows a frame with its faces; note: what the face limit left out ('' for nothing)."""
        self._shown_seq = seq
        self.canvas.show(image, faces)
        self.controls.list_faces(faces, note)

    def _set_state(self, state: ConnectionState, message: str) -> None:
        self.state = state
        self._state_message = message
        # Trouble is shown over the picture too, where it cannot be missed.
        self._show_status(message, on_canvas=state is not ConnectionState.CONNECTED)
        if state is ConnectionState.CONNECTED:
            self.canvas.message_banner.show("")
            return
        # Figures of a stream that is not running would read as current: they go.
        self.stats_text = ""
        self._layout_status()
        if state is ConnectionState.DISCONNECTED:
            self.stats = Stats()
            self.controls.list_faces(())

    def _flash(self, message: str) -> None:
        """Shows message in the status bar for FLASH_MS, then the connection state again."""
        if self._flash_job is not None:
            self.root.after_cancel(self._flash_job)
        self._show_status(message)

        def restore() -> None:
            self._flash_job = None
            self._show_status(self._state_message)

        self._flash_job = self.root.after(FLASH_MS, restore)

    def _show_status(self, message: str, on_canvas: bool = False) -> None:
        self.status_message = message
        self._layout_status()
        if on_canvas:
            self.canvas.message_banner.show(message)

    def _show_stats(self) -> None:
        stats = self.stats
        self.stats_text = (
            f"client {stats.client_fps:.1f} fps · server {stats.server_fps:.1f} fps · "
            f"latency {stats.latency_ms:.0f} ms · dropped {stats.dropped}"
        )
        self._layout_status()

    def _layout_status(self) -> None:
        self.status_bar.show(self.status_message, self.stats_text)
