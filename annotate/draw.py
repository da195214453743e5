"""The one renderer: faces drawn onto a BGR frame, for fer-annotate, the headless client, the Tk app and
its snapshots.

It works on plain values (`FaceAnnotation`: a box and seven probabilities), so it needs neither gRPC nor
the protobuf classes: the client converts its replies (client/render.py), fer-annotate its FaceResults
(`annotations_of`).

Each face gets a box in its emotion's colour, a label "#N emotion P%" (N keys the face to the app's face
list; on a stream's face tracks N is the track id, and emotion, P and chart are the track's smoothed
ones) and, with `charts` on, a bar chart of its seven probabilities. Labels and charts go only where they
cover no face box (their own face's included) and nothing placed before them: a label that fits nowhere
in full shrinks to "#N" (inside its own box if need be), a chart that fits nowhere is left out. Text and
line sizes follow the size of the drawn image, so a picture shown small gets small but legible overlays.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from ferstream.model.labels import EMOTIONS

if TYPE_CHECKING:  # framepath pulls in the model runtime; drawing must not (the client draws too)
    from ferstream.pipeline.framepath import AnnotatedFrame
    from ferstream.pipeline.tracking import TrackedFace

# (x1, y1, x2, y2), x2 and y2 exclusive, in pixels of the drawn image.
Rect = tuple[int, int, int, int]
Colour = tuple[int, int, int]  # BGR

# BGR, saturated and far apart so that each emotion reads at a glance. Each is light enough that black
# text on it has a contrast of at least 4.5:1 (WCAG 2 AA), and shows as a bar on a darkened chart.
EMOTION_COLOURS: dict[str, Colour] = {
    "angry": (0, 0, 255),  # red: black text 5.2:1
    "disgust": (0, 170, 0),  # green: 6.8:1
    "fear": (255, 0, 255),  # magenta: 6.7:1
    "happy": (0, 255, 255),  # yellow: 19.6:1
    "sad": (255, 144, 30),  # dodger blue (pure blue would need white text, and vanish on a dark chart): 6.5:1
    "surprise": (0, 140, 255),  # orange: 9.0:1
    "neutral": (255, 255, 0),  # cyan: 16.8:1
}
UNKNOWN_COLOUR: Colour = (255, 255, 255)
BLACK: Colour = (0, 0, 0)
WHITE: Colour = (255, 255, 255)
# A chart darkens the picture under it to this fraction, so that white text on it keeps >= 7:1 contrast
# whatever the picture (white, 255, becomes 89: relative luminance 0.10).
CHART_DIMMING = 0.35
# The text scale used for an image whose longer side is REFERENCE_SIDE pixels; it grows and shrinks with
# the image between the bounds (below 0.35 Hershey text stops being legible).
REFERENCE_SIDE = 640
REFERENCE_TEXT_SCALE = 0.45
TEXT_SCALE_BOUNDS = (0.35, 2.0)

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_CHART_NAMES = tuple(emotion[:3] for emotion in EMOTIONS)


@dataclass(frozen=True)
class FaceAnnotation:
    """One face to draw.

    box: (x, y, width, height) in pixels of the source image. emotion: the top emotion, one of EMOTIONS
    (another name draws in UNKNOWN_COLOUR). probabilities: 7 values in EMOTIONS order, 0 for a class not
    served. number: shown in the label as "#number": the face's track id when it is on a track (a stream),
    else 1, 2, 3... in reply order. On a track, emotion and probabilities are the track's smoothed ones.
    """

    box: tuple[int, int, int, int]
    emotion: str
    probabilities: tuple[float, ...]
    number: int

    @property
    def top_probability(self) -> float:
        """The probability of `emotion` (0 when it is not one of EMOTIONS)."""
        return self.probabilities[EMOTIONS.index(self.emotion)] if self.emotion in EMOTIONS else 0.0


@dataclass(frozen=True)
class Placement:
    """Where one face's overlays went on the drawn image. label/chart: None when left out."""

    number: int
    box: Rect
    label: Rect | None
    label_text: str
    chart: Rect | None


@dataclass(frozen=True)
class Style:
    """Sizes in pixels (and the Hershey text scale) for one drawn image size."""

    text_scale: float
    text_thickness: int
    line: int  # box outline width
    pad: int  # around label text
    chart_text_scale: float
    chart_row: int  # height of one bar row
    chart_name_width: int  # the "ang" column
    chart_width: int

    @classmethod
    def for_size(cls, width: int, height: int) -> Style:
        """The style for a drawn image of width x height pixels: text scale proportional to its longer side
        (REFERENCE_TEXT_SCALE at REFERENCE_SIDE px, clipped to TEXT_SCALE_BOUNDS), lines 1 px per 320 px."""
        side = max(width, height)
        low, high = TEXT_SCALE_BOUNDS
        text_scale = min(high, max(low, REFERENCE_TEXT_SCALE * side / REFERENCE_SIDE))
        chart_text_scale = max(low, 0.8 * text_scale)
        (name_width, name_height), baseline = cv2.getTextSize("sur", _FONT, chart_text_scale, 1)
        chart_row = name_height + baseline + 1
        return cls(
            text_scale=text_scale,
            text_thickness=1 if text_scale < 0.9 else 2,
            line=max(1, round(side / 320)),
            pad=max(2, round(3 * text_scale)),
            chart_text_scale=chart_text_scale,
            chart_row=chart_row,
            chart_name_width=name_width + 4,
            chart_width=name_width + 4 + 6 * chart_row,
        )

    @property
    def chart_height(self) -> int:
        """Seven rows and a 2 px margin above and below."""
        return self.chart_row * len(EMOTIONS) + 4

    def label_size(self, text: str) -> tuple[int, int]:
        """(width, height) of a label holding text, padding included."""
        (width, height), baseline = cv2.getTextSize(text, _FONT, self.text_scale, self.text_thickness)
        return width + 2 * self.pad, height + baseline + 2 * self.pad


@dataclass(frozen=True)
class Drawing:
    """A drawn image and where each face's overlays went on it."""

    image: np.ndarray
    placements: tuple[Placement, ...]


# ----- colours


def colour_of(emotion: str) -> Colour:
    """The BGR colour of an emotion's box, label and bar."""
    return EMOTION_COLOURS.get(emotion, UNKNOWN_COLOUR)


def relative_luminance(colour: Colour) -> float:
    """WCAG 2 relative luminance (0 black .. 1 white) of an sRGB colour given as BGR 0..255."""
    channels = []
    for value in colour:
        c = value / 255
        channels.append(c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4)
    blue, green, red = channels
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def contrast_ratio(a: Colour, b: Colour) -> float:
    """WCAG 2 contrast ratio of two colours, 1 (same) .. 21 (black on white); text wants >= 4.5."""
    high, low = sorted((relative_luminance(a), relative_luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def text_colour_on(background: Colour) -> Colour:
    """Black or white, whichever contrasts more with background (always >= 4.5:1)."""
    return BLACK if contrast_ratio(BLACK, background) >= contrast_ratio(WHITE, background) else WHITE


# ----- from the frame path's results


def annotations_of(annotated: AnnotatedFrame, tracks: Sequence[TrackedFace] | None = None) -> list[FaceAnnotation]:
    """The faces of a frame-path result in its order (highest detection score first), numbered 1, 2, 3...;
    with tracks (FaceTracker.track's for this frame, one per face) numbered by track id and, when smoothing
    is on, labelled with the track's smoothed emotion and probabilities."""
    faces = []
    for number, face in enumerate(annotated.faces, start=1):
        shown = face.probabilities
        if tracks is not None:
            track = tracks[number - 1]
            number = track.track_id
            if track.smoothed is not None:
                shown = track.smoothed
        probabilities = [0.0] * len(EMOTIONS)
        for index, probability in zip(face.classes, shown):
            probabilities[index] = float(probability)
        box = (face.box.x, face.box.y, face.box.width, face.box.height)
        emotion = EMOTIONS[face.classes[int(np.argmax(shown))]]
        faces.append(FaceAnnotation(box, emotion, tuple(probabilities), number))
    return faces


def draw_annotations(frame: np.ndarray, annotated: AnnotatedFrame, charts: bool = True,
                     tracks: Sequence[TrackedFace] | None = None) -> np.ndarray:
    """A copy of frame with the frame path's faces (on their tracks, when given) drawn on it at the frame's
    own size."""
    return render(frame, annotations_of(annotated, tracks), charts=charts).image


# ----- layout


def scaled_box(box: tuple[int, int, int, int], scale: float) -> Rect:
    """(x1, y1, x2, y2) on an image resized by scale of an (x, y, width, height) box of the source."""
    x, y, width, height = box
    return (round(x * scale), round(y * scale), round((x + width) * scale), round((y + height) * scale))


def overlaps(a: Rect, b: Rect) -> bool:
    """True when two rectangles share at least one pixel."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _grow(rect: Rect, by: int) -> Rect:
    return (rect[0] - by, rect[1] - by, rect[2] + by, rect[3] + by)


def _inside(rect: Rect, width: int, height: int) -> bool:
    return rect[0] >= 0 and rect[1] >= 0 and rect[2] <= width and rect[3] <= height


# The sides of a face box tried for a label (above first, where captions usually are) and for a chart
# (below first: usually clothes, not faces).
LABEL_SIDES = ("above", "below", "right", "left")
CHART_SIDES = ("below", "right", "left", "above")


def _outside_spots(
    around: Rect, size: tuple[int, int], width: int, height: int, sides: Sequence[str]
) -> Iterator[Rect]:
    """Places for a size = (w, h) overlay touching `around` from outside, side by side in the order given,
    each aligned with either end of that side (slid back into the width x height image if it sticks out)."""
    w, h = size
    x1, y1, x2, y2 = around
    for side in sides:
        if side in ("above", "below"):
            top = y1 - h if side == "above" else y2
            for left in (x1, x2 - w):
                left = min(max(left, 0), width - w)
                yield (left, top, left + w, top + h)
        else:
            left = x2 if side == "right" else x1 - w
            for top in (y1, y2 - h):
                top = min(max(top, 0), height - h)
                yield (left, top, left + w, top + h)


def layout(
    faces: Sequence[FaceAnnotation], width: int, height: int, scale: float = 1.0, charts: bool = True
) -> tuple[Placement, ...]:
    """Where each face's box, label and chart go on a width x height drawn image (faces scaled by scale).

    Labels are placed first (every face's, in order), then charts; each overlay takes the first spot that
    lies inside the image and overlaps no face box (grown by the line width) and no overlay placed before.
    """
    style = Style.for_size(width, height)
    boxes = [scaled_box(face.box, scale) for face in faces]
    guarded = [_grow(box, style.line) for box in boxes]  # the outline is drawn centred on the box edge
    taken: list[Rect] = []
    labels: list[tuple[Rect | None, str]] = []
    for index, face in enumerate(faces):
        others = [*guarded[:index], *guarded[index + 1 :]]
        label = _place_label(face, boxes[index], guarded[index], others, taken, style, width, height)
        if label[0] is not None:
            taken.append(label[0])
        labels.append(label)
    placements = []
    for index, face in enumerate(faces):
        chart = None
        if charts:
            size = (style.chart_width, style.chart_height)
            for spot in _outside_spots(guarded[index], size, width, height, CHART_SIDES):
                if _inside(spot, width, height) and not any(overlaps(spot, other) for other in (*guarded, *taken)):
                    chart = spot
                    taken.append(chart)
                    break
        placements.append(Placement(face.number, boxes[index], labels[index][0], labels[index][1], chart))
    return tuple(placements)


def _place_label(
    face: FaceAnnotation,
    box: Rect,
    guarded: Rect,
    others: list[Rect],
    taken: list[Rect],
    style: Style,
    width: int,
    height: int,
) -> tuple[Rect | None, str]:
    full = f"#{face.number} {face.emotion} {face.top_probability:.0%}"
    for text in (full, f"#{face.number}"):
        size = style.label_size(text)
        inner_left, inner_top = box[0] + style.line, box[1] + style.line
        inside_own_box = (inner_left, inner_top, inner_left + size[0], inner_top + size[1])
        fits_inside = inside_own_box[2] <= box[2] - style.line and inside_own_box[3] <= box[3] - style.line
        spots = [*_outside_spots(guarded, size, width, height, LABEL_SIDES)]
        if fits_inside:
            spots.append(inside_own_box)  # last resort: covers the forehead, but no other face
        for spot in spots:
            blocked = [*others, *taken] if spot is inside_own_box else [guarded, *others, *taken]
            if _inside(spot, width, height) and not any(overlaps(spot, other) for other in blocked):
                return spot, text
    return None, full


# ----- drawing


def render(
    image: np.ndarray, faces: Sequence[FaceAnnotation], scale: float = 1.0, charts: bool = True
) -> Drawing:
    """A copy of image (BGR or grey, uint8) resized by scale, with every face drawn on it.

    The input is left untouched; the drawn image is BGR, (round(H * scale), round(W * scale), 3).
    """
    if scale == 1.0:
        canvas = image.copy()
    else:
        size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        canvas = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    if canvas.ndim == 2:
        canvas = cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR)
    height, width = canvas.shape[:2]
    style = Style.for_size(width, height)
    placements = layout(faces, width, height, scale, charts)
    for face, placed in zip(faces, placements):
        x1, y1, x2, y2 = placed.box
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour_of(face.emotion), style.line)
    for face, placed in zip(faces, placements):
        if placed.label is not None:
            _draw_label(canvas, placed.label, placed.label_text, colour_of(face.emotion), style)
        if placed.chart is not None:
            _draw_chart(canvas, placed.chart, face.probabilities, style)
    return Drawing(canvas, placements)


def _draw_label(canvas: np.ndarray, rect: Rect, text: str, colour: Colour, style: Style) -> None:
    x1, y1, x2, y2 = rect
    cv2.rectangle(canvas, (x1, y1), (x2 - 1, y2 - 1), colour, cv2.FILLED)
    (_, text_height), _ = cv2.getTextSize(text, _FONT, style.text_scale, style.text_thickness)
    origin = (x1 + style.pad, y1 + style.pad + text_height)
    cv2.putText(canvas, text, origin, _FONT, style.text_scale, text_colour_on(colour), style.text_thickness,
                cv2.LINE_AA)


def _draw_chart(canvas: np.ndarray, rect: Rect, probabilities: Sequence[float], style: Style) -> None:
    x1, y1, x2, y2 = rect
    panel = canvas[y1:y2, x1:x2]
    panel[:] = (panel * CHART_DIMMING).astype(np.uint8)
    bar_left = x1 + style.chart_name_width
    bar_span = x2 - 2 - bar_left
    for row, (emotion, name, probability) in enumerate(zip(EMOTIONS, _CHART_NAMES, probabilities)):
        top = y1 + 2 + row * style.chart_row
        baseline_y = top + style.chart_row - 2
        cv2.putText(canvas, name, (x1 + 2, baseline_y), _FONT, style.chart_text_scale, WHITE, 1, cv2.LINE_AA)
        bar_end = bar_left + max(1, round(probability * bar_span))
        cv2.rectangle(canvas, (bar_left, top + 2), (bar_end, top + style.chart_row - 2), colour_of(emotion), cv2.FILLED)
