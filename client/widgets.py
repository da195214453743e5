"""The Tk widgets of the fer-client window: the picture, the controls beside it and the status bar below.

They show what they are given and report what the user does through callbacks; the window's behaviour
(connecting, streaming, what to show when) is app.py's. Drawing is the one renderer's
(ferstream.annotate.draw, through client/render.py).
"""

from __future__ import annotations

import tkinter as tk
import tkinter.font as tkfont
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from tkinter import ttk

import cv2
import numpy as np
from tktooltip import ToolTip

from ferstream.annotate.draw import Drawing, colour_of, text_colour_on
from ferstream.client.messages import DETECTORS, EMOTIONS, MIN_JPEG_QUALITY, MODELS
from ferstream.client.render import annotations, render_reply
from ferstream.client.session import StreamOptions
from ferstream.v1 import emotion_pb2

# The first entry of the detector and model lists: the server's own choice.
DEFAULT_DETECTOR_LABEL = "server default"
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


class PictureCanvas(tk.Canvas):
    """The picture: a frame with its faces drawn, scaled to fit the canvas and centred, with a message
    banner (top-left) and a badge (top-right) over it. Redrawn at every resize.

    charts() says whether each face gets its probability chart. After a draw, `drawing` holds where every
    label and chart went (in canvas pixels) and `view` how the frame sits on the canvas.
    """

    def __init__(self, parent: tk.Misc, charts: Callable[[], bool]) -> None:
        super().__init__(parent, background="black", highlightthickness=0)
        self._charts = charts
        self._image_item = self.create_image(0, 0, anchor=tk.NW)
        self._photo: tk.PhotoImage | None = None
        self._shown: tuple[np.ndarray, Sequence[emotion_pb2.Face]] | None = None
        self.banner_font = tkfont.Font(family=tkfont.nametofont("TkDefaultFont").actual("family"),
                                       size=BANNER_POINTS[1], weight="bold")
        self.message_banner = Banner(self, self.banner_font, MESSAGE_COLOUR, "nw")
        self.badge_banner = Banner(self, self.banner_font, BADGE_COLOUR, "ne")
        self.drawing: Drawing | None = None
        self.view: ViewTransform | None = None
        self.bind("<Configure>", lambda event: self._resized())

    def show(self, image: np.ndarray, faces: Sequence[emotion_pb2.Face]) -> None:
        """Shows a BGR frame with its faces (boxes in the frame's pixels)."""
        self._shown = (image, faces)
        self.redraw()

    def redraw(self) -> None:
        """Draws the shown frame at the canvas's size (after a new frame, a resize or the charts toggle)."""
        canvas_w, canvas_h = self.winfo_width(), self.winfo_height()
        if self._shown is None or canvas_w < 2 or canvas_h < 2:
            return  # nothing to show, or not mapped yet
        image, faces = self._shown
        height, width = image.shape[:2]
        scale = min(canvas_w / width, canvas_h / height)
        drawing = render_reply(image, faces, scale=scale, charts=self._charts())
        offset_x, offset_y = (canvas_w - drawing.image.shape[1]) // 2, (canvas_h - drawing.image.shape[0]) // 2
        ok, ppm = cv2.imencode(".ppm", drawing.image)
        self._photo = tk.PhotoImage(data=ppm.tobytes(), format="PPM")
        self.itemconfigure(self._image_item, image=self._photo)
        self.coords(self._image_item, offset_x, offset_y)
        self.drawing = drawing
        self.view = ViewTransform(scale, offset_x, offset_y)

    def _resized(self) -> None:
        low, high = BANNER_POINTS
        self.banner_font.configure(size=min(high, max(low, round(self.winfo_width() / 60))))
        self.message_banner.place()
        self.badge_banner.place()
        self.redraw()


@dataclass(frozen=True)
class ControlActions:
    """What the controls call when used (each on Tk's main thread)."""

    connect_to_entered_server: Callable[[], None]  # Enter in the server field
    toggle_connection: Callable[[], None]
    detector_changed: Callable[[], None]
    model_changed: Callable[[], None]
    min_score_changed: Callable[[str], None]  # the scale's value, as Tk passes it
    quality_changed: Callable[[str], None]
    toggle_pause: Callable[[], None]
    snapshot: Callable[[], object]  # the file written, unused here
    charts_toggled: Callable[[], None]


class Controls(ttk.Frame):
    """The column beside the picture: server address and Connect, detector, emotion model, minimum
    detection score, JPEG quality, Pause and Snapshot, the charts toggle, and the list of faces.

    Starts from target and options; reports through actions. Each control has a tooltip (`tooltips`);
    snapshot_dir is named in the Snapshot button's.
    """

    def __init__(self, parent: tk.Misc, target: str, options: StreamOptions, snapshot_dir: Path,
                 actions: ControlActions) -> None:
        super().__init__(parent, padding=(8, 6))
        self.default_detector_label = DEFAULT_DETECTOR_LABEL
        self._listed: tuple[tuple[int, str, str], ...] = ()

        self.server_var = tk.StringVar(value=target)
        self.server_entry = ttk.Entry(self, textvariable=self.server_var, width=22)
        for key in ("<Return>", "<KP_Enter>"):
            self.server_entry.bind(key, lambda event: actions.connect_to_entered_server())
        self.connect_button = ttk.Button(self, text="Connect", command=actions.toggle_connection, width=11)

        self.detector_var = tk.StringVar(value=options.detector or DEFAULT_DETECTOR_LABEL)
        self.detector_box = ttk.Combobox(
            self,
            textvariable=self.detector_var,
            values=(DEFAULT_DETECTOR_LABEL, *DETECTORS),
            state="readonly",
            width=14,
        )
        self.detector_box.bind("<<ComboboxSelected>>", lambda event: actions.detector_changed())

        # The emotion model: the server's default for streams (fast), or one by name.
        self.model_var = tk.StringVar(value=options.model or DEFAULT_DETECTOR_LABEL)
        self.model_box = ttk.Combobox(
            self, textvariable=self.model_var, values=(DEFAULT_DETECTOR_LABEL, *MODELS), state="readonly",
            width=14,
        )
        self.model_box.bind("<<ComboboxSelected>>", lambda event: actions.model_changed())

        self.min_score_var = tk.DoubleVar(value=options.min_detection_score)
        self.min_score_scale = ttk.Scale(
            self, from_=0.0, to=1.0, variable=self.min_score_var, length=110, command=actions.min_score_changed
        )
        self._min_score_label = ttk.Label(self, width=7)

        self.quality_var = tk.IntVar(value=options.jpeg_quality)
        self.quality_scale = ttk.Scale(
            self, from_=MIN_JPEG_QUALITY, to=100, variable=self.quality_var, length=110,
            command=actions.quality_changed
        )
        self._quality_label = ttk.Label(self, width=4)

        self.pause_button = ttk.Button(self, text="Pause", command=actions.toggle_pause, width=7)
        self.snapshot_button = ttk.Button(self, text="Snapshot", command=actions.snapshot, width=8)
        self.charts_var = tk.BooleanVar(value=True)
        self.charts_button = ttk.Checkbutton(
            self, text="Charts per face", variable=self.charts_var, command=actions.charts_toggled
        )
        faces = ttk.Frame(self)
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
        self.faces_note = ttk.Label(self, text="", anchor=tk.W)
        scrollbar = ttk.Scrollbar(faces, orient=tk.VERTICAL, command=self.face_list.yview)
        self.face_list.configure(yscrollcommand=scrollbar.set)
        self.face_list.pack(side=tk.LEFT, fill=tk.BOTH, expand=True)
        scrollbar.pack(side=tk.RIGHT, fill=tk.Y)

        rows: list[tuple[tk.Widget, ...]] = [
            (ttk.Label(self, text="Server"),),
            (self.server_entry,),
            (self.connect_button,),
            (ttk.Label(self, text="Detector"),),
            (self.detector_box,),
            (ttk.Label(self, text="Emotion model"),),
            (self.model_box,),
            (ttk.Label(self, text="Min detection score"),),
            (self.min_score_scale, self._min_score_label),
            (ttk.Label(self, text="JPEG quality"),),
            (self.quality_scale, self._quality_label),
            (self.pause_button, self.snapshot_button),
            (self.charts_button,),
            (ttk.Label(self, text="Faces"),),
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
        self.rowconfigure(len(rows) - 2, weight=1)  # the face list takes the height left
        self.show_values()

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
            self.snapshot_button: f"Save the annotated frame as PNG in {snapshot_dir.resolve()}",
            self.charts_button: "Draw each face's seven probabilities as bars beside it, where there is room "
            "without covering a face",
            self.face_list: "Every face of the picture by its number (#N on its label: its track, which keeps "
            "its number while the face stays in view): top emotion, smoothed over the track, and its probability",
        }
        self.tooltips = [make_tooltip(widget, text) for widget, text in tips.items()]

    def show_values(self) -> None:
        """Writes the score and quality scales' values beside them."""
        score = self.min_score_var.get()
        self._min_score_label.configure(text=f"{score:.2f}" if score > 0 else "default")
        self._quality_label.configure(text=str(self.quality_var.get()))

    def name_default_detector(self, name: str) -> None:
        """"server default (yunet)" in the detector list, and in the box while it is chosen."""
        label = f"{DEFAULT_DETECTOR_LABEL} ({name})"
        if self.detector_var.get() == self.default_detector_label:
            self.detector_var.set(label)
        self.default_detector_label = label
        self.detector_box.configure(values=(label, *DETECTORS))

    def list_faces(self, faces: Sequence[emotion_pb2.Face], note: str = "") -> None:
        """The face list: one row per face, by number, in its top emotion's colour; note below it (what the
        face limit left out, '' for nothing)."""
        self.faces_note.configure(text=note)
        rows = tuple(sorted(  # by number, as the labels on the picture: track ids come in score order
            (face.number, face.emotion, f"{face.top_probability:.0%}") for face in annotations(faces)
        ))
        if rows == self._listed:
            return
        self.face_list.delete(*self.face_list.get_children())
        for number, emotion, probability in rows:
            self.face_list.insert("", tk.END, values=(f"#{number}", emotion, probability), tags=(emotion,))
        self._listed = rows


class StatusBar(ttk.Frame):
    """The bar below the picture: the connection state and latest message on the left, the stream's
    figures on the right (or on a second line when both do not fit), each cut with '…' rather than run
    into the other or off the window."""

    def __init__(self, parent: tk.Misc, message: str) -> None:
        super().__init__(parent, padding=(6, 2), relief=tk.SUNKEN)
        self._message = message
        self._figures = ""
        self.columnconfigure(0, weight=1)
        self.state_label = ttk.Label(self, text=message, anchor=tk.W)
        self.stats_label = ttk.Label(self, text="", anchor=tk.E)
        self.state_label.grid(row=0, column=0, sticky=tk.EW)
        self.stats_label.grid(row=0, column=1, sticky=tk.E)
        self.bind("<Configure>", lambda event: self._layout())
        self.tooltips = [
            make_tooltip(self.state_label, "Connection state and the latest message"),
            make_tooltip(self.stats_label, "Client fps: annotated frames received per second. Server fps: what "
                         "the server's processing time per frame allows. Latency: frame sent to annotations back. "
                         "Dropped: frames never sent (server busy) plus frames the server skipped"),
        ]

    def show(self, message: str, figures: str) -> None:
        """Shows message and figures ('' for none)."""
        self._message, self._figures = message, figures
        self._layout()

    def _layout(self) -> None:
        """Fits the two texts into the bar: side by side when both fit with a gap, else the figures on a
        second line."""
        font = tkfont.nametofont("TkDefaultFont")
        width = self.winfo_width() - 16  # the bar's padding and the labels' own
        if width < 40:  # not laid out yet: show the texts whole
            self.state_label.configure(text=self._message)
            self.stats_label.configure(text=self._figures)
            return
        gap = font.measure("    ")
        stats_width = font.measure(self._figures)
        side_by_side = not self._figures or font.measure(self._message) + gap + stats_width <= width
        if side_by_side:
            self.stats_label.grid(row=0, column=1, columnspan=1, sticky=tk.E, padx=(gap if self._figures else 0, 0))
            state_room = width - (stats_width + gap if self._figures else 0)
        else:
            self.stats_label.grid(row=1, column=0, columnspan=2, sticky=tk.E, padx=0)
            state_room = width
        self.state_label.configure(text=elide(font, self._message, state_room))
        self.stats_label.configure(text=elide(font, self._figures, width))
