"""fer-client: the Tk app, or --headless annotation of a video into files.

Exit codes: 0 done, 1 the server failed us, 2 bad arguments or an unreadable source/output, 130 interrupted.
Every error is one line on stderr.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import NamedTuple

import cv2

from ferstream.client.capture import FrameSource, SourceError, open_source
from ferstream.client.library import EmotionClient, default_target, token_problem
from ferstream.client.messages import DEFAULT_JPEG_QUALITY, DETECTORS, MIN_JPEG_QUALITY, MODELS
from ferstream.client.session import StreamOptions, target_problem
from ferstream.commandline import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    CommandParser,
    add_version_argument,
    fraction,
    positive_int,
    print_error,
    seconds,
    whole_number_between,
)

PROG = "fer-client"
EXIT_SERVER = EXIT_FAILED


def build_parser() -> argparse.ArgumentParser:
    """fer-client's arguments; every option carries its help text."""
    parser = CommandParser(
        prog=PROG,
        description="Real-time facial emotion recognition client: a window showing the annotated video, "
        "or --headless annotation of every frame into a video and JSON lines.",
        epilog="Exit codes: 0 done, 1 the server failed, 2 bad arguments or an unreadable source or output, "
        "130 interrupted.",
    )
    add_version_argument(parser)
    parser.add_argument(
        "--server",
        type=server_target,
        default=default_target(),
        metavar="TARGET",
        help="the fer-server to use: HOST:PORT, or several as ipv4:HOST:PORT,HOST:PORT or dns:///NAME:PORT "
        "(streams are spread round-robin); not an http:// URL (default: $FER_SERVER or %(default)s)",
    )
    parser.add_argument(
        "--source",
        default="0",
        metavar="CAMERA_OR_FILE",
        help="camera index, video file or image file (default: camera 0)",
    )
    parser.add_argument("--detector", choices=DETECTORS, help="face detector (default: the server's)")
    parser.add_argument("--model", choices=MODELS, default="",
                        help="emotion model: fast (a 48x48 grey CNN) or accurate (a real-world expression model "
                             "on 112x112 colour faces with the fast one; several times its cost per face) "
                             "(default: the server's, fast for live video and accurate for a still image)")
    parser.add_argument(
        "--min-score",
        type=fraction,
        default=0.0,
        metavar="0..1",
        help="drop faces scored below this (default: 0, the detector's own threshold)",
    )
    parser.add_argument(
        "--jpeg-quality",
        type=whole_number_between(MIN_JPEG_QUALITY, 100),
        default=DEFAULT_JPEG_QUALITY,
        metavar=f"{MIN_JPEG_QUALITY}..100",
        help=f"JPEG quality of the video and camera frames sent (a photo goes as its file); from {MIN_JPEG_QUALITY} "
        "up at least 95 %% of faces keep the top emotion of the uncompressed frame (docs/model-card.md) "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--snapshot-dir",
        type=Path,
        default=Path("."),
        metavar="DIR",
        help="where the window's Snapshot button saves PNGs (default: the current folder)",
    )
    security = parser.add_argument_group("security (for servers that require it)")
    security.add_argument("--tls-ca", type=Path, metavar="PEM", help="connect with TLS, trusting these roots")
    security.add_argument("--client-cert", type=Path, metavar="PEM",
                          help="mutual TLS: present this client certificate chain (with --client-key)")
    security.add_argument("--client-key", type=Path, metavar="PEM", help="private key of --client-cert")
    security.add_argument("--server-name", metavar="NAME",
                          help="the name the server's TLS certificate must carry, when it is not --server's host "
                          "(e.g. connecting by IP address or through a proxy) (default: --server's host)")
    security.add_argument(
        "--token",
        default=os.environ.get("FER_TOKEN"),
        help="bearer token sent as 'authorization' metadata (default: $FER_TOKEN)",
    )
    headless = parser.add_argument_group("headless mode")
    headless.add_argument("--headless", action="store_true", help="no window: annotate every frame of --source")
    headless.add_argument("--out", type=Path, metavar="VIDEO",
                          help="write the annotated video here (.mp4, .m4v, .mov, .avi or .mkv; an image source "
                          "takes .jpg, .png, .bmp or .webp); the same path as fer-annotate --server")
    headless.add_argument("--jsonl", type=Path, metavar="FILE", help="write one JSON line of faces per frame here")
    headless.add_argument("--max-faces", type=positive_int, default=0, metavar="N",
                          help="the most faces annotated per frame, up to the server's --max-faces; a frame's JSON "
                          "line counts those left out in faces_omitted (default: the server's limit)")
    headless.add_argument(
        "--connect-timeout",
        type=seconds,
        default=10.0,
        metavar="SECONDS",
        help="give up when the server cannot be reached for this long (default: %(default)s)",
    )
    return parser


def server_target(text: str) -> str:
    """argparse type for --server: the target, stripped; an http:// URL or other non-gRPC address is refused
    with a one-line reason."""
    problem = target_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return text.strip()


def main(argv: Sequence[str] | None = None) -> int:
    """Runs fer-client; returns its exit code (see the module docstring)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_opencv()
    if args.headless and args.out is None and args.jsonl is None:
        parser.error("--headless needs --out and/or --jsonl")
    if not args.headless and (args.out or args.jsonl or args.max_faces):
        parser.error("--out, --jsonl and --max-faces are for --headless mode")
    if (args.client_cert is None) != (args.client_key is None):
        parser.error("--client-cert and --client-key go together")
    if args.server_name is not None and args.tls_ca is None and args.client_cert is None:
        parser.error("--server-name is for TLS connections (with --tls-ca)")
    if (problem := token_problem(args.token)) is not None:
        return _fail(f"--token or $FER_TOKEN: {problem}", EXIT_USAGE)
    if args.headless and (problem := _output_problem(args)) is not None:
        return _fail(problem, EXIT_USAGE)
    try:
        paths = (args.tls_ca, args.client_key, args.client_cert)
        tls = _TlsMaterial(*(path.read_bytes() if path else None for path in paths))
        source = open_source(args.source)
    except OSError as error:
        return _fail(f"{error.filename}: {error.strerror}", EXIT_USAGE)
    except SourceError as error:
        return _fail(str(error), EXIT_USAGE)
    connect = partial(_make_client, tls=tls, token=args.token, server_name=args.server_name)
    try:
        if args.headless:
            return _run_headless(args, source, connect(args.server))
        return _run_app(args, source, connect)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED)


def _output_problem(args: argparse.Namespace) -> str | None:
    """Why --out and --jsonl cannot be written (one line): one names the --source file, or both one file."""
    from ferstream.annotate.media import output_clash

    source = [] if args.source.strip().isdigit() else [Path(args.source).expanduser()]
    return output_clash(source, {"--out": args.out, "--jsonl": args.jsonl})


def _quiet_opencv() -> None:
    """OpenCV and FFmpeg log their own warnings for a missing camera or a broken file; ours say it once."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET, read when FFmpeg first opens
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_FATAL)


class _TlsMaterial(NamedTuple):
    root_certificates: bytes | None
    private_key: bytes | None
    certificate_chain: bytes | None


def _make_client(target: str, tls: _TlsMaterial, token: str | None, server_name: str | None) -> EmotionClient:
    return EmotionClient(target, root_certificates=tls.root_certificates, private_key=tls.private_key,
                         certificate_chain=tls.certificate_chain, token=token, server_name=server_name)


def _fail(message: str, code: int) -> int:
    print_error(PROG, message)
    return code


def _run_headless(args: argparse.Namespace, source: FrameSource, client: EmotionClient) -> int:
    from ferstream.client.headless import HeadlessSettings, OutputError, run_headless
    from ferstream.client.remote import ServerError

    settings = HeadlessSettings(
        output=args.out,
        jsonl=args.jsonl,
        detector=args.detector,
        min_detection_score=args.min_score,
        jpeg_quality=args.jpeg_quality,
        model=args.model,
        max_faces=args.max_faces,
    )
    source.close()  # it was opened to check it; run_headless reads it again (a camera cannot be opened twice)
    with client:
        if not client.wait_ready(args.connect_timeout):
            # gRPC's reason says whether nothing answered or a TLS handshake failed (and why: an untrusted
            # certificate, a name that is not the certificate's).
            reason = client.connection_problem()
            return _fail(f"cannot reach the server at {args.server}" + (f": {reason}" if reason else ""),
                         EXIT_SERVER)
        try:
            result = run_headless(client, args.source, settings)
        except OutputError as error:
            return _fail(str(error), EXIT_USAGE)
        except ServerError as error:
            return _fail(str(error), EXIT_SERVER)
    left_out = (f" (and {result.faces_omitted} more left out by the face limit, --max-faces)"
                if result.faces_omitted else "")
    print(f"{PROG}: annotated {result.frames} frames, {result.faces} faces{left_out}", file=sys.stderr)
    return 0


def _run_app(args: argparse.Namespace, source: FrameSource, connect: Callable[[str], EmotionClient]) -> int:
    import tkinter as tk

    from ferstream.client.app import ClientApp

    close_requested = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: close_requested.set())
    try:
        root = tk.Tk()
    except tk.TclError as error:
        source.close()
        return _fail(f"cannot open a window ({error}); use --headless without a screen", EXIT_USAGE)
    options = StreamOptions(
        detector=args.detector, min_detection_score=args.min_score, jpeg_quality=args.jpeg_quality, model=args.model
    )
    ClientApp(
        root, source, connect, args.server, options, snapshot_dir=args.snapshot_dir, close_requested=close_requested
    )
    root.mainloop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
