"""Where the bench finds its inputs: the shared data folder and the detector weights.

FER_DATA_DIR (default ../shared beside the repository) holds testdata/faces; FER_MODELS_DIR
(default $FER_DATA_DIR/models) holds the YuNet and SSD weights.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def default_data_dir() -> Path:
    return Path(os.environ.get("FER_DATA_DIR", REPO.parent / "shared"))


def default_models_dir() -> Path:
    return Path(os.environ.get("FER_MODELS_DIR", default_data_dir() / "models"))


def faces_dir(data_dir: Path) -> Path:
    return data_dir / "testdata" / "faces"
