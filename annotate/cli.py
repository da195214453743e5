"""fer-annotate: annotate an image or a video file offline, in-process or through a fer-server.

Writes an annotated copy (drawn by annotate/draw.py), one JSON line per frame in the format of
annotate/records.py, and for a video an emotion timeline per face track (annotate/timeline.py: CSV and
PNG). The work is annotate/run.py's one path; --server swaps its backend for a remote server
(ferstream.client.headless, the path `fer-client --headless` takes too).
Exit codes: 0 done, 1 the input could not be annotated, an output not written or the server failed,
2 bad usage (a missing input, a folder, an unknown option), 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ferstream.pipeline.commandline import (EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE,
                                            add_version_argument, print_error)
from ferstream.pipeline.detectors import DetectorKind
from ferstream.pipeline.errors import FrameError
from ferstream.pipeline.settings import add_common_arguments, default_models_dir, default_threads, parse_classes
from ferstream.pipeline.tracking import DEFAULT_SMOOTHING_MS, check_smoothing_ms

from .media import MediaError, check_input, default_output, probe, quiet_opencv_logs, read_frames
from .records import STDOUT
from .timeline import default_prefix

if TYPE_CHECKING:
    from .run import Backend

# Default seconds to wait for --server before giving up (as fer-client --connect-timeout's).
CONNECT_TIMEOUT_S = 10.0
# Of the frames sent with --server (as fer-client --jpeg-quality's default).
DEFAULT_JPEG_QUALITY = 85

PROG = "fer-annotate"


def fraction(text: str) -> float:
    """argparse type: a number within 0-1."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def smoothing_ms(text: str) -> float:
    """argparse type: a time constant in milliseconds, finite and >= 0."""
    try:
        return check_smoothing_ms(float(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def quality(text: str) -> int:
    """argparse type: a JPEG quality, a whole number within 10-100."""
    value = int(text)
    if not 10 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{text} is not between 10 and 100")
    return value


def seconds(text: str) -> float:
    """argparse type: a positive, finite number of seconds."""
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return value


def build_parser() -> argparse.ArgumentParser:
    """fer-annotate's command line; every option is described in --help."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Annotate the faces and emotions of an image or a video, offline: writes an annotated "
                    "copy, one JSON line per frame (the format of fer-client --headless) and, for a video, "
                    "each face track's emotions over time (NAME.timeline.csv and .png). Runs the model in "
                    "this process, or on a fer-server with --server.",
        epilog="Exit codes: 0 done, 1 the input could not be annotated, an output not written or the server "
               "failed, 2 bad usage.")
    parser.add_argument("input", type=Path, metavar="IMAGE_OR_VIDEO",
                        help="a JPEG, PNG, BMP or WebP image, or a video or animated image that OpenCV reads; "
                             "the kind is read from the content, not the name")
    parser.add_argument("--out", type=Path, default=None,
                        help="the annotated copy; its suffix picks the format (.jpg, .png... for an image; .avi, "
                             ".mp4, .mkv, .mov for a video) (default: beside the input, NAME.annotated.SUFFIX)")
    lines = parser.add_mutually_exclusive_group()
    lines.add_argument("--jsonl", type=Path, default=None, metavar="PATH",
                       help="write the JSON lines here, '-' for stdout (default: the --out path with .jsonl)")
    lines.add_argument("--json", action="store_true", help="write the JSON lines to stdout instead of a file")
    timeline = parser.add_mutually_exclusive_group()
    timeline.add_argument("--timeline", type=Path, default=None, metavar="PREFIX",
                          help="for a video, write each face track's probabilities over the video's time to "
                               "PREFIX.csv (one row per track per frame) and plot them to PREFIX.png (default: "
                               "beside --out, NAME.annotated.timeline.csv and .png)")
    timeline.add_argument("--no-timeline", action="store_true", help="write no timeline")
    parser.add_argument("--detector", choices=[kind.name.lower() for kind in DetectorKind], default=None,
                        help="face detector (default: the most accurate available; with --server, the server's)")
    parser.add_argument("--min-score", type=fraction, default=0.0, metavar="0..1",
                        help="drop faces the detector scores below this (default: 0, the detector's own threshold)")
    parser.add_argument("--track-smoothing-ms", type=smoothing_ms, default=DEFAULT_SMOOTHING_MS, metavar="MS",
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
    remote.add_argument("--jpeg-quality", type=quality, default=DEFAULT_JPEG_QUALITY, metavar="10..100",
                        help="with --server, JPEG quality of the frames sent (default: %(default)s)")
    add_common_arguments(parser)
    parser.add_argument("--threads", type=int, default=default_threads(),
                        help="OpenCV and classifier threads: frames are decoded, detected and classified in "
                             "turn on one thread, each step using this many (default: %(default)s, the cores "
                             "up to 4)")
    add_version_argument(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs fer-annotate; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        classes = parse_classes(args.classes)
    except ValueError as error:
        parser.error(str(error))
    quiet_opencv_logs()
    try:
        check_input(args.input)
    except MediaError as error:
        print_error(PROG, str(error))
        return EXIT_USAGE
    try:
        return annotate(args, classes)
    except KeyboardInterrupt:
        print_error(PROG, "interrupted")
        return EXIT_INTERRUPTED


def annotate(args: argparse.Namespace, classes: tuple[int, ...]) -> int:
    """The work behind main(), with every expected failure turned into one line on stderr."""
    from .run import Outputs, annotate_media

    try:
        media = probe(args.input)
        out = args.out or default_output(media)
        if out.resolve() == args.input.resolve():
            raise MediaError(f"{out}: --out would overwrite the input")
        jsonl = STDOUT if args.json else (args.jsonl or out.with_suffix(".jsonl"))
        prefix = None if args.no_timeline or media.still else (args.timeline or default_prefix(out))
        with _backend(args, classes) as backend:
            result = annotate_media(media, read_frames(media, args.max_pixels), backend, Outputs(out, jsonl, prefix))
    except FrameError as error:
        print_error(PROG, f"{args.input}: {error.message}")
        return EXIT_FAILED
    except BrokenPipeError:  # the reader of --json stopped early (`| head`): nobody is left to tell
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except (MediaError, OSError, ValueError, RuntimeError) as error:  # RuntimeError: also the remote ServerError
        print_error(PROG, str(error))
        return EXIT_FAILED
    where = "stdout" if str(jsonl) == STDOUT else str(jsonl)
    timeline = f", timeline {prefix}.csv/.png ({result.tracks} track(s))" if prefix is not None else ""
    refused = f", {result.errors} refused by the server" if result.errors else ""
    print(f"{PROG}: {result.frames} frame(s), {result.faces} face(s){refused} -> {out}, {where}{timeline}",
          file=sys.stderr)
    return EXIT_OK


@contextmanager
def _backend(args: argparse.Namespace, classes: tuple[int, ...]) -> Iterator[Backend]:
    """The backend args ask for: the frame path in this process, or with --server a connected remote one
    (closed at the end of the block). ServerError (a RuntimeError) when the server cannot be reached."""
    options_detector = DetectorKind[args.detector.upper()] if args.detector else None
    if args.server is None:
        from .run import InProcessBackend
        from ferstream.pipeline.framepath import DetectOptions, load_frame_path, set_thread_counts

        set_thread_counts(args.threads)
        frame_path = load_frame_path(args.models_dir or default_models_dir(), args.model, classes,
                                     args.max_pixels, args.max_faces)
        yield InProcessBackend(frame_path, DetectOptions(options_detector, args.min_score), args.track_smoothing_ms)
        return
    # The remote backend is the client's (gRPC); this CLI only wires it in, the pipeline never imports it.
    from ferstream.client.headless import RemoteBackend, ServerError, connect
    from ferstream.client.library import EmotionClient
    from ferstream.client.session import target_problem

    if (problem := target_problem(args.server)) is not None:
        raise ServerError(problem)
    with EmotionClient(args.server.strip(), token=os.environ.get("FER_TOKEN")) as client:
        connect(client, args.connect_timeout)
        yield RemoteBackend(client, args.detector, args.min_score, args.jpeg_quality, args.track_smoothing_ms)


if __name__ == "__main__":
    sys.exit(main())
