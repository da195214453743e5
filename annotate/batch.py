"""fer-annotate on a batch: files and folders in, one JSON-lines file and one flat CSV table out.

Folders are searched recursively, each folder's entries in sorted order, for images and videos by content (the first
bytes, never the name): JPEG, PNG, BMP and WebP images (what the frame path decodes), videos by their container's
signature, and the images OpenCV's FFmpeg reads (GIF, HEIC/HEIF, AVIF, TIFF): whatever a single run takes. Hidden files
and folders (a name starting with ".") and fer-annotate's own outputs (a name with ".annotated." in it, as
photo.annotated.jpg) are left alone; other files are left out too, and named by kind (find_inputs' skipped) so that
nothing is left out without a word. A file named on the command line is always annotated: one that is no image or video
fails like a broken one. No file is annotated twice, and no folder searched twice: links that lead back into a folder
(or to one searched already) are not followed again.

Each file is annotated in full before any of its lines or rows are written, so a file that fails part of
the way adds nothing to the outputs; its one-line reason goes to stderr and the batch goes on.

CSV columns (CSV_COLUMNS), one row per face: the input file (records.display_name: a byte of its name
that is not UTF-8 is written as \\xNN), the 0-based frame, the frame's time in its
source in ms (empty for a still image), the face box x, y, width, height in pixels of the frame, the
detector's score 0-1, the most probable served emotion, the seven probabilities in EMOTIONS order (empty
for a class not served), and the face's track id within its video (empty for a still image).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

import cv2

from ferstream.model.labels import EMOTIONS
from ferstream.pipeline.errors import FrameError

from .media import MediaError, check_input, is_still_image, probe, read_frames
from .records import DECIMALS, FaceRecord, FrameRecord, JsonLinesWriter, display_name, open_jsonl
from .run import Backend, Outputs, annotate_media

CSV_COLUMNS: tuple[str, ...] = ("file", "frame", "time_ms", "x", "y", "width", "height", "detection_score",
                                "emotion", *EMOTIONS, "track_id")
# In the names of what fer-annotate writes beside an input (media.default_output, timeline.default_prefix:
# photo.annotated.jpg, clip.annotated.timeline.png): folder searches leave these out.
OWN_OUTPUT = ".annotated."
# Images OpenCV's FFmpeg reads (as a one-frame video), by puremagic's type: GIF, HEIC/HEIF (the iPhone's
# default), AVIF and TIFF. A single run takes them, so folder runs do too.
FFMPEG_IMAGES = ("image/gif", "image/heic", "image/heif", "image/avif", "image/tiff")
# Enough of a file's start for every signature puremagic knows of the video containers (MP4's ftyp box
# at byte 4, AVI's RIFF header, Matroska's EBML id, GIF...).
_SIGNATURE_BYTES = 4096


def unread_kind(path: Path) -> str | None:
    """None when path's first bytes are an image the frame path decodes (JPEG, PNG, BMP, WebP), a video
    container, or an image OpenCV's FFmpeg reads (GIF, HEIC/HEIF, AVIF, TIFF: FFMPEG_IMAGES), as a single
    run takes it. Else the kind of file it is, for people: its type by signature ("application/pdf"), or
    by name when the content is not known (".txt", "no suffix"); "unreadable" for a file that cannot be read."""
    import puremagic

    try:
        with open(path, "rb") as stream:
            head = stream.read(_SIGNATURE_BYTES)
    except OSError:
        return "unreadable"
    if is_still_image(head):
        return None
    try:
        mime = puremagic.from_string(head, mime=True)
    except (puremagic.PureError, ValueError):  # no known signature (or an empty file)
        mime = ""
    if mime.startswith("video/") or mime in FFMPEG_IMAGES:
        return None
    return mime or path.suffix.lower() or "no suffix"


@dataclass(frozen=True)
class Inputs:
    """What find_inputs found: the files to annotate, in order, and the files of the folders left out,
    by kind (unread_kind), each in the order found."""

    files: list[Path]
    skipped: dict[str, list[Path]]


def _folder_files(folder: Path, visited: set[Path], skipped: dict[str, list[Path]]) -> Iterator[Path]:
    """The media files below folder, recursively, each folder's entries sorted; hidden entries and
    fer-annotate's own outputs left out, other files that are no media added to skipped by kind.

    visited: the real paths (links resolved) of the folders searched so far, this one added: a folder
    reached again, by a link back into the tree (ln -s . loop) or to a folder searched already, is skipped,
    so every real folder is searched once and the search ends.
    """
    try:
        real = folder.resolve(strict=True)
        entries = sorted(folder.iterdir())
    except (OSError, RuntimeError):  # an unreadable subfolder (or a link loop): nothing in it can be read
        return
    if real in visited:
        return
    visited.add(real)
    for entry in entries:
        if entry.name.startswith(".") or OWN_OUTPUT in entry.name:
            continue
        if entry.is_dir():
            yield from _folder_files(entry, visited, skipped)
        elif entry.is_file():
            if (kind := unread_kind(entry)) is None:
                yield entry
            else:
                skipped.setdefault(kind, []).append(entry)


def find_inputs(paths: Sequence[Path]) -> Inputs:
    """The files a batch annotates: each path that is a file, and the media files found in each folder
    (see the module docstring), in the order given, none twice; and the folders' files left out, by kind.

    MediaError (naming the path) for a path that does not exist or cannot be read, before any work.
    """
    found: dict[Path, Path] = {}  # resolved -> as the user will see it
    visited: set[Path] = set()
    skipped: dict[str, list[Path]] = {}
    for path in paths:
        if path.is_dir():
            candidates: Iterable[Path] = _folder_files(path, visited, skipped)
        else:
            check_input(path)
            candidates = (path,)
        for candidate in candidates:
            found.setdefault(candidate.resolve(), candidate)
    return Inputs(list(found.values()), skipped)


class CsvFaceWriter:
    """Writes one CSV row per face (CSV_COLUMNS) of FrameRecords, after a header row."""

    def __init__(self, stream: IO[str]) -> None:
        self._writer = csv.writer(stream, lineterminator="\n")
        self._writer.writerow(CSV_COLUMNS)
        self._stream = stream
        self.rows = 0

    def write(self, file: str, record: FrameRecord) -> None:
        """The record's faces as rows; none for a frame without faces. OSError when it cannot be written."""
        for face in record.faces:
            self._writer.writerow(face_row(file, record, face))
            self.rows += 1
        self._stream.flush()


def face_row(file: str, record: FrameRecord, face: FaceRecord) -> list[object]:
    """One CSV row (CSV_COLUMNS) for a face of a frame of file."""
    x, y, width, height = face.box
    time_ms = "" if record.time_ms is None else round(float(record.time_ms), 3)
    probabilities = ["" if name not in face.probabilities else round(float(face.probabilities[name]), DECIMALS)
                     for name in EMOTIONS]
    track_id = "" if face.track_id is None else int(face.track_id)
    return [file, record.frame, time_ms, int(x), int(y), int(width), int(height),
            round(float(face.detection_score), DECIMALS), face.emotion, *probabilities, track_id]


@dataclass(frozen=True)
class BatchResult:
    """What a batch did: files annotated, files that failed, the faces and frames of the annotated, and the
    faces the face limit left out of them."""

    done: int
    failed: int
    faces: int
    frames: int
    faces_omitted: int = 0


def open_csv(path: Path) -> IO[str]:
    """path opened for writing; OSError naming the path when it cannot be created."""
    try:
        return open(path, "w", encoding="utf-8", newline="")
    except OSError as error:
        raise OSError(f"{path}: cannot write ({error.strerror})") from None


def annotate_batch(files: Sequence[Path], backend: Backend, max_pixels: int, jsonl: Path | str | None,
                   csv_path: Path | None, report: Callable[[str], None],
                   progress: Callable[[Iterable[Path]], Iterable[Path]] = lambda files: files) -> BatchResult:
    """Annotates each file through backend into one JSON-lines file (each record naming its file) and one
    CSV table (either None for none).

    report(message) gets one line per file that failed (the file and why) and the batch goes on: a file
    that is no readable image or video, a damaged one, or one with a frame over max_pixels. progress
    wraps the files' iteration (a progress bar). Raises OSError when an output cannot be written, and what
    the backend raises for anything but the file (the remote backend's ServerError: a RuntimeError).
    """
    done = failed = faces = frames = omitted = 0
    with ExitStack() as opened:
        lines: JsonLinesWriter | None = opened.enter_context(open_jsonl(jsonl)) if jsonl is not None else None
        table = CsvFaceWriter(opened.enter_context(open_csv(csv_path))) if csv_path is not None else None
        for path in progress(files):
            records: list[FrameRecord] = []
            try:
                media = probe(path)
                result = annotate_media(media, read_frames(media, max_pixels), backend, Outputs(),
                                        on_record=records.append)
            except FrameError as error:
                failed += 1
                report(f"{path}: {error.message}")
                continue
            except (MediaError, OSError, ValueError, cv2.error) as error:
                failed += 1
                report(str(error) if isinstance(error, MediaError) else f"{path}: {one_line(error)}")
                continue
            name = display_name(path)
            for record in records:
                if lines is not None:
                    lines.write(replace(record, file=name))
                if table is not None:
                    table.write(name, record)
            done += 1
            faces += result.faces
            frames += result.frames
            omitted += result.faces_omitted
    return BatchResult(done, failed, faces, frames, omitted)


def one_line(error: BaseException) -> str:
    """An exception's message on one line (OpenCV's span several), or its type's name when it has none."""
    text = " ".join(str(error).split())
    return text or type(error).__name__
