"""Defaults of the frame path, in one place: where weights are found, size limits, thread counts.

The server's ServerConfig, fer-annotate, fer-bench and the client all take their defaults from here; this
module imports nothing heavy, so the client can read its numbers without loading the frame path.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ferstream.model.labels import EMOTIONS, class_indices
from ferstream.model.tta import SERVED_TTA

# 4096² pixels: a 16 MP photo passes; anything larger is refused from its header, before decoding.
MAX_PIXELS = 4096 * 4096
# More faces than this in one frame are a crowd shot, not a conversation; the rest are dropped.
MAX_FACES = 32

# The gRPC message limit follows from the pixel limit (server/limits.py explains why): every raw frame the
# pixel limit admits must fit one message. BGR8 and RGB8 take 3 bytes a pixel (GRAY8 takes 1).
RAW_BYTES_PER_PIXEL = 3
# Everything in a request besides the pixels: frame id, options, the RawImage fields and protobuf tags and
# lengths take well under 100 bytes; 64 KiB leaves room for fields added later.
MESSAGE_OVERHEAD_BYTES = 64 * 1024


def message_limit(max_pixels: int) -> int:
    """The smallest message limit (bytes) that carries every raw frame of up to max_pixels pixels."""
    return max_pixels * RAW_BYTES_PER_PIXEL + MESSAGE_OVERHEAD_BYTES


# fer-server's default --max-message-bytes, which clients check their requests against before sending:
# 4096² x 3 + 65,536 = 50,397,184 bytes (48.1 MiB).
DEFAULT_MAX_MESSAGE_BYTES = message_limit(MAX_PIXELS)


def default_data_dir() -> Path:
    """The shared data folder (datasets/, models/, testdata/): FER_DATA_DIR, else ../shared."""
    return Path(os.environ.get("FER_DATA_DIR", "../shared"))


def default_models_dir() -> Path:
    """Detector weights: FER_MODELS_DIR, else FER_DATA_DIR/models, else where `fer-models download` puts
    them (~/.cache/ferstream/models)."""
    if "FER_MODELS_DIR" in os.environ:
        return Path(os.environ["FER_MODELS_DIR"])
    if "FER_DATA_DIR" in os.environ:
        return Path(os.environ["FER_DATA_DIR"]) / "models"
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "ferstream" / "models"


# --models-dir's help in every command: where default_models_dir() looks.
MODELS_DIR_HELP = ("folder of the detector weights (default: $FER_MODELS_DIR, else $FER_DATA_DIR/models, else "
                   "~/.cache/ferstream/models)")


def default_threads() -> int:
    """Inference threads of one process: the cores, at most 4 (more gave nothing on a 48 px CNN)."""
    return max(1, min(4, os.cpu_count() or 1))


def parse_classes(text: str | None) -> tuple[int, ...]:
    """Class indices in EMOTIONS order from "a,b,c"; None means all. ValueError for unknown names or none."""
    if text is None:
        return tuple(range(len(EMOTIONS)))
    indices = sorted(set(class_indices([item for item in text.split(",") if item.strip()])))
    if not indices:
        raise ValueError("--classes needs at least one class")
    return tuple(indices)


def add_common_arguments(parser: argparse.ArgumentParser, model_help: str | None = None) -> None:
    """Options shared by fer-server and fer-annotate: where the weights are and what is served (each adds
    its own --threads: the two use their threads differently). model_help: --model's help where it takes a
    model tier's name too (left a string; model/tiers.py parse_model_argument reads it), None where it
    takes a file only."""
    parser.add_argument("--models-dir", type=Path, default=None, help=MODELS_DIR_HELP)
    if model_help is None:
        parser.add_argument("--model", type=Path, default=None,
                            help="the fast emotion model's file (default: $FER_MODEL or the shipped model)")
    else:
        parser.add_argument("--model", default=None, metavar="fast|accurate|FILE", help=model_help)
    parser.add_argument("--tta", choices=SERVED_TTA, default=None,
                        help="test-time augmentation of the fast emotion model: none, or flip (each face and its "
                             "mirror image in one batch, about twice the classifier's cost) (default: what the "
                             "model declares; the shipped one: flip)")
    parser.add_argument("--classes", default=None,
                        help="comma-separated subset of classes to answer with, renormalised "
                             f"(default: all of {','.join(EMOTIONS)})")
    parser.add_argument("--max-pixels", type=int, default=MAX_PIXELS,
                        help="largest image accepted, in pixels, checked from the header (default: %(default)s)")
    parser.add_argument("--max-faces", type=int, default=MAX_FACES,
                        help="most faces annotated per frame (default: %(default)s)")
