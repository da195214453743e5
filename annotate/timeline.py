"""Emotion timelines: each face track's probabilities over a video's time, as a CSV table and a PNG plot.

Built from the JSON-lines frame records (annotate/records.py) that both annotate backends produce, so the
in-process and the remote path give the same timeline. Times are the records' `time_ms`: the container's
time of each frame (CAP_PROP_POS_MSEC), never frame index / fps, so a variable-frame-rate video keeps its
timing.

CSV (`PREFIX.csv`), one row per track per frame on which the track's face was found, in frame order:

    time_ms,track_id,angry,disgust,fear,happy,sad,surprise,neutral,emotion
    0.0,1,0.0213,0.0011,0.0402,0.7624,0.0519,0.0113,0.1118,happy

- `time_ms`: the frame's time in the source, milliseconds.
- the seven probabilities: the track's smoothed probabilities (`track_probabilities`); the frame's own when
  smoothing is off. A class the model does not serve (`--classes`) is left empty.
- `emotion`: the most probable of them.

PNG (`PREFIX.png`): one panel per track (the MAX_PANELS tracks seen longest, in track order), the
probabilities stacked over time in seconds, coloured as the renderer colours the emotions
(annotate/draw.py). A track is drawn only where its face was found: a frame without it breaks its band.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ferstream.model.labels import EMOTIONS

from .records import FrameRecord

CSV_COLUMNS = ("time_ms", "track_id", *EMOTIONS, "emotion")
# More panels than this make each too thin to read on a screen; the CSV keeps every track.
MAX_PANELS = 8
# Probabilities are written as the JSON lines write them (records.DECIMALS).
_DECIMALS = 4


@dataclass(frozen=True)
class TimelinePoint:
    """One track on one frame: frame index, time in ms, track id, probabilities (served class name -> 0..1,
    summing to 1) and the most probable class's name."""

    frame: int
    time_ms: float
    track_id: int
    probabilities: dict[str, float]
    emotion: str


@dataclass
class Timeline:
    """The points of every track of one video, gathered frame by frame with `add`.

    start_ms / end_ms: the time of the first and last frame added (faces or not), None before any.
    """

    points: list[TimelinePoint] = field(default_factory=list)
    start_ms: float | None = None
    end_ms: float | None = None

    def add(self, record: FrameRecord) -> None:
        """Takes the tracked faces of one frame record; a record without time_ms (a still image) adds nothing,
        faces on no track (track_id None) are left out."""
        if record.time_ms is None:
            return
        self.start_ms = record.time_ms if self.start_ms is None else min(self.start_ms, record.time_ms)
        self.end_ms = record.time_ms if self.end_ms is None else max(self.end_ms, record.time_ms)
        for face in record.faces:
            if face.track_id is None:
                continue
            shown = dict(face.track_probabilities or face.probabilities)
            emotion = max(shown, key=shown.__getitem__) if face.track_probabilities else face.emotion
            self.points.append(TimelinePoint(record.frame, record.time_ms, face.track_id, shown, emotion))

    @property
    def track_ids(self) -> list[int]:
        """Every track id seen, ascending."""
        return sorted({point.track_id for point in self.points})

    def write_csv(self, path: Path) -> None:
        """The table described in the module docstring; OSError (naming path) when it cannot be written."""
        try:
            with open(path, "w", encoding="utf-8", newline="") as stream:
                writer = csv.writer(stream)
                writer.writerow(CSV_COLUMNS)
                for point in self.points:
                    cells = [f"{point.probabilities[name]:.{_DECIMALS}f}" if name in point.probabilities else ""
                             for name in EMOTIONS]
                    writer.writerow([f"{point.time_ms:.3f}", point.track_id, *cells, point.emotion])
        except OSError as error:
            raise OSError(f"{path}: cannot write ({error.strerror})") from None

    def plot(self, path: Path, title: str = "") -> None:
        """The PNG described in the module docstring (about 8 x (1.4 per panel + 1) inches at 100 dpi).

        OSError (naming path) when it cannot be written. A video without tracked faces gets one empty panel
        that says so.
        """
        from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

        from .draw import colour_of

        lengths = Counter(point.track_id for point in self.points)
        shown = sorted(track for track, _ in lengths.most_common(MAX_PANELS))
        figure = Figure(figsize=(8.0, 1.0 + 1.4 * max(1, len(shown))), dpi=100, layout="constrained")
        axes = figure.subplots(max(1, len(shown)), 1, sharex=True, squeeze=False)[:, 0]
        start_s = (self.start_ms or 0.0) / 1000
        end_s = max((self.end_ms or 0.0) / 1000, start_s + 1e-3)
        served = [name for name in EMOTIONS if any(name in point.probabilities for point in self.points)]
        colours = [_rgb(colour_of(name)) for name in served]
        for ax, track in zip(axes, shown):
            for segment in self._segments(track):
                times = [point.time_ms / 1000 for point in segment]
                bands = [[point.probabilities.get(name, 0.0) for point in segment] for name in served]
                if len(segment) == 1:  # one frame alone: a thin bar, so that it shows at all
                    times = [times[0] - (end_s - start_s) / 400, times[0] + (end_s - start_s) / 400]
                    bands = [band * 2 for band in bands]
                ax.stackplot(times, bands, colors=colours, linewidth=0)
            ax.set_ylim(0, 1)
            ax.set_ylabel(f"track #{track}")
            ax.set_yticks([0, 0.5, 1])
        if not shown:
            axes[0].text(0.5, 0.5, "no tracked face", ha="center", va="center", transform=axes[0].transAxes)
            axes[0].set_yticks([])
        axes[-1].set_xlim(start_s, end_s)
        axes[-1].set_xlabel("time in the video (s)")
        if served:
            handles = [_patch(colour) for colour in colours]
            figure.legend(handles, served, loc="outside lower center", ncols=len(served), frameon=False)
        hidden = len(lengths) - len(shown)
        suffix = f" ({hidden} shorter track(s) in the CSV only)" if hidden else ""
        if title or suffix:
            figure.suptitle(f"{title}{suffix}", fontsize=10)
        try:
            figure.savefig(path)
        except OSError as error:
            raise OSError(f"{path}: cannot write ({error.strerror})") from None

    def _segments(self, track: int) -> list[list[TimelinePoint]]:
        """The track's points split where frames without its face come between two of them."""
        segments: list[list[TimelinePoint]] = []
        for point in (point for point in self.points if point.track_id == track):
            if segments and point.frame == segments[-1][-1].frame + 1:
                segments[-1].append(point)
            else:
                segments.append([point])
        return segments


def timeline_paths(prefix: Path) -> tuple[Path, Path]:
    """(CSV, PNG) paths of a timeline prefix: PREFIX.csv and PREFIX.png (the prefix's own suffix is kept:
    clip.annotated -> clip.annotated.csv)."""
    return prefix.with_name(prefix.name + ".csv"), prefix.with_name(prefix.name + ".png")


def default_prefix(annotated_copy: Path) -> Path:
    """The timeline prefix beside an annotated copy: clip.annotated.avi -> clip.annotated.timeline."""
    return annotated_copy.with_name(f"{annotated_copy.stem}.timeline")


def read_timeline_csv(path: Path | str) -> list[dict[str, str]]:
    """The rows of a timeline CSV as dicts of its columns' text (for tests and users' scripts)."""
    with open(path, encoding="utf-8", newline="") as stream:
        return list(csv.DictReader(stream))


def _rgb(bgr: tuple[int, int, int]) -> tuple[float, float, float]:
    blue, green, red = bgr
    return red / 255, green / 255, blue / 255


def _patch(colour: tuple[float, float, float]):
    from matplotlib.patches import Patch

    return Patch(facecolor=colour)
