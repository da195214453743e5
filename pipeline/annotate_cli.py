"""fer-annotate: run the frame path on an image or a video file, offline, without a server.

Writes an annotated copy (boxes, emotions and probability charts drawn by pipeline/draw.py) and one JSON
line per frame in the format of pipeline/records.py, the one `fer-client --headless` writes too.
Exit codes: 0 done, 1 the input could not be annotated or an output not written, 2 bad usage (a missing
input, a folder, an unknown option), 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from ferstream.model.labels import EMOTIONS

from .commandline import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, add_version_argument, print_error
from .detectors import DetectorKind
from .errors import FrameError
from .media import (Media, MediaError, check_input, default_output, open_video_writer, probe, quiet_opencv_logs,
                    read_frames, write_image)
from .records import STDOUT, FrameRecord, face_record_from_result, open_jsonl
from .settings import add_common_arguments, default_models_dir, parse_classes
from .tracking import DEFAULT_SMOOTHING_MS, FaceTracker, check_smoothing_ms

if TYPE_CHECKING:  # the frame path loads the model runtime; --help and --version must not wait for it
    from .framepath import AnnotatedFrame, DetectOptions, FramePath
    from .media import Frame
    from .tracking import TrackedFace

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


def build_parser() -> argparse.ArgumentParser:
    """fer-annotate's command line; every option is described in --help."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Annotate the faces and emotions of an image or a video, offline: writes an annotated "
                    "copy and one JSON line per frame (the format of fer-client --headless).",
        epilog="Exit codes: 0 done, 1 the input could not be annotated or an output not written, 2 bad usage.")
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
    parser.add_argument("--detector", choices=[kind.name.lower() for kind in DetectorKind], default=None,
                        help="face detector (default: the most accurate available)")
    parser.add_argument("--min-score", type=fraction, default=0.0, metavar="0..1",
                        help="drop faces the detector scores below this (default: 0, the detector's own threshold)")
    parser.add_argument("--track-smoothing-ms", type=smoothing_ms, default=DEFAULT_SMOOTHING_MS, metavar="MS",
                        help="in a video, the time constant over which each face track's probabilities are "
                             "smoothed (track_probabilities), in the video's own time; 0 turns smoothing off "
                             "(default: %(default)s, as fer-server)")
    add_common_arguments(parser)
    add_version_argument(parser)
    return parser


def frame_record(frame: Frame, annotated: AnnotatedFrame, tracked: list[TrackedFace] | None) -> FrameRecord:
    """The JSON-lines record of one annotated frame; tracked: each face's track, in face order (None: no
    tracks, as for a still image)."""
    faces = [face_record_from_result(face, EMOTIONS, None if tracked is None else tracked[index])
             for index, face in enumerate(annotated.faces)]
    return FrameRecord(frame.index, annotated.width, annotated.height, faces, frame.time_ms)


def annotate_file(media: Media, out: Path, jsonl: Path | str, frame_path: FramePath, options: DetectOptions,
                  smoothing_ms: float = DEFAULT_SMOOTHING_MS) -> tuple[int, int]:
    """Annotates every frame of media into out and jsonl; (frames, faces). A video's faces are followed on
    tracks (pipeline/tracking.py) in the video's time, their probabilities smoothed with smoothing_ms.

    Nothing is written before the first frame has been annotated, so a file that cannot be decoded leaves
    no empty outputs behind. Raises FrameError (bad or oversized input), MediaError or OSError (outputs).
    """
    from .draw import draw_annotations

    tracker = None if media.still else FaceTracker()
    frame_count = face_count = 0
    with ExitStack() as outputs:
        writer = lines = None
        for frame in read_frames(media, frame_path.max_pixels):
            annotated = frame_path.annotate(frame.image, options)
            tracked = None if tracker is None else tracker.track(annotated.faces, frame.time_ms, smoothing_ms)
            drawn = draw_annotations(frame.image, annotated)
            if lines is None:
                lines = outputs.enter_context(open_jsonl(jsonl))
            if media.still:
                write_image(out, drawn)
            else:
                if writer is None:
                    height, width = drawn.shape[:2]
                    writer = open_video_writer(out, (width, height), media.fps)
                    outputs.callback(writer.release)
                writer.write(drawn)
            lines.write(frame_record(frame, annotated, tracked))
            frame_count += 1
            face_count += len(annotated.faces)
    if frame_count == 0:
        raise MediaError(f"{media.path}: no frame could be read")
    return frame_count, face_count


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
    from .framepath import DetectOptions, load_frame_path, set_thread_counts

    try:
        media = probe(args.input)
        out = args.out or default_output(media)
        if out.resolve() == args.input.resolve():
            raise MediaError(f"{out}: --out would overwrite the input")
        jsonl = STDOUT if args.json else (args.jsonl or out.with_suffix(".jsonl"))
        options = DetectOptions(DetectorKind[args.detector.upper()] if args.detector else None, args.min_score)
        set_thread_counts(args.threads)
        frame_path = load_frame_path(args.models_dir or default_models_dir(), args.model, classes,
                                     args.max_pixels, args.max_faces)
        frames, faces = annotate_file(media, out, jsonl, frame_path, options, args.track_smoothing_ms)
    except FrameError as error:
        print_error(PROG, f"{args.input}: {error.message}")
        return EXIT_FAILED
    except BrokenPipeError:  # the reader of --json stopped early (`| head`): nobody is left to tell
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except (MediaError, OSError, ValueError, RuntimeError) as error:
        print_error(PROG, str(error))
        return EXIT_FAILED
    where = "stdout" if str(jsonl) == STDOUT else str(jsonl)
    print(f"{PROG}: {frames} frame(s), {faces} face(s) -> {out}, {where}", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
