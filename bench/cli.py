"""fer-bench: throughput and latency of ferstream, one subcommand per question.

  fer-bench stream      concurrent StreamAnnotate clients against a server (spawned, or --server)
  fer-bench classifier  the emotion CNN alone, shipped model against the reference VGG
  fer-bench detectors   Haar, SSD and YuNet: ms per frame, recall and precision, plus a bar chart
  fer-bench reference   the reference demo's pipeline in-process, against our served throughput
  fer-bench tracking    what face tracks and their smoothing add per stream frame

With --markdown-out FILE every command also writes its report (command line, machine with its CPU
features, table) into FILE as a section named by the command line: running the same command again
replaces that section, and the rest of the file stays as it is. docs/performance.md is made this way.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from ferstream.client.messages import DETECTORS, MODELS
from ferstream.client.window import DEFAULT_MAX_IN_FLIGHT
from ferstream.commandline import (EXIT_INTERRUPTED, CommandParser, add_version_argument, non_negative_float,
                                   positive_float, positive_int, positive_int_list, print_error)
from ferstream.model.formchoice import kernel_caps
from ferstream.pipeline.settings import MODELS_DIR_HELP, default_threads

from .paths import default_data_dir, default_models_dir, faces_dir

DEFAULT_SECONDS = 10.0


def add_stream_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the commands that stream to a server (stream, reference)."""
    parser.add_argument("--server", metavar="HOST:PORT", action="append", default=None,
                        help="a running fer-server (default: start one on loopback, and measure its CPU time); "
                             "`stream` takes it more than once to compare addresses, e.g. a server directly and "
                             "through a proxy")
    parser.add_argument("--server-threads", type=positive_int, default=None,
                        help="--threads of the started server: threads of its classifier runtime "
                             "(default: fer-server's, 1)")
    parser.add_argument("--detector", choices=DETECTORS, default=None,
                        help="face detector the streams ask for (default: the server's default)")
    parser.add_argument("--model", choices=MODELS, default="",
                        help="emotion model the streams ask for (default: the server's for streams, fast)")
    parser.add_argument("--streams", type=positive_int, default=1, help="concurrent streams (default: %(default)s)")
    parser.add_argument("--fps", type=non_negative_float, default=0.0,
                        help="frames offered per second per stream; 0 sends each frame as soon as the previous one "
                             "is answered (default: %(default)s)")
    parser.add_argument("--in-flight", type=positive_int, default=DEFAULT_MAX_IN_FLIGHT,
                        help="frames each stream keeps sent and unanswered at most (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    """fer-bench's command line: one subcommand per measurement; every option is described in --help."""
    parser = CommandParser(prog="fer-bench", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           epilog="Exit codes: 0 done, 1 a measurement failed, 2 bad usage, 130 interrupted.")
    add_version_argument(parser)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON document instead of a Markdown table")
    common.add_argument("--data-dir", type=Path, default=None,
                        help="shared data folder with testdata/faces (default: $FER_DATA_DIR or ../shared)")
    common.add_argument("--models-dir", type=Path, default=None, help=MODELS_DIR_HELP)
    common.add_argument("--seconds", type=positive_float, default=DEFAULT_SECONDS,
                        help="how long each measurement runs (default: %(default)s)")
    common.add_argument("--markdown-out", type=Path, default=None, metavar="FILE",
                        help="also write the report into this Markdown file as the section of this command line "
                             "(the same command run again replaces it; the rest of the file is kept)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help="what to measure")

    stream = commands.add_parser("stream", parents=[common], help="concurrent streams against a server",
                                 description="Concurrent StreamAnnotate clients sending the test photos as "
                                             "640x480 JPEGs: answered fps, drops, latency, server CPU per frame.")
    add_stream_arguments(stream)
    stream.add_argument("--rounds", type=positive_int, default=1,
                        help="with several --server: runs per address, in turns, every other round in reverse "
                             "order (default: %(default)s)")

    classifier = commands.add_parser("classifier", parents=[common], help="the emotion CNN alone",
                                     description="faces/s and CPU ms/face of the served model in the serving "
                                                 "runtimes and in PyTorch, of the first shipped model's "
                                                 "architecture (vgg ×0.25) and of the reference 13.1 M VGG, per "
                                                 "batch size and thread count.")
    classifier.add_argument("--model", default=None, metavar="accurate|FILE",
                            help="the fast tier's served model, .onnx or a PyTorch model file (default: the "
                                 "shipped model), or `accurate`: the accurate tier and its expression model's "
                                 "forms instead")
    classifier.add_argument("--unfolded", action="store_true",
                            help="also time the model in PyTorch with batch norm as trained, not folded")
    classifier.add_argument("--batch-sizes", type=positive_int_list, default=[1, 8, 32, 128],
                            help="comma-separated batch sizes (default: 1,8,32,128)")
    classifier.add_argument("--threads", type=positive_int_list, default=[1, 2],
                            help="comma-separated thread counts, each measured: threads of the classifier runtimes "
                                 "and of PyTorch alike (default: 1,2)")

    detectors = commands.add_parser("detectors", parents=[common], help="Haar, SSD and YuNet compared",
                                    description="ms per 640x480 frame, recall and precision at IoU >= 0.5 on the "
                                                "annotated photos, and a PNG bar chart.")
    detectors.add_argument("--chart", type=Path, default=Path("detectors.png"),
                           help="where the bar chart goes (default: %(default)s)")
    detectors.add_argument("--threads", type=positive_int, default=default_threads(),
                           help="threads of OpenCV, which runs the detectors (default: the cores, up to 4)")

    reference = commands.add_parser("reference", parents=[common], help="the reference pipeline vs. our server",
                                    description="The reference demo's per-frame pipeline (700x400, SSD 300x300, "
                                                "VGG per face) in-process, then `stream` on the same frames; "
                                                "--seconds applies to each.")
    reference.add_argument("--threads", type=positive_int, default=os.cpu_count() or 1,
                           help="threads of PyTorch and OpenCV in the reference pipeline (default: every core)")
    add_stream_arguments(reference)

    tracking = commands.add_parser("tracking", parents=[common], help="the cost of face tracks per frame",
                                   description="ms per stream frame of the face tracker and of the Face messages' "
                                               "track fields, on faces drifting with jitter.")
    tracking.add_argument("--faces", type=positive_int, default=4, help="faces per frame (default: %(default)s)")
    return parser


def typed_command(argv: list[str]) -> str:
    """The command line as typed, led by the kernel caps it ran under (formchoice.KERNEL_CAPS), so that running
    the line again measures the same thing."""
    caps = [f"{name}={value}" for name, value in kernel_caps().items()]
    return shlex.join([*caps, "fer-bench", *argv])


def section_key(argv: list[str]) -> str:
    """The name of a command's --markdown-out section: its command line (with its kernel caps) without the
    --markdown-out option, so the same measurement replaces its own section whichever file it is written to,
    and one capped at AVX2 has a section of its own."""
    kept: list[str] = []
    skip_next = False
    for argument in argv:
        if skip_next:
            skip_next = False
        elif argument == "--markdown-out":
            skip_next = True
        elif not argument.startswith("--markdown-out="):
            kept.append(argument)
    return typed_command(kept)


def run_command(args: argparse.Namespace, command_line: str, key: str) -> None:
    """Runs the chosen measurement and prints its report (a Markdown table, or JSON with --json); with
    --markdown-out, also writes it as the section named key of that file."""
    import cv2
    import torch

    from .photos import load_test_frames
    from .report import print_report

    data_dir = args.data_dir or default_data_dir()
    models_dir = args.models_dir or default_models_dir()
    frames = load_test_frames(faces_dir(data_dir))
    # The bench's own thread pools; each measurement below sets what it measures explicitly.
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    jpegs = [frame.jpeg for frame in frames]

    def report(result: object, table: str) -> None:
        print_report(command_line, result, table, args.json, args.markdown_out, key)

    servers = getattr(args, "server", None) or []
    if args.command == "stream" and len(servers) > 1:
        from .stream import StreamSettings, comparison_table, run_stream_comparison

        settings = StreamSettings(args.streams, args.fps, args.seconds, args.detector, args.in_flight, args.model)
        result = run_stream_comparison(jpegs, settings, servers, args.rounds)
        report(result, comparison_table(result))
    elif args.command == "stream":
        from .stream import StreamSettings, run_stream_bench, stream_table

        settings = StreamSettings(args.streams, args.fps, args.seconds, args.detector, args.in_flight, args.model)
        result = run_stream_bench(jpegs, settings, servers[0] if servers else None, models_dir, args.server_threads)
        report(result, stream_table(result))
    elif args.command == "classifier":
        if args.model == "accurate":
            from .accurate import accurate_table, run_accurate_bench

            result = run_accurate_bench(frames, args.batch_sizes, args.threads, args.seconds)
            report(result, accurate_table(result))
        else:
            from .classifier import classifier_table, run_classifier_bench

            model = None if args.model in (None, "fast") else Path(args.model)
            result = run_classifier_bench(frames, model, args.batch_sizes, args.threads, args.seconds,
                                          args.unfolded)
            report(result, classifier_table(result))
    elif args.command == "detectors":
        from .detectors import IOU_MATCH, DetectorBench, detector_table, run_detector_bench, write_chart
        from .photos import FRAME_SIZE

        cv2.setNumThreads(args.threads)
        scores = run_detector_bench(frames, models_dir, args.seconds)
        write_chart(scores, args.chart)
        result = DetectorBench(FRAME_SIZE, IOU_MATCH, scores, str(args.chart))
        chart = f"Chart: {args.chart}"
        if args.markdown_out is not None:  # the chart itself, linked from where the Markdown file lies
            chart = f"![detectors]({os.path.relpath(args.chart, args.markdown_out.parent)})"
        report(result, detector_table(result) + f"\n\n{chart}")
    elif args.command == "reference":
        from .reference import reference_table, run_reference_bench
        from .stream import StreamSettings

        settings = StreamSettings(args.streams, args.fps, args.seconds, args.detector, args.in_flight, args.model)
        result = run_reference_bench(jpegs, models_dir, args.threads, settings, servers[0] if servers else None,
                                     args.server_threads)
        report(result, reference_table(result))
    elif args.command == "tracking":
        from .tracking import run_tracking_bench, tracking_table

        result = run_tracking_bench(args.faces, args.seconds)
        report(result, tracking_table(result))


def main(argv: list[str] | None = None) -> int:
    """Runs fer-bench; returns the exit code (errors are one line on stderr)."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    servers = getattr(args, "server", None) or []
    if getattr(args, "rounds", 1) > 1 and len(servers) < 2:
        parser.error("--rounds compares addresses: give --server two or more times")
    if args.command == "reference" and len(servers) > 1:
        parser.error("reference takes one --server")
    import grpc

    from .server_process import BenchError

    try:
        run_command(args, typed_command(argv), section_key(argv))
    except (BenchError, OSError, ValueError) as error:
        print_error("fer-bench", str(error))
        return 1
    except grpc.RpcError as error:
        print_error("fer-bench", f"the server answered {error.code().name}: {error.details()}")
        return 1
    except KeyboardInterrupt:
        print_error("fer-bench", "interrupted")
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
