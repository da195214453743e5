"""The Tk window: video with annotations, controls, a list of the faces, and a status bar. UI only.

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
import tkinter.font as tkfont
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from tkinter import ttk

import cv2
import numpy as np
from tktooltip import ToolTip

from ferstream.client.capture import CaptureThread, FrameSource, LatestFrame
from ferstream.client.library import EmotionClient
from ferstream.client.messages import DETECTORS, EMOTIONS, MIN_JPEG_QUALITY, MODELS, detector_name, omitted_note
from ferstream.client.render import annotations, render_reply
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
from ferstream.annotate.draw import Drawing, colour_of, text_colour_on
from ferstream.v1 import emotion_pb2

POLL_MS = 20
# Every thread gets this long, together, to finish when the window closes.
SHUTDOWN_S = 0.8
# A passing message (a snapshot saved) stays this long in the status bar, then the connection state returns.
FLASH_MS = 4000
DEFAULT_DETECTOR_LABEL = "server default"
WINDOW_TITLE = "ferstream client"
MIN_WIDTH = 480
PAUSED_BADGE = "paused"
# Overlay text on the picture: its point size follows the canvas width (1 pt per 60 px) within these bounds.
BANNER_POINTS = (9, 18)
BANNER_MARGIN = 8
# Black behind yellow and white text: 14.8:1 and 21:1 contrast.
BANNER_BACKGROUND = "#000000"
MESSAGE_COLOUR = "#ffd400"
BADGE_COLOUR = "#ffffff"
# Tooltips: black on pale yellow, 19.5:1.
TOOLTIP_BACKGROUND = "#ffffe0"
TOOLTIP_FOREGROUND = "#000000"
# Tooltips wrap at this width and keep this far from the screen's edges.
TOOLTIP_WIDTH_PX = 320
TOOLTIP_MARGIN_PX = 4


@dataclass(frozen=True)
class SourceStopped:
    """The frame source ended or failed; message says why."""

    message: str


@dataclass(frozen=True)
class ServerDefaultDetector:
    """The detector the server runs when a request names none, from its GetModelInfo ("yunet")."""

    name: str


@dataclass(frozen=True)
class ViewTransform:
    """How the frame sits on the canvas: canvas = offset + frame * scale."""

    scale: float
    offset_x: int
    offset_y: int


def hex_colour(bgr: tuple[int, int, int]) -> str:
    """Tk's '#rrggbb' for an OpenCV BGR colour."""
    blue, green, red = bgr
    return f"#{red:02x}{green:02x}{blue:02x}"


def elide(font: tkfont.Font, text: str, width: int) -> str:
    """text cut to fit width pixels in font, ending in '…' when cut ('' when not even that fits)."""
    if font.measure(text) <= width:
        return text
    low, high = 0, len(text)  # the longest prefix that fits with the ellipsis: binary search
    while low < high:
        middle = (low + high + 1) // 2
        if font.measure(text[:middle].rstrip() + "…") <= width:
            low = middle
        else:
            high = middle - 1
    return text[:low].rstrip() + "…" if low or font.measure("…") <= width else ""


class ScreenToolTip(ToolTip):
    """A ToolTip that stays on the screen: it opens below-right of the pointer as usual, but to the left of
    it (above it) where it would run past the screen's right (bottom) edge, as it did beside the controls
    of a window near the right edge."""

    def _update_tooltip_coords(self, event: tk.Event) -> None:
        self.update_idletasks()  # the size the wrapped text needs
        width, height = self.winfo_reqwidth(), self.winfo_reqheight()
        right = self.winfo_screenwidth() - TOOLTIP_MARGIN_PX
        bottom = self.winfo_screenheight() - TOOLTIP_MARGIN_PX
        x = event.x_root + self.x_offset
        if x + width > right:
            x = max(TOOLTIP_MARGIN_PX, min(event.x_root - self.x_offset - width, right - width))
        y = event.y_root + self.y_offset
        if y + height > bottom:
            y = max(TOOLTIP_MARGIN_PX, event.y_root - self.y_offset - height)
        self.geometry(f"+{x}+{y}")


def make_tooltip(widget: tk.Widget, text: str) -> ToolTip:
    """A tooltip for widget, wrapped at TOOLTIP_WIDTH_PX and kept on the screen, that shows above every
    other window, also on a display without a window manager (which would otherwise leave it stacked
    wherever X put it: often under the main window)."""
    tip = ScreenToolTip(widget, msg=text, delay=0.4, bg=TOOLTIP_BACKGROUND, fg=TOOLTIP_FOREGROUND,
                        width=TOOLTIP_WIDTH_PX)
    tip.bind("<Map>", lambda event: tip.lift(), add="+")
    return tip


class Banner:
    """A line of text on a black box over the picture, in the canvas's top-left or top-right corner.

    Its text wraps to the canvas width; empty text hides it.
    """

    def __init__(self, canvas: tk.Canvas, font: tkfont.Font, colour: str, corner: str) -> None:
        self._canvas = canvas
        self._corner = corner  # "nw" or "ne"
        self._box = canvas.create_rectangle(0, 0, 0, 0, fill=BANNER_BACKGROUND, outline="", state=tk.HIDDEN)
        self._text = canvas.create_text(0, 0, anchor=corner, fill=colour, font=font, text="", state=tk.HIDDEN)

    @property
    def text(self) -> str:
        """What the banner says ('' when hidden)."""
        return self._canvas.itemcget(self._text, "text")

    @property
    def visible(self) -> bool:
        """True while the banner is shown on the canvas."""
        return self._canvas.itemcget(self._text, "state") == tk.NORMAL

    def show(self, text: str) -> None:
        """Shows text (or hides the banner for '') and puts it above the picture."""
        self._canvas.itemconfigure(self._text, text=text)
        self.place()

    def place(self) -> None:
        """Moves the banner into its corner for the canvas's current size."""
        canvas = self._canvas
        state = tk.NORMAL if self.text else tk.HIDDEN
        width = max(1, canvas.winfo_width())
        x = BANNER_MARGIN if self._corner == "nw" else width - BANNER_MARGIN
        canvas.itemconfigure(self._text, state=state, width=max(40, width - 4 * BANNER_MARGIN))
        canvas.coords(self._text, x, BANNER_MARGIN)
        x1, y1, x2, y2 = canvas.bbox(self._text) or (x, BANNER_MARGIN, x, BANNER_MARGIN)
        canvas.coords(self._box, x1 - 4, y1 - 2, x2 + 4, y2 + 2)
        canvas.itemconfigure(self._box, state=state)
        canvas.tag_raise(self._box)
        canvas.tag_raise(self._text)


class ClientApp:
    """The fer-client window over a frame source, streaming to the server at `target`.

    connect builds an EmotionClient for a target (the app connects again with it after Disconnect or a new
    address). close_requested: set it from any thread or a signal handler to close the window on the next
    poll. Tests read `state`, `status_message`, `stats`, `last_annotated`, `drawing` and `view`.
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
        self._shown: tuple[np.ndarray, Sequence[emotion_pb2.Face]] | None = None
        self._photo: tk.PhotoImage | None = None
        self._state_message = "disconnected"  # the lasting status; a flash replaces it for FLASH_MS
        self._flash_job: str | None = None
        self._listed: tuple[tuple[int, str, str], ...] = ()
        self._default_detector_label = DEFAULT_DETECTOR_LABEL
        self.state = ConnectionState.DISCONNECTED
        self.status_message = self._state_message
        self.stats_text = ""
        self.stats = Stats()
        self.last_annotated: Annotated | None = None
        self.drawing: Drawing | None = None
        self.view: ViewTransform | None = None

        root.title(f"{WINDOW_TITLE} — {source.description}")
        root.geometry("960x720")
        self._build_widgets(target)
        # As small as the picture stays usable, and tall enough for every control (the face list's 3 rows).
        root.update_idletasks()
        root.minsize(MIN_WIDTH, self._controls.winfo_reqheight() + self._status_bar.winfo_reqheight())
        root.protocol("WM_DELETE_WINDOW", self.close)
        root.bind("<Control-q>", lambda event: self.close())

        self._capture.start()
        if autoconnect:
            self.connect()
        self._poll_job = self.root.after(POLL_MS, self._poll)

    # ----- widgets
    def _build_widgets(self, target: str) -> None:
        status_bar = ttk.Frame(self.root, padding=(6, 2), relief=tk.SUNKEN)
        controls = ttk.Frame(self.root, padding=(8, 6))
        status_bar.pack(side=tk.BOTTOM, fill=tk.X)
        controls.pack(side=tk.RIGHT, fill=tk.Y)
        self.canvas = tk.Canvas(self.root, background="black", highlightthickness=0)
        self.canvas.pack(side=tk.LEFT, fill=tk.BOTH, expand=True)
        self._image_item = self.canvas.create_image(0, 0, anchor=tk.NW)
        self._banner_font = tkfont.Font(family=tkfont.nametofont("TkDefaultFont").actual("family"),
                                        size=BANNER_POINTS[1], weight="bold")
        self.message_banner = Banner(self.canvas, self._banner_font, MESSAGE_COLOUR, "nw")
        self.badge_banner = Banner(self.canvas, self._banner_font, BADGE_COLOUR, "ne")
        self.message_banner.show("waiting for frames…")
        self.canvas.bind("<Configure>", lambda event: self._canvas_resized())

        self.server_var = tk.StringVar(value=target)
        self.server_entry = ttk.Entry(controls, textvariable=self.server_var, width=22)
        for key in ("<Return>", "<KP_Enter>"):
            self.server_entry.bind(key, lambda event: self.connect_to_entered_server())
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

        # The emotion model: the server's default for streams (fast), or one by name.
        self.model_var = tk.StringVar(value=self._options.model or DEFAULT_DETECTOR_LABEL)
        self.model_box = ttk.Combobox(
            controls, textvariable=self.model_var, values=(DEFAULT_DETECTOR_LABEL, *MODELS), state="readonly",
            width=14,
        )
        self.model_box.bind("<<ComboboxSelected>>", lambda event: self._model_changed())

        self.min_score_var = tk.DoubleVar(value=self._options.min_detection_score)
        self.min_score_scale = ttk.Scale(
            controls, from_=0.0, to=1.0, variable=self.min_score_var, length=110, command=self._min_score_changed
        )
        self._min_score_label = ttk.Label(controls, width=7)

        self.quality_var = tk.IntVar(value=self._options.jpeg_quality)
        self.quality_scale = ttk.Scale(
            controls, from_=MIN_JPEG_QUALITY, to=100, variable=self.quality_var, length=110, command=self._quality_changed
        )
        self._quality_label = ttk.Label(controls, width=4)

        self.pause_button = ttk.Button(controls, text="Pause", command=self.toggle_pause, width=7)
        self.snapshot_button = ttk.Button(controls, text="Snapshot", command=self.snapshot, width=8)
        self.charts_var = tk.BooleanVar(value=True)
        self.charts_button = ttk.Checkbutton(
            controls, text="Charts per face", variable=self.charts_var, command=self._redraw
        )
        faces = ttk.Frame(controls)
        self.face_list = ttk.Treeview(
            faces, columns=("face", "emotion", "probability"), show="headings", height=3, selectmode="none"
        )
        for column, heading, width, anchor in (
            ("face", "#", 36, tk.E),
            ("emotion", "emotion", 80, tk.W),
            ("probability", "%", 44, tk.E),
        ):
            self.face_list.heading(column, text=heading, anchor=anchor)
            self.face_list.column(column, width=width, minwidth=width, anchor=anchor, stretch=column == "emotion")
        for emotion in EMOTIONS:  # each row in its emotion's colour, with text that contrasts with it
            colour = colour_of(emotion)
            self.face_list.tag_configure(emotion, background=hex_colour(colour),
                                         foreground=hex_colour(text_colour_on(colour)))
        # "32 of 43 faces shown (limit 32)" when the face limit left faces out; empty otherwise.
        self.faces_note = ttk.Label(controls, text="", anchor=tk.W)
        scrollbar = ttk.Scrollbar(faces, orient=tk.VERTICAL, command=self.face_list.yview)
        self.face_list.configure(yscrollcommand=scrollbar.set)
        self.face_list.pack(side=tk.LEFT, fill=tk.BOTH, expand=True)
        scrollbar.pack(side=tk.RIGHT, fill=tk.Y)

        rows: list[tuple[tk.Widget, ...]] = [
            (ttk.Label(controls, text="Server"),),
            (self.server_entry,),
            (self.connect_button,),
            (ttk.Label(controls, text="Detector"),),
            (self.detector_box,),
            (ttk.Label(controls, text="Emotion model"),),
            (self.model_box,),
            (ttk.Label(controls, text="Min detection score"),),
            (self.min_score_scale, self._min_score_label),
            (ttk.Label(controls, text="JPEG quality"),),
            (self.quality_scale, self._quality_label),
            (self.pause_button, self.snapshot_button),
            (self.charts_button,),
            (ttk.Label(controls, text="Faces"),),
            (faces,),
            (self.faces_note,),
        ]
        for row, widgets in enumerate(rows):
            for column, widget in enumerate(widgets):
                spans_row = len(widgets) == 1
                heading = (isinstance(widget, ttk.Label) and spans_row and row > 0
                           and widget is not self.faces_note)
                widget.grid(
                    row=row,
                    column=column,
                    columnspan=2 if spans_row else 1,
                    sticky=tk.NSEW if widget is faces else tk.EW if spans_row or isinstance(widget, ttk.Button)
                    else tk.W,
                    pady=(8 if heading else 2, 2),
                )
        controls.rowconfigure(len(rows) - 2, weight=1)  # the face list takes the height left
        self._controls = controls
        self._show_control_values()

        self._status_bar = status_bar
        status_bar.columnconfigure(0, weight=1)
        self.state_label = ttk.Label(status_bar, text=self.status_message, anchor=tk.W)
        self.stats_label = ttk.Label(status_bar, text="", anchor=tk.E)
        self.state_label.grid(row=0, column=0, sticky=tk.EW)
        self.stats_label.grid(row=0, column=1, sticky=tk.E)
        status_bar.bind("<Configure>", lambda event: self._layout_status())

        tips = {
            self.server_entry: "Server address, HOST:PORT; Enter connects to it",
            self.connect_button: "Connect to the server, or disconnect from it",
            self.detector_box: "Face detector the server runs (server default: its most accurate one)",
            self.model_box: "Emotion model: fast (a 48x48 CNN, the server's default for live video) or accurate "
            "(a real-world expression model on 112x112 colour faces with the fast one; several times its cost)",
            self.min_score_scale: "Minimum detection score: faces scored lower are dropped (0: the detector's default)",
            self.quality_scale: "JPEG quality of the video and camera frames sent: lower is lighter on the "
            "network, coarser for the model (a photo goes as its file)",
            self.pause_button: "Pause or resume sending frames (the picture freezes)",
            self.snapshot_button: f"Save the annotated frame as PNG in {self._snapshot_dir.resolve()}",
            self.charts_button: "Draw each face's seven probabilities as bars beside it, where there is room "
            "without covering a face",
            self.face_list: "Every face of the picture by its number (#N on its label: its track, which keeps "
            "its number while the face stays in view): top emotion, smoothed over the track, and its probability",
            self.state_label: "Connection state and the latest message",
            self.stats_label: "Client fps: annotated frames received per second. Server fps: what the server's "
            "processing time per frame allows. Latency: frame sent to annotations back. Dropped: frames "
            "never sent (server busy) plus frames the server skipped",
        }
        self.tooltips = [make_tooltip(widget, text) for widget, text in tips.items()]

    def _show_control_values(self) -> None:
        score = self.min_score_var.get()
        self._min_score_label.configure(text=f"{score:.2f}" if score > 0 else "default")
        self._quality_label.configure(text=str(self.quality_var.get()))

    # ----- controls
    def connect(self) -> None:
        """Starts streaming to the address in the server field (nothing when already connected; an address
        that cannot be a gRPC target, such as an http:// URL, is refused in the status bar)."""
        if self._session is not None:
            return
        target = self.server_var.get().strip()
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
        self.connect_button.configure(text="Disconnect")

    def disconnect(self) -> None:
        """Stops streaming; the figures of the finished stream and its faces are cleared."""
        if self._session is None:
            return
        self._session.stop()
        self._stopping = [*(old for old in self._stopping if old.is_alive()), self._session]
        self._session = None
        self.connect_button.configure(text="Connect")
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
        self.pause_button.configure(text="Resume" if self._options.paused else "Pause")
        self.badge_banner.show(PAUSED_BADGE if self._options.paused else "")
        if self._options.paused:  # no frames go out: a frame rate would read as current
            self.stats_text = ""
            self._layout_status()

    def _model_changed(self) -> None:
        chosen = self.model_var.get()
        self._set_options(model="" if chosen == DEFAULT_DETECTOR_LABEL else chosen)

    def _detector_changed(self) -> None:
        chosen = self.detector_var.get()
        self._set_options(detector=None if chosen == self._default_detector_label else chosen)

    @staticmethod
    def _ask_default_detector(client: EmotionClient, emit: Callable[[ServerDefaultDetector], None]) -> None:
        """On its own thread: the server's default detector, from GetModelInfo, as an event for _poll; nothing
        when the server does not answer (the stream reports connection trouble itself)."""
        try:
            info = client.model_info()
        except Exception:  # grpc.RpcError or a closed channel: the label just stays unnamed
            return
        emit(ServerDefaultDetector(detector_name(info.default_detector)))

    def _name_default_detector(self, name: str) -> None:
        """"server default (yunet)" in the detector list, and in the box while it is chosen."""
        label = f"{DEFAULT_DETECTOR_LABEL} ({name})"
        if self.detector_var.get() == self._default_detector_label:
            self.detector_var.set(label)
        self._default_detector_label = label
        self.detector_box.configure(values=(label, *DETECTORS))

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
        """The stream options as the controls set them."""
        return self._options

    def snapshot(self) -> Path | None:
        """Saves the annotated frame at its full size as PNG; returns the file written (None on failure,
        with the reason in the status bar)."""
        if self.last_annotated is None:
            self._flash("nothing to save yet: no annotated frame")
            return None
        shown = self.last_annotated
        image = render_reply(shown.frame.image, shown.response.faces, charts=self.charts_var.get()).image
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
        return self.message_banner.text

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
                self._name_default_detector(event.name)
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
        self._shown = (image, faces)
        self._shown_seq = seq
        self._redraw()
        self._list_faces(faces)
        self.faces_note.configure(text=note)

    def _redraw(self) -> None:
        """Draws the shown frame at the canvas's size (after a new frame, a resize or the charts toggle)."""
        canvas_w, canvas_h = self.canvas.winfo_width(), self.canvas.winfo_height()
        if self._shown is None or canvas_w < 2 or canvas_h < 2:
            return  # nothing to show, or not mapped yet
        image, faces = self._shown
        height, width = image.shape[:2]
        scale = min(canvas_w / width, canvas_h / height)
        drawing = render_reply(image, faces, scale=scale, charts=self.charts_var.get())
        offset_x, offset_y = (canvas_w - drawing.image.shape[1]) // 2, (canvas_h - drawing.image.shape[0]) // 2
        ok, ppm = cv2.imencode(".ppm", drawing.image)
        self._photo = tk.PhotoImage(data=ppm.tobytes(), format="PPM")
        self.canvas.itemconfigure(self._image_item, image=self._photo)
        self.canvas.coords(self._image_item, offset_x, offset_y)
        self.drawing = drawing
        self.view = ViewTransform(scale, offset_x, offset_y)

    def _list_faces(self, faces: Sequence[emotion_pb2.Face]) -> None:
        rows = tuple(sorted(  # by number, as the labels on the picture: track ids come in score order
            (face.number, face.emotion, f"{face.top_probability:.0%}") for face in annotations(faces)
        ))
        if rows == self._listed:
            return
        self.face_list.delete(*self.face_list.get_children())
        for number, emotion, probability in rows:
            self.face_list.insert("", tk.END, values=(f"#{number}", emotion, probability), tags=(emotion,))
        self._listed = rows

    def _canvas_resized(self) -> None:
        low, high = BANNER_POINTS
        self._banner_font.configure(size=min(high, max(low, round(self.canvas.winfo_width() / 60))))
        self.message_banner.place()
        self.badge_banner.place()
        self._redraw()

    def _set_state(self, state: ConnectionState, message: str) -> None:
        self.state = state
        self._state_message = message
        # Trouble is shown over the picture too, where it cannot be missed.
        self._show_status(message, on_canvas=state is not ConnectionState.CONNECTED)
        if state is ConnectionState.CONNECTED:
            self.message_banner.show("")
            return
        # Figures of a stream that is not running would read as current: they go.
        self.stats_text = ""
        self._layout_status()
        if state is ConnectionState.DISCONNECTED:
            self.stats = Stats()
            self._list_faces(())
            self.faces_note.configure(text="")

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
            self.message_banner.show(message)

    def _show_stats(self) -> None:
        stats = self.stats
        self.stats_text = (
            f"client {stats.client_fps:.1f} fps · server {stats.server_fps:.1f} fps · "
            f"latency {stats.latency_ms:.0f} ms · dropped {stats.dropped}"
        )
        self._layout_status()

    def _layout_status(self) -> None:
        """Fits the two status texts into the bar: side by side when both fit with a gap, else the figures
        on a second line; each is cut with '…' rather than run into the other or off the window."""
        font = tkfont.nametofont("TkDefaultFont")
        bar = self._status_bar
        width = bar.winfo_width() - 16  # the bar's padding and the labels' own
        if width < 40:  # not laid out yet: show the texts whole
            self.state_label.configure(text=self.status_message)
            self.stats_label.configure(text=self.stats_text)
            return
        gap = font.measure("    ")
        stats_width = font.measure(self.stats_text)
        side_by_side = not self.stats_text or font.measure(self.status_message) + gap + stats_width <= width
        if side_by_side:
            self.stats_label.grid(row=0, column=1, columnspan=1, sticky=tk.E, padx=(gap if self.stats_text else 0, 0))
            state_room = width - (stats_width + gap if self.stats_text else 0)
        else:
            self.stats_label.grid(row=1, column=0, columnspan=2, sticky=tk.E, padx=0)
            state_room = width
        self.state_label.configure(text=elide(font, self.status_message, state_room))
        self.stats_label.configure(text=elide(font, self.stats_text, width))
