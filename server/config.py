"""All of the server's settings in one dataclass, built from the command line (and two env vars)."""

from __future__ import annotations

import argparse
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from ferstream.model.labels import EMOTIONS
from ferstream.model.tiers import ACCURATE, FAST, TIER_NAMES
from ferstream.commandline import CommandParser, add_version_argument, port_number
from ferstream.pipeline.detectors import DEFAULT_MIN_FACE_PX
from ferstream.auth.tokens import is_loopback, load_tokens
from ferstream.pipeline.settings import (DEFAULT_MAX_MESSAGE_BYTES, MAX_FACES, MAX_PIXELS, add_common_arguments,
                                         default_models_dir, message_limit, parse_classes)
from ferstream.pipeline.tracking import DEFAULT_SMOOTHING_MS

from .limits import check_limits_agree
from .security import TlsFiles


def available_cores() -> int:
    """Cores this process may run on (a container's cpuset, not the whole machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@dataclass(frozen=True)
class ServerConfig:
    """Every setting of one server process. ValueError when --max-message-bytes cannot carry a raw frame of
    --max-pixels (see limits.py)."""

    host: str = "127.0.0.1"
    port: int = 50051
    models_dir: Path = Path()
    # None: the shipped emotion model (or FER_MODEL), the fast tier's CNN.
    model_path: Path | None = None
    # Test-time augmentation of the fast emotion model (model/tta.py); None: the model's declared default.
    tta: str | None = None
    # The model tier (model/tiers.py) of Annotate calls and of stream frames that name none: the accurate
    # tier for photos, where a few more milliseconds per face do not matter, the fast one for live streams.
    annotate_model: str = ACCURATE
    stream_model: str = FAST
    # Indices into EMOTIONS of the classes served, in EMOTIONS order.
    classes: tuple[int, ...] = tuple(range(len(EMOTIONS)))
    max_streams: int = 16
    max_batch: int = 32
    max_delay_ms: float = 5.0
    max_pixels: int = MAX_PIXELS
    # gRPC's receive and send limit; at least message_limit(max_pixels), so that every frame the pixel limit
    # admits, raw included, fits (a message over it ends the whole call, not just its frame).
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_faces: int = MAX_FACES
    # Smallest face, px of the sent image, the detectors keep finding whatever the frame size (detectors.py).
    min_face_px: int = DEFAULT_MIN_FACE_PX
    # Time constant of the face tracks' smoothing (Face.track_scores) in ms for streams that set none; 0: off.
    # Why the default: ferstream.pipeline.tracking.DEFAULT_SMOOTHING_MS.
    track_smoothing_ms: float = DEFAULT_SMOOTHING_MS
    # Classifier threads. One: the detection workers already keep every core busy, and a second classifier
    # thread only waits for a core (docs/performance.md#design-measurements).
    threads: int = 1
    # Decode-and-detect threads; 0: one per core available (divided among the --replicas processes).
    detect_workers: int = 0
    grace_s: float = 5.0
    log_level: str = "INFO"
    # Server processes (replicas, each a whole server with its own model) sharing the port (SO_REUSEPORT);
    # see replicas.py. Not threads: --threads and --detect-workers are the threads of each.
    replicas: int = 1
    # Set only inside a --replicas process. A lone server turns gRPC's default SO_REUSEPORT off, so that a
    # second server started on a busy port fails instead of silently taking half of its connections.
    share_port: bool = False
    # None: plaintext, which is refused off loopback unless insecure is set.
    tls: TlsFiles | None = None
    insecure: bool = False
    # Empty: no authentication. Kept out of repr so a logged config never shows a token.
    auth_tokens: tuple[str, ...] = field(default=(), repr=False)
    # A stream that sends no frame for this long is ended (DEADLINE_EXCEEDED), freeing its slot.
    idle_timeout_s: float = 60.0
    # 0: no limit. Otherwise streams end (UNAVAILABLE) after this long, so clients reconnect, possibly to
    # another replica: long-lived streams would otherwise pin load to whichever replica took them first.
    max_stream_seconds: float = 0.0
    # None: no metrics endpoint.
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        check_limits_agree(self.max_pixels, self.max_message_bytes)


def build_parser() -> argparse.ArgumentParser:
    """fer-server's argument parser; every option has its help and default."""
    parser = CommandParser(
        prog="fer-server",
        description="Serve facial emotion recognition over gRPC (ferstream.v1.EmotionService).")
    add_version_argument(parser)
    parser.add_argument("--host", default=ServerConfig.host,
                        help="address or host name to listen on; 0.0.0.0 serves other machines "
                             "(default: %(default)s)")
    parser.add_argument("--port", type=port_number, default=ServerConfig.port,
                        help="port, 1-65535; 0 picks a free one (default: %(default)s)")
    parser.add_argument("--replicas", type=int, default=ServerConfig.replicas, metavar="N",
                        help="server processes (replicas) sharing the port, each a whole server with its own "
                             "model, its --threads and --detect-workers capped at cores/N; the kernel spreads "
                             "connections over them. Processes, not threads (default: %(default)s)")
    add_common_arguments(parser)
    parser.add_argument("--annotate-model", choices=TIER_NAMES, default=ServerConfig.annotate_model,
                        help="emotion model of Annotate calls that name none (AnnotateOptions.model) "
                             "(default: %(default)s)")
    parser.add_argument("--stream-model", choices=TIER_NAMES, default=ServerConfig.stream_model,
                        help="emotion model of StreamAnnotate frames that name none (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=ServerConfig.threads,
                        help="threads of the classifier runtime, in each --replicas process; decoding and "
                             "detection run on --detect-workers threads, one each (default: %(default)s)")
    parser.add_argument("--min-face-px", type=int, default=ServerConfig.min_face_px,
                        help="height in pixels of the sent image of the smallest face to find, whatever the frame "
                             "size, for requests that set none; smaller costs more detection time on large frames "
                             "(default: %(default)s)")
    parser.add_argument("--detect-workers", type=int, default=ServerConfig.detect_workers,
                        help="threads that decode and detect frames in parallel, OpenCV single-threaded in each; "
                             "0: one per core (default: %(default)s)")
    parser.add_argument("--max-streams", type=int, default=ServerConfig.max_streams,
                        help="concurrent StreamAnnotate calls; more get RESOURCE_EXHAUSTED (default: %(default)s)")
    parser.add_argument("--max-batch", type=int, default=ServerConfig.max_batch,
                        help="most face crops classified in one batch (default: %(default)s)")
    parser.add_argument("--max-delay-ms", type=float, default=ServerConfig.max_delay_ms,
                        help="longest wait for other streams' frames to fill a batch (default: %(default)s)")
    parser.add_argument("--track-smoothing-ms", type=float, default=ServerConfig.track_smoothing_ms,
                        help="time constant, in ms of frame time, of the smoothing of each stream face's "
                             "probabilities over its track (Face.track_scores) when a request sets none; "
                             "0: off (default: %(default)s)")
    parser.add_argument("--max-message-bytes", type=int, default=None,
                        help="largest request message accepted; must carry a raw BGR frame of --max-pixels "
                             "(default: --max-pixels x 3 + 65536, 50397184 for the default --max-pixels)")
    parser.add_argument("--grace-s", type=float, default=ServerConfig.grace_s,
                        help="on SIGTERM/SIGINT, how long open calls may finish (default: %(default)s)")
    parser.add_argument("--log-level", default=ServerConfig.log_level,
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="least severe log messages written to stderr; DEBUG adds one line per refused "
                             "frame (default: %(default)s)")
    add_security_arguments(parser)
    return parser


def add_security_arguments(parser: argparse.ArgumentParser) -> None:
    """Transport security, tokens, per-stream limits and the metrics endpoint (see docs/deploy.md, "Security")."""
    security = parser.add_argument_group("security")
    security.add_argument("--tls-cert", type=Path, metavar="PEM", help="serve TLS with this certificate chain")
    security.add_argument("--tls-key", type=Path, metavar="PEM", help="private key of --tls-cert")
    security.add_argument("--tls-client-ca", type=Path, metavar="PEM",
                          help="mutual TLS: require client certificates signed by this CA (needs --tls-cert)")
    security.add_argument("--insecure", action="store_true",
                          help="allow plaintext on a non-loopback --host (anyone on the network can read frames)")
    security.add_argument("--auth-tokens", type=Path, metavar="FILE",
                          help="require 'authorization: Bearer <token>' on the emotion RPCs; one token per line "
                               "(default: $FER_AUTH_TOKENS, comma- or newline-separated; unset: no tokens)")
    limits = parser.add_argument_group("stream limits")
    limits.add_argument("--idle-timeout-s", type=float, default=ServerConfig.idle_timeout_s,
                        help="end a stream that sends no frame for this long (default: %(default)s)")
    limits.add_argument("--max-stream-seconds", type=float, default=ServerConfig.max_stream_seconds,
                        help="end every stream after this long with UNAVAILABLE, so clients reconnect and load "
                             "rebalances across replicas; 0: no limit (default: %(default)s)")
    metrics = parser.add_argument_group("metrics")
    metrics.add_argument("--metrics-port", type=int, default=None,
                         help="serve Prometheus metrics over HTTP at /metrics on this port; 0 picks a free one "
                              "(default: off)")
    metrics.add_argument("--metrics-host", default=ServerConfig.metrics_host,
                         help="address of the metrics endpoint, which has no authentication (default: %(default)s)")


def security_from_args(args: argparse.Namespace) -> tuple[TlsFiles | None, tuple[str, ...]]:
    """TLS files and tokens; ValueError for half-given TLS or plaintext off loopback without --insecure."""
    if (args.tls_cert is None) != (args.tls_key is None):
        raise ValueError("--tls-cert and --tls-key go together")
    if args.tls_client_ca is not None and args.tls_cert is None:
        raise ValueError("--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key")
    tls = TlsFiles(args.tls_cert, args.tls_key, args.tls_client_ca) if args.tls_cert is not None else None
    check_resolvable(args.host)
    if tls is None and not args.insecure and not is_loopback(args.host):
        raise ValueError(f"refusing to serve plaintext on non-loopback host {args.host}: give --tls-cert and "
                         "--tls-key, or --insecure to accept that anyone on the network can read and send frames")
    return tls, load_tokens(args.auth_tokens)


def check_resolvable(host: str) -> None:
    """ValueError naming --host when it is neither an address nor a name this machine can resolve."""
    try:
        socket.getaddrinfo(host.strip("[]"), None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        reason = error.strerror if isinstance(error, socket.gaierror) else str(error)
        raise ValueError(f"--host {host}: cannot resolve this name to an address ({reason})") from None


def positive(name: str, value: float) -> None:
    """ValueError naming the flag when value is not above 0."""
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """A ServerConfig from parsed arguments; raises ValueError for values that make no sense."""
    for name in ("max_streams", "max_batch", "max_pixels", "max_faces", "min_face_px", "threads"):
        positive("--" + name.replace("_", "-"), getattr(args, name))
    if args.detect_workers < 0:
        raise ValueError(f"--detect-workers cannot be negative, got {args.detect_workers}")
    max_message_bytes = message_limit(args.max_pixels) if args.max_message_bytes is None else args.max_message_bytes
    positive("--max-message-bytes", max_message_bytes)
    check_limits_agree(args.max_pixels, max_message_bytes)
    if args.max_delay_ms < 0 or args.grace_s < 0:
        raise ValueError("--max-delay-ms and --grace-s cannot be negative")
    if not 0 <= args.track_smoothing_ms < float("inf"):
        raise ValueError(f"--track-smoothing-ms must be a finite number of milliseconds >= 0, "
                         f"got {args.track_smoothing_ms}")
    positive("--replicas", args.replicas)
    positive("--idle-timeout-s", args.idle_timeout_s)
    if args.max_stream_seconds < 0:
        raise ValueError("--max-stream-seconds cannot be negative")
    if args.metrics_port is not None and not 0 <= args.metrics_port <= 65535:
        raise ValueError(f"--metrics-port must be within 0-65535, got {args.metrics_port}")
    tls, tokens = security_from_args(args)
    return ServerConfig(
        host=args.host,
        port=args.port,
        models_dir=args.models_dir or default_models_dir(),
        model_path=args.model,
        tta=args.tta,
        annotate_model=args.annotate_model,
        stream_model=args.stream_model,
        classes=parse_classes(args.classes),
        max_streams=args.max_streams,
        max_batch=args.max_batch,
        max_delay_ms=args.max_delay_ms,
        max_pixels=args.max_pixels,
        max_message_bytes=max_message_bytes,
        max_faces=args.max_faces,
        min_face_px=args.min_face_px,
        track_smoothing_ms=args.track_smoothing_ms,
        threads=args.threads,
        detect_workers=args.detect_workers,
        grace_s=args.grace_s,
        log_level=args.log_level,
        replicas=args.replicas,
        tls=tls,
        insecure=args.insecure,
        auth_tokens=tokens,
        idle_timeout_s=args.idle_timeout_s,
        max_stream_seconds=args.max_stream_seconds,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
    )
