"""All of the server's settings in one dataclass, built from the command line (and two env vars)."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from ferstream.training.labels import EMOTIONS, class_indices


def default_models_dir() -> Path:
    """FER_MODELS_DIR, else where `fer-models download` puts weights (~/.cache/ferstream/models)."""
    if "FER_MODELS_DIR" in os.environ:
        return Path(os.environ["FER_MODELS_DIR"])
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "ferstream" / "models"


def default_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 50051
    models_dir: Path = Path()
    # None: the shipped emotion model (or FER_MODEL).
    model_path: Path | None = None
    # Indices into EMOTIONS of the classes served, in EMOTIONS order.
    classes: tuple[int, ...] = tuple(range(len(EMOTIONS)))
    max_streams: int = 16
    max_batch: int = 32
    max_delay_ms: float = 5.0
    max_pixels: int = 4096 * 4096
    max_message_bytes: int = 16 * 1024 * 1024
    max_faces: int = 32
    threads: int = 1
    grace_s: float = 5.0
    log_level: str = "INFO"


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by fer-server and fer-annotate: where the weights are and what is served."""
    parser.add_argument("--models-dir", type=Path, default=None,
                        help="folder with detector weights (default: $FER_MODELS_DIR or ~/.cache/ferstream/models)")
    parser.add_argument("--model", type=Path, default=None,
                        help="emotion model file (default: $FER_MODEL or the shipped model)")
    parser.add_argument("--classes", default=None,
                        help="comma-separated subset of classes to answer with, renormalised "
                             f"(default: all of {','.join(EMOTIONS)})")
    parser.add_argument("--max-pixels", type=int, default=ServerConfig.max_pixels,
                        help="largest image accepted, in pixels, checked from the header (default: %(default)s)")
    parser.add_argument("--max-faces", type=int, default=ServerConfig.max_faces,
                        help="most faces annotated per frame (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=default_threads(),
                        help="torch and OpenCV threads of the worker (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fer-server",
        description="Serve facial emotion recognition over gRPC (ferstream.v1.EmotionService).")
    parser.add_argument("--host", default=ServerConfig.host,
                        help="address to listen on; 0.0.0.0 serves other machines (default: %(default)s)")
    parser.add_argument("--port", type=int, default=ServerConfig.port,
                        help="port; 0 picks a free one (default: %(default)s)")
    add_common_arguments(parser)
    parser.add_argument("--max-streams", type=int, default=ServerConfig.max_streams,
                        help="concurrent StreamAnnotate calls; more get RESOURCE_EXHAUSTED (default: %(default)s)")
    parser.add_argument("--max-batch", type=int, default=ServerConfig.max_batch,
                        help="most face crops classified in one batch (default: %(default)s)")
    parser.add_argument("--max-delay-ms", type=float, default=ServerConfig.max_delay_ms,
                        help="longest wait for other streams' frames to fill a batch (default: %(default)s)")
    parser.add_argument("--max-message-bytes", type=int, default=ServerConfig.max_message_bytes,
                        help="largest request message accepted (default: %(default)s)")
    parser.add_argument("--grace-s", type=float, default=ServerConfig.grace_s,
                        help="on SIGTERM/SIGINT, how long open calls may finish (default: %(default)s)")
    parser.add_argument("--log-level", default=ServerConfig.log_level,
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="(default: %(default)s)")
    return parser


def parse_classes(text: str | None) -> tuple[int, ...]:
    """Class indices in EMOTIONS order; raises ValueError for unknown names or an empty list."""
    if text is None:
        return tuple(range(len(EMOTIONS)))
    indices = sorted(set(class_indices([item for item in text.split(",") if item.strip()])))
    if not indices:
        raise ValueError("--classes needs at least one class")
    return tuple(indices)


def positive(name: str, value: float) -> None:
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """A ServerConfig from parsed arguments; raises ValueError for values that make no sense."""
    for name in ("max_streams", "max_batch", "max_pixels", "max_message_bytes", "max_faces", "threads"):
        positive("--" + name.replace("_", "-"), getattr(args, name))
    if args.max_delay_ms < 0 or args.grace_s < 0:
        raise ValueError("--max-delay-ms and --grace-s cannot be negative")
    return ServerConfig(
        host=args.host,
        port=args.port,
        models_dir=args.models_dir or default_models_dir(),
        model_path=args.model,
        classes=parse_classes(args.classes),
        max_streams=args.max_streams,
        max_batch=args.max_batch,
        max_delay_ms=args.max_delay_ms,
        max_pixels=args.max_pixels,
        max_message_bytes=args.max_message_bytes,
        max_faces=args.max_faces,
        threads=args.threads,
        grace_s=args.grace_s,
        log_level=args.log_level,
    )
