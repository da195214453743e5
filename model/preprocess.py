"""What a face crop goes through before the network, declared once and stored in every model file.

The same `Preprocessing.apply` feeds training (through `modelfile.to_input_tensor`), evaluation, the
exported ONNX graph's input and the server, so a model is always run on the pixels it learned from.
NumPy and OpenCV only: the serving install has no torch.

Why equalisation is a choice: the FER2013 JPEGs in ../shared/datasets/fer2013 are histogram-equalised
(cv2.equalizeHist of the raw FER+ PNG of the same face reproduces each JPEG to within about 3.6 grey
levels on average; the raw pixels differ by about 39), while FER+ PNGs and camera crops are raw pixels.
Equalising camera crops before the first shipped model raised end-to-end accuracy by about one point
on held-back labelled photos (issue 16).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from .fields import known_fields


@dataclass(frozen=True)
class Preprocessing:
    """uint8 grey crops -> the network's float input.

    equalize: cv2.equalizeHist on each crop first (what the FER2013 JPEGs already went through).
    input_size: crops are input_size x input_size pixels (48: FER2013's size).
    mean, std: pixels are mapped to (x / 255 - mean) / std, so 0-255 becomes -2..2 with the defaults
        (0.5, 0.25: the fixed normalisation of every model trained before this field existed).
    """

    equalize: bool
    input_size: int = 48
    mean: float = 0.5
    std: float = 0.25

    def __post_init__(self) -> None:
        if not isinstance(self.equalize, bool):
            raise ValueError(f"preprocessing: equalize must be true or false, got {self.equalize!r}")
        if isinstance(self.input_size, bool) or not isinstance(self.input_size, int) or self.input_size < 1:
            raise ValueError(f"preprocessing: input_size must be a positive integer, got {self.input_size!r}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
                raise ValueError(f"preprocessing: {name} must be a finite number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.std <= 0:
            raise ValueError(f"preprocessing: std must be positive, got {self.std!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able fields, e.g. {"equalize": true, "input_size": 48, "mean": 0.5, "std": 0.25}."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Preprocessing:
        """The inverse of to_dict. ValueError naming the unknown key, the missing key or the bad value."""
        known_fields(cls, data, "preprocessing")
        if "equalize" not in data:
            raise ValueError("preprocessing: the field 'equalize' is missing")
        return cls(**data)

    def describe(self) -> str:
        """One line for logs and reports, e.g. "equalised 48 px, (x/255 - 0.5) / 0.25"."""
        return (f"{'equalised' if self.equalize else 'raw'} {self.input_size} px, "
                f"(x/255 - {self.mean:g}) / {self.std:g}")

    def check(self, crops: np.ndarray) -> None:
        """ValueError unless crops is (N, input_size, input_size) uint8."""
        size = self.input_size
        if not isinstance(crops, np.ndarray) or crops.dtype != np.uint8 or crops.ndim != 3 \
                or crops.shape[1:] != (size, size):
            shape = getattr(crops, "shape", None)
            dtype = getattr(crops, "dtype", type(crops).__name__)
            raise ValueError(f"expected (N, {size}, {size}) uint8 crops, got {shape} {dtype}")

    def apply(self, crops: np.ndarray) -> np.ndarray:
        """(N, S, S) uint8 grey crops -> (N, 1, S, S) float32 network input, S = input_size.

        ValueError for any other shape or dtype (resizing is the crop function's job, not this one's).
        """
        self.check(crops)
        if self.equalize:
            crops = np.stack([cv2.equalizeHist(crop) for crop in crops]) if len(crops) else crops
        pixels = crops[:, None].astype(np.float32)
        return (pixels / np.float32(255.0) - np.float32(self.mean)) / np.float32(self.std)
