"""Where the bench finds its inputs: the shared data folder (FER_DATA_DIR, default ../shared beside the
repository) with testdata/faces; detector weights come from the frame path's one default."""

from __future__ import annotations

import os
from pathlib import Path

from ferstream.pipeline.settings import default_models_dir  # noqa: F401  (re-exported for the bench CLI)

REPO = Path(__file__).resolve().parents[1]


def default_data_dir() -> Path:
    """$FER_DATA_DIR, else the shared/ folder beside the repository (where CI and the tests find it)."""
    return Path(os.environ.get("FER_DATA_DIR", REPO.parent / "shared"))


def faces_dir(data_dir: Path) -> Path:
    """The annotated test photos (testdata/faces, with hand-drawn boxes in testing.xml/training.xml)."""
    return data_dir / "testdata" / "faces"
