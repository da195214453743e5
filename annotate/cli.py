"""fer-annotate: annotate image and video files offline, in-process or through a fer-server.

One input file: writes an annotated copy (drawn by annotate/draw.py), one JSON line per frame in the
format of annotate/records.py, and for a video an emotion timeline per face track (annotate/timeline.py:
CSV and PNG). Several inputs or a folder: a batch (annotate/batch.py), written to one JSON-lines file and
one CSV table, with a progress bar and a summary; a file that fails is reported and skipped. The work is
annotate/run.py's one path; --server swaps its backend for a remote server, opened by the RemoteOpener that
main is given: the client's (ferstream.client.remote, the path `fer-client --headless` takes too), handed in
by the installed command (ferstream.annotate_command), since the client sits above this package.
Exit codes: 0 done, 1 an input could not be annotated, an output not written or the server failed,
2 bad usage (a missing input, an option the mode does not take, an unknown option), 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import cv2

from ferstream.commandline import (EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, CommandParser,
                                   add_version_argument, error_line, fraction, non_negative_float, positive_int,
                                   seconds, whole_number_between)
from ferstream.pipeline.detectors import DetectorKind
from ferstream.pipeline.errors import FrameError
from ferstream.pipeline.settings import add_common_arguments, default_models_dir, default_threads, parse_classes
from ferstream.pipeline.tracking import DEFAULT_SMOOTHING_MS

from .media import (MediaError, check_input, default_output, output_clash, probe, quiet_opencv_logs,
                    read_frames)
from .records import STDOUT, FrameRecord, display_name
from .timeline import default_prefix, timeline_paths

if TYPE_CHECKING:
    from .run import Backend, RemoteOpener

# Default seconds to wait for --server before giving up (as fer-client --connect-timeout's).
CONNECT_TIMEOUT_S = 10.0
# Of the frames sent with --server (as fer-client --jpeg-quality's default and floor, client/library.py:
# from 75 up at least 95 % of faces keep their top emotion).
DEFAULT_JPEG_QUALITY = 85
MIN_JPEG_QUALITY = 75

PROG = "fer-annotate"


def build_parser() -> argparse.ArgumentParser:
    """fer-annotate's command line; every option is described in --help."""
    parser = CommandParser(
        prog=PROG,
        description="Annotate the faces and emotions of images and videos, offline. One input file: writes "
                    "an annotated copy beside it, one JSON line per frame (the format of fer-client "
                    "--headless) and, for a video, each face track's emotions over time (NAME.timeline.csv "
                    "and .png). Several inputs or a folder: a batch, written to one JSON-lines file (--jsonl) "
                    "and/or one CSV table (--csv) only, with a progress bar and a summary; a file that cannot "
                    "be annotated is reported on one line and skipped. Folders are searched recursively, each "
                    "real folder once, for images and videos by content (the first bytes, not the name): "
                    "JPEG, PNG, BMP, WebP, HEIC, AVIF, TIFF and GIF images and video containers; hidden files "
                    "(.name) and fer-annotate's own outputs (NAME.annotated.*) are left alone, and other files "
                    "are left out with a line per kind. "
                    "Runs the model in this process, or on a fer-server with --server.",
        epilog="Exit codes: 0 done, 1 an input could not be annotated (in a batch: any file), an output not "
               "written or the server failed, 2 bad usage, 130 interrupted.")
    parser.add_argument("inputs", type=Path, nargs="+", metavar="FILE_OR_FOLDER",
                        help="images (JPEG, PNG, BMP, WebP; HEIC, AVIF, TIFF and GIF through FFmpeg) and videos "
                             "that OpenCV reads, and folders of them; the kind is read from the content, not the name")
    parser.add_argument("--out", type=Path, default=None,
                        help="one input file only: the annotated copy; its suffix picks the format (.jpg, "
                             ".png... for an image; .avi, .mp4, .mkv, .mov for a video, which keeps the "
                             "input's audio) (default: beside the input, NAME.annotated.SUFFIX)")
    lines = parser.add_mutually_exclusive_group()
    lines.add_argument("--jsonl", type=Path, default=None, metavar="PATH",
                       help="write the JSON lines here, '-' for stdout (one file: default the --out path with "
                            ".jsonl; a batch: one file for every input, each record naming its file)")
    lines.add_argument("--json", action="store_true", help="write the JSON lines to stdout instead of a file")
    parser.add_argument("--csv", type=Path, default=None, metavar="PATH",
                        help="also write one CSV row per face: file, frame, time_ms, x, y, width, height, "
                             "detection_score, emotion, the seven probabilities and track_id (a batch writes "
                             "--jsonl, --csv or both)")
    timeline = parser.add_mutually_exclusive_group()
    timeline.add_argument("--timeline", type=Path, default=None, metavar="PREFIX",
                          help="one video file only: write each face track's probabilities over the video's time to "
                               "PREFIX.csv (one row per track per frame) and plot them to PREFIX.png (default: "
                               "beside --out, NAME.annotated.timeline.csv and .png)")
    timeline.add_argument("--no-timeline", action="store_true", help="one video file only: write no timeline")
    parser.add_argument("--detector", choices=[kind.name.lower() for kind in DetectorKind], default=None,
                        help="face detector (default: the most accurate available; with --server, the server's)")
    parser.add_argument("--min-score", type=fraction, default=0.0, metavar="0..1",
                        help="drop faces the detector scores below this (default: 0, the detector's own threshold)")
    parser.add_argument("--track-smoothing-ms", type=non_negative_float, default=DEFAULT_SMOOTHING_MS, metavar="MS",
                        help="in a video, the time constant over which each face track's probabilities are "
                             "smoothed (track_probabilities), in the video's own time; 0 turns smoothing off "
                             "(default: %(default)s, as fer-server)")
    remote = parser.add_argument_group(
        "remote backend", "run the frames through a fer-server instead of this process (--models-dir, --model, "
                          "--classes, --max-pixels, --max-faces and --threads are then the server's)")
    remote.add_argument("--server", default=None, metavar="HOST:PORT",
                        help="the fer-server to use (gRPC target, as fer-client --server); a bearer token is "
                             "taken from $FER_TOKEN; for TLS use fer-client --headless")
    remote.add_argument("--connect-timeout", type=seconds, default=CONNECT_TIMEOUT_S, metavar="SECONDS",
                        help="with --server, give up when it cannot be reached for this long (default: %(default)s)")
    remote.add_argument("--jpeg-quality", type=whole_number_between(MIN_JPEG_QUALITY, 100),
                        default=DEFAULT_JPEG_QUALITY,
                        metavar=f"{MIN_JPEG_QUALITY}..100",
                        help="with --server, JPEG quality of the video frames sent (a photo goes as its file); "
                             "from 75 up at least 95 %% of faces keep their top emotion, as with fer-client "
                             "(default: %(default)s)")
    add_common_arguments(parser, "emotion model: accurate (a real-world expression model on 112x112 colour faces "
                                 "with the fast one; several times its cost) or fast (a 48x48 grey CNN), or the "
                                 "fast model's file (default: accurate for images, fast for videos, as the "
                                 "server's Annotate and StreamAnnotate)")
    parser.add_argument("--threads", type=positive_int, default=default_threads(),
                        help="threads of the classifier runtime and of OpenCV: frames are decoded, detected and "
                             "classified in turn on one thread, each step using this many (default: the cores, "
                             "up to 4)")
    add_version_argument(parser)
    return parser


def main(argv: list[str] | None, remote: RemoteOpener) -> int:
    """Runs fer-annotate on argv (None: sys.argv's); returns the exit code. remote opens the backend of
    --server (annotate.run.RemoteOpener)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        classes = parse_classes(args.classes)
    except ValueError as error:
        parser.error(str(error))
    if (problem := remote_usage_problem(args)) is not None:
        _error(problem)
        return EXIT_USAGE
    quiet_opencv_logs()
    try:
        if len(args.inputs) == 1 and not args.inputs[0].is_dir():
            check_input(args.inputs[0])
            return annotate(args, args.inputs[0], classes, remote)
        if (problem := batch_usage_problem(args)) is not None:
            _error(problem)
            return EXIT_USAGE
        from .batch import find_inputs

        found = find_inputs(args.inputs)
        if (problem := output_clash(found.files, {"--jsonl": args.jsonl, "--csv": args.csv})) is not None:
            _error(problem)
            return EXIT_USAGE
        for kind, paths in found.skipped.items():
            _say(f"{PROG}: left out {len(paths)} {kind} file(s), no image or video it reads (first: {paths[0]})")
        return annotate_many(args, found.files, classes, remote)
    except MediaError as error:  # an input path that does not exist or cannot be read: nothing was done
        _error(str(error))
        return EXIT_USAGE
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED


def batch_usage_problem(args: argparse.Namespace) -> str | None:
    """Why args cannot run as a batch (one line), or None when they can."""
    single = [option for option, given in (("--out", args.out), ("--timeline", args.timeline)) if given]
    if single:
        return f"{' and '.join(single)} take one input file; a batch writes --jsonl and --csv"
    if args.jsonl is None and not args.json and args.csv is None:
        return "several inputs or a folder make a batch, which writes only --jsonl and --csv: give at least one"
    return None


def annotate(args: argparse.Namespace, path: Path, classes: tuple[int, ...], remote: RemoteOpener) -> int:
    """One input file, with every expected failure turned into one line on stderr."""
    from .batch import CsvFaceWriter, one_line, open_csv
    from .run import Outputs, annotate_media

    records: list[FrameRecord] = []
    try:
        media = probe(path)
        out = args.out or default_output(media)
        jsonl = STDOUT if args.json else (args.jsonl or out.with_suffix(".jsonl"))
        prefix = None if args.no_timeline or media.still else (args.timeline or default_prefix(out))
        timeline_csv, timeline_png = timeline_paths(prefix) if prefix is not None else (None, None)
        outputs = {"--out": out, "--jsonl": jsonl, "--csv": args.csv, "--timeline (its .csv)": timeline_csv,
                   "--timeline (its .png)": timeline_png}
        if (problem := output_clash([path], outputs)) is not None:
            _error(problem)
            return EXIT_USAGE
        with _backend(args, classes, remote) as backend:
            result = annotate_media(media, read_frames(media, args.max_pixels), backend,
                                    Outputs(out, jsonl, prefix), on_record=records.append)
        if args.csv is not None:
            with open_csv(args.csv) as stream:
                table = CsvFaceWriter(stream)
                for record in records:
                    table.write(display_name(path), record)
    except FrameError as error:
        _error(f"{path}: {error.message}")
        return EXIT_FAILED
    except BrokenPipeError:  # the reader of --json stopped early (`| head`): nobody is left to tell
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except (MediaError, OSError, ValueError, RuntimeError) as error:  # RuntimeError: also the remote ServerError
        _error(str(error))
        return EXIT_FAILED
    except cv2.error as error:  # a file OpenCV opened but cannot decode
        _error(f"{path}: {one_line(error)}")
        return EXIT_FAILED
    where = "stdout" if str(jsonl) == STDOUT else str(jsonl)
    timeline = f", timeline {prefix}.csv/.png ({result.tracks} track(s))" if prefix is not None else ""
    table_text = f", {args.csv}" if args.csv is not None else ""
    refused = f", {result.errors} refused by the server" if result.errors else ""
    _say(f"{PROG}: {result.frames} frame(s), {result.faces} face(s){left_out(result.faces_omitted)}{refused} -> "
         f"{out}, {where}{table_text}{timeline}")
    return EXIT_OK


def annotate_many(args: argparse.Namespace, files: list[Path], classes: tuple[int, ...],
                  remote: RemoteOpener) -> int:
    """A batch: every file into one JSON-lines file and one CSV, a progress bar on a terminal, one line
    per failed file, and a summary; exit 1 when any file failed."""
    from tqdm import tqdm

    from .batch import annotate_batch

    if not files:
        _error(f"no image or video files in {', '.join(str(path) for path in args.inputs)}")
        return EXIT_FAILED
    jsonl = STDOUT if args.json else args.jsonl

    def report(message: str) -> None:
        tqdm.write(error_line(PROG, display_name(message)), file=sys.stderr)  # above the bar, which stays whole

    def progress(paths: list[Path]) -> tqdm:
        # disable=None: a bar only on a terminal, so logs and pipes get the error lines and summary alone.
        return tqdm(paths, desc=PROG, unit="file", file=sys.stderr, disable=None, dynamic_ncols=True)

    try:
        with _backend(args, classes, remote) as backend:
            result = annotate_batch(files, backend, args.max_pixels, jsonl, args.csv, report, progress)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except (OSError, RuntimeError) as error:  # an output that cannot be written; the remote ServerError
        _error(str(error))
        return EXIT_FAILED
    written = ", ".join(("stdout" if str(path) == STDOUT else str(path)) for path in (jsonl, args.csv)
                        if path is not None)
    _say(f"{PROG}: {result.done} file(s) done, {result.failed} failed, {result.faces} face(s)"
         f"{left_out(result.faces_omitted)} in {result.frames} frame(s) -> {written}")
    return EXIT_FAILED if result.failed else EXIT_OK


def left_out(faces_omitted: int) -> str:
    """" (and N more left out by the face limit, --max-faces)" for a summary line; "" when none were."""
    if not faces_omitted:
        return ""
    return f" (and {faces_omitted} more left out by the face limit, --max-faces)"


def _say(line: str) -> None:
    """One line on stderr, a file name's bytes that are not UTF-8 shown as records.display_name shows them."""
    print(display_name(line), file=sys.stderr)


def _error(message: str) -> None:
    """An error line on stderr (error_line's format), names shown as _say shows them."""
    _say(error_line(PROG, message))


def remote_usage_problem(args: argparse.Namespace) -> str | None:
    """Why options that shape the in-process model cannot go with --server (the server's models serve there),
    or None."""
    from ferstream.model.tiers import TIER_NAMES

    if args.server is None:
        return None
    if args.tta is not None:
        return "--tta sets the in-process model's test-time augmentation; with --server the server's applies"
    if args.model is not None and args.model not in TIER_NAMES:
        return ("--model FILE loads a model in this process; with --server name a model the server holds "
                "(fast, accurate)")
    return None


@contextmanager
def _backend(args: argparse.Namespace, classes: tuple[int, ...], remote: RemoteOpener) -> Iterator[Backend]:
    """The backend args ask for: the frame path in this process, or with --server the one remote opens,
    connected (closed at the end of the block). A RuntimeError (the client's ServerError) when the server
    cannot be reached."""
    from ferstream.model.tiers import TIER_NAMES, parse_model_argument

    tier, model_file = parse_model_argument(args.model)
    if args.server is None:
        from .run import InProcessBackend
        from ferstream.pipeline.framepath import DetectOptions, load_frame_path, set_thread_counts

        set_thread_counts(args.threads)
        frame_path = load_frame_path(args.models_dir or default_models_dir(), model_file, classes,
                                     args.max_pixels, args.max_faces, models=(tier,) if tier else TIER_NAMES,
                                     tta=args.tta)
        detector = DetectorKind[args.detector.upper()] if args.detector else None
        yield InProcessBackend(frame_path, DetectOptions(detector, args.min_score, model=tier or ""),
                               args.track_smoothing_ms)
        return
    from .run import RemoteRequest

    request = RemoteRequest(args.server, args.connect_timeout, os.environ.get("FER_TOKEN"), args.detector,
                            args.min_score, args.jpeg_quality, args.track_smoothing_ms, tier or "")
    with remote(request) as backend:
        yield backend
