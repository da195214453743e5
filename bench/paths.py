"""Where the bench finds its inputs: the shared data folder with testdata/faces, and the detector weights,
both from the frame path's one set of defaults (pipeline/settings.py)."""

from __future__ import annotations

from pathlib import Path

from ferstream.pipeline.settings import default_data_dir, default_models_dir  # noqa: F401  (the bench CLI's defaults)


def faces_dir(data_dir: Path) -> Path:
    return data_dir / "testdata" / "faces"
