"""The Tk window: video with annotations, controls and a status bar. UI only.

Tk is touched from the main thread alone: the capture and session threads put events on a queue that
`_poll` drains every POLL_MS with `after`.
"""

from __future__ import annotations

import queue
import threading
import time
import tkinter as tk
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from tkinter import ttk

import cv2
import numpy as np
from tktooltip import ToolTip

from ferstream.client.capture import CaptureThread, FrameSource, LatestFrame
from ferstream.client.library import DETECTORS, EmotionClient
from ferstream.client.render import draw_annotations
from ferstream.client.session import (
    Annotated,
    ConnectionState,
    Event,
    Stats,
    StateChanged,
    StreamOptions,
    StreamSession,
)
from ferstream.v1 import emotion_pb2

POLL_MS = 20
# Every thread gets this long, together, to finish when the window closes.
SHUTDOWN_S = 0.8
DEFAULT_DETECTOR_LABEL = "server default"
WINDOW_TITLE = "ferstream client"


@dataclass(frozen=True)
class SourceStopped:
    message: str


@dataclass(frozen=True)
class ViewTransform:
    """How the frame sits on the canvas: canvas = offset + frame * scale."""

    scale: float
    offset_x: int
    offset_y: int


class ClientApp:
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
        self._events: queue.Queue[tuple[object, Event | SourceStopped]] = queue.Queue()
        self._latest = LatestFrame()
        self._capture = CaptureThread(source, self._latest, on_error=self._source_stopped)
        self._session: StreamSession | None = None
        self._stopping: list[StreamSession] = []  # disconnected sessions still winding down
        # Set from any thread or a signal handler; the window closes on the next poll.
        self._close_requested = close_requested or threading.Event()
        self._closed = False
        self._shown_seq = 0
        self._photo: tk.PhotoImage | None = None
        self.state = ConnectionState.DISCONNECTED
        self.status_message = ""
        self.stats = Stats()
        self.last_annotated: Annotated | None = None
        self.view: ViewTransform | None = None

        root.title(f"{WINDOW_TITLE} — {source.description}")
        root.geometry("960x720")
        root.minsize(480, 360)
        self._build_widgets(target)
        root.protocol("WM_DELETE_WINDOW", self.close)
        root.bind("<Control-q>", lambda event: self.close())

        self._capture.start()
        if autoconnect:
            self.connect()
        self._poll_job = self.root.after(POLL_MS, self._poll)

    # ----- widgets
    def _build_widgets(self, target: str) -> None:
        self.canvas = tk.Canvas(self.root, background="black", highlightthickness=0)
        self._image_item = self.canvas.create_image(0, 0, anchor=tk.NW)
        self._canvas_text = self.canvas.create_text(
            10, 10, anchor=tk.NW, fill="yellow", font=("TkDefaultFont", 14, "bold"), text="waiting for frames…"
        )
        controls = ttk.Frame(self.root, padding=(8, 6))
        status = ttk.Frame(self.root, padding=(6, 2), relief=tk.SUNKEN)
        status.pack(side=tk.BOTTOM, fill=tk.X)
        controls.pack(side=tk.RIGHT, fill=tk.Y)
        self.canvas.pack(side=tk.LEFT, fill=tk.BOTH, expand=True)

        self.server_var = tk.StringVar(value=target)
        server_entry = ttk.Entry(controls, textvariable=self.server_var, width=22)
        self.connect_button = ttk.Button(controls, text="Connect", command=self.toggle_connection, width=11)

        self.detector_var = tk.StringVar(value=self._options.detector or DEFAULT_DETECTOR_LABEL)
        self.detector_box = ttk.Combobox(
            controls,
            textvariable=self.detector_var,
            values=(DEFAULT_DETECTOR_LABEL, *DETECTORS),
            state="readonly",
            width=14,
        )
        self.detector_box.bind("<<ComboboxSelected>>", lambda event: self._detector_changed())

        self.min_score_var = tk.DoubleVar(value=self._options.min_detection_score)
        self.min_score_scale = ttk.Scale(
            controls, from_=0.0, to=1.0, variable=self.min_score_var, length=110, command=self._min_score_changed
        )
        self._min_score_label = ttk.Label(controls, width=7)

        self.quality_var = tk.IntVar(value=self._options.jpeg_quality)
        self.quality_scale = ttk.Scale(
            controls, from_=10, to=100, variable=self.quality_var, length=110, command=self._quality_changed
        )
        self._quality_label = ttk.Label(controls, width=4)

        self.pause_button = ttk.Button(controls, text="Pause", command=self.toggle_pause, width=8)
        self.snapshot_button = ttk.Button(controls, text="Snapshot", command=self.snapshot, width=9)

        rows: list[tuple[tk.Widget, ...]] = [
            (ttk.Label(controls, text="Server"),),
            (server_entry,),
            (self.connect_button,),
            (ttk.Label(controls, text="Detector"),),
            (self.detector_box,),
            (ttk.Label(controls, text="Min detection score"),),
            (self.min_score_scale, self._min_score_label),
            (ttk.Label(controls, text="JPEG quality"),),
            (self.quality_scale, self._quality_label),
            (self.pause_button,),
            (self.snapshot_button,),
        ]
        for row, widgets in enumerate(rows):
            for column, widget in enumerate(widgets):
                spans_row = len(widgets) == 1
                widget.grid(
                    row=row,
                    column=column,
                    columnspan=2 if spans_row else 1,
                    sticky=tk.EW if spans_row else tk.W,
                    pady=(10 if isinstance(widget, ttk.Label) and spans_row and row else 2, 2),
                )
        self._show_control_values()

        self.state_label = ttk.Label(status, text="disconnected", anchor=tk.W)
        self.stats_label = ttk.Label(status, text="", anchor=tk.E)
        self.state_label.pack(side=tk.LEFT, fill=tk.X, expand=True)
        self.stats_label.pack(side=tk.RIGHT)

        tips = {
            server_entry: "Server address, HOST:PORT",
            self.connect_button: "Connect to the server, or disconnect from it",
            self.detector_box: "Face detector the server runs (server default: its most accurate one)",
            self.min_score_scale: "Minimum detection score: faces scored lower are dropped (0: the detector's default)",
            self.quality_scale: "JPEG quality of the frames sent: lower is lighter on the network, "
            "coarser for the model",
            self.pause_button: "Pause or resume sending frames (the picture freezes)",
            self.snapshot_button: f"Save the annotated frame as PNG in {self._snapshot_dir.resolve()}",
            self.state_label: "Connection state and the latest message",
            self.stats_label: "Client fps: annotated frames received per second. Server fps: what the server's "
            "processing time per frame allows. Latency: frame sent to annotations back. Dropped: frames "
            "never sent (server busy) plus frames the server skipped",
        }
        self.tooltips = [ToolTip(widget, msg=text, delay=0.4) for widget, text in tips.items()]

    def _show_control_values(self) -> None:
        score = self.min_score_var.get()
        self._min_score_label.configure(text=f"{score:.2f}" if score > 0 else "default")
        self._quality_label.configure(text=str(self.quality_var.get()))

    # ----- controls
    def connect(self) -> None:
        if self._session is not None:
            return
        session: StreamSession

        def emit(event: Event) -> None:  # tagged, so that a stopped session's late events are ignored
            self._events.put((session, event))

        session = StreamSession(
            self._connect_client(self.server_var.get().strip()), self._latest, emit=emit, options=self._options
        )
        self._session = session
        self._session.start()
        self.connect_button.configure(text="Disconnect")

    def disconnect(self) -> None:
        if self._session is None:
            return
        self._session.stop()
        self._stopping = [*(old for old in self._stopping if old.is_alive()), self._session]
        self._session = None
        self.connect_button.configure(text="Connect")
        self._set_state(ConnectionState.DISCONNECTED, "disconnected")

    def toggle_connection(self) -> None:
        if self._session is not None:
            self.disconnect()
        else:
            self.connect()

    def toggle_pause(self) -> None:
        self._set_options(paused=not self._options.paused)
        self.pause_button.configure(text="Resume" if self._options.paused else "Pause")

    def _detector_changed(self) -> None:
        chosen = self.detector_var.get()
        self._set_options(detector=None if chosen == DEFAULT_DETECTOR_LABEL else chosen)

    def _min_score_changed(self, value: str) -> None:
        self._set_options(min_detection_score=round(float(value), 2))
        self._show_control_values()

    def _quality_changed(self, value: str) -> None:
        self.quality_var.set(round(float(value)))
        self._set_options(jpeg_quality=self.quality_var.get())
        self._show_control_values()

    def _set_options(self, **changes: object) -> None:
        self._options = replace(self._options, **changes)
        if self._session is not None:
            self._session.set_options(**changes)

    @property
    def options(self) -> StreamOptions:
        return self._options

    def snapshot(self) -> Path | None:
        """Saves the annotated frame at its full size; returns the file written."""
        if self.last_annotated is None:
            self._set_status("nothing to save yet: no annotated frame")
            return None
        image = draw_annotations(self.last_annotated.frame.image, self.last_annotated.response.faces)
        path = self._snapshot_dir / f"ferstream-{time.strftime('%Y%m%d-%H%M%S')}-{self._shown_seq}.png"
        try:
            self._snapshot_dir.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(path), image):
                raise OSError("OpenCV could not write it")
        except (OSError, cv2.error) as error:
            self._set_status(f"could not save {path}: {error}")
            return None
        self._set_status(f"saved {path}")
        return path

    # ----- shutdown
    @property
    def overlay_message(self) -> str:
        """The message shown over the picture ('' while all is well)."""
        return self.canvas.itemcget(self._canvas_text, "text")

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stops every thread (within SHUTDOWN_S) and destroys the window."""
        if self._closed:
            return
        self._closed = True
        self.root.after_cancel(self._poll_job)
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
                self._set_status(event.message, on_canvas=True)
            elif sender is not self._session:
                continue  # a late word from a session already stopped
            elif isinstance(event, StateChanged):
                self._set_state(event.state, event.message)
            elif isinstance(event, Annotated):
                newest = event
        if newest is not None and not self._options.paused:
            self.last_annotated = newest
            self.stats = newest.stats
            self._show(newest.frame.image, newest.frame.seq, newest.response.faces)
            self._show_stats()
        elif self.state is not ConnectionState.CONNECTED and not self._options.paused:
            self._show_raw_frame()
        self._poll_job = self.root.after(POLL_MS, self._poll)

    def _show_raw_frame(self) -> None:
        frame = self._latest.newest()
        if frame is not None and frame.seq != self._shown_seq:
            self._show(frame.image, frame.seq, ())

    def _show(self, image: np.ndarray, seq: int, faces: Sequence[emotion_pb2.Face]) -> None:
        canvas_w, canvas_h = self.canvas.winfo_width(), self.canvas.winfo_height()
        if canvas_w < 2 or canvas_h < 2:
            return  # not mapped yet
        height, width = image.shape[:2]
        scale = min(canvas_w / width, canvas_h / height)
        drawn = draw_annotations(image, faces, scale=scale)  # boxes scaled with the frame
        offset_x, offset_y = (canvas_w - drawn.shape[1]) // 2, (canvas_h - drawn.shape[0]) // 2
        ok, ppm = cv2.imencode(".ppm", drawn)
        self._photo = tk.PhotoImage(data=ppm.tobytes(), format="PPM")
        self.canvas.itemconfigure(self._image_item, image=self._photo)
        self.canvas.coords(self._image_item, offset_x, offset_y)
        self.view = ViewTransform(scale, offset_x, offset_y)
        self._shown_seq = seq

    def _set_state(self, state: ConnectionState, message: str) -> None:
        self.state = state
        # Trouble is shown over the picture too, where it cannot be missed.
        self._set_status(message, on_canvas=state is not ConnectionState.CONNECTED)
        if state is ConnectionState.CONNECTED:
            self.canvas.itemconfigure(self._canvas_text, text="")

    def _set_status(self, message: str, on_canvas: bool = False) -> None:
        self.status_message = message
        self.state_label.configure(text=message)
        if on_canvas:
            self.canvas.itemconfigure(self._canvas_text, text=message)
            self.canvas.tag_raise(self._canvas_text)

    def _show_stats(self) -> None:
        stats = self.stats
        self.stats_label.configure(
            text=f"client {stats.client_fps:.1f} fps · server {stats.server_fps:.1f} fps · "
            f"latency {stats.latency_ms:.0f} ms · dropped {stats.dropped}"
        )
