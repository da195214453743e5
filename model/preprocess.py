"""What a face crop goes through before the network, declared once and stored in every model file.

The same `Preprocessing.apply` feeds training (through `modelfile.to_input_tensor`), evaluation, the
exported ONNX graph's input and the server, so a model is always run on the pixels it learned from.
NumPy and OpenCV only: the serving install has no torch.

Why the light of a crop is normalised: the FER2013 JPEGs in ../shared/datasets/fer2013 are
histogram-equalised (cv2.equalizeHist of the raw FER+ PNG of the same face reproduces each JPEG to
within about 3.6 grey levels on average; the raw pixels differ by about 39), so every training face
spans 0-255, while a face in a dim room or a flat webcam image does not. A network fed fixed-scaled
pixels reads such a face as another emotion. Per-crop standardisation gives every crop the mean and
spread of an equalised one, so brightness and contrast changes no longer reach the network, at no cost
in accuracy against fixed scaling, equalisation or CLAHE (docs/model-card.md#design-measurements).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from .fields import known_fields

# The mean and standard deviation of a uniform histogram over 0-255, i.e. of an equalised crop.
UNIFORM_MEAN = 127.5
UNIFORM_STD = 255.0 / np.sqrt(12.0)
# Crops flatter than this (grey levels of standard deviation) are not stretched further: a blank crop
# stays blank instead of turning its sensor noise into features. A face at brightness x0.25 and
# contrast x0.3 of an ordinary photo still spreads about 4.
MIN_SPREAD = 2.0


@dataclass(frozen=True)
class Preprocessing:
    """uint8 grey crops -> the network's float input.

    equalize: cv2.equalizeHist on each crop first (what the FER2013 JPEGs already went through).
    standardize: then shift and scale each crop's pixels to the mean and standard deviation of a
        uniform 0-255 histogram (127.5 and 255 / sqrt(12) = 73.6 grey levels: what an equalised crop
        has), so a crop's brightness and contrast do not reach the network; a crop flatter than
        MIN_SPREAD grey levels is scaled as if it had that spread (noise is not stretched to a face).
    input_size: crops are input_size x input_size pixels (48: FER2013's size).
    mean, std: pixels are mapped to (x / 255 - mean) / std, so 0-255 becomes -2..2 with the defaults
        (0.5, 0.25: the fixed normalisation of every model trained before this field existed).
    """

    equalize: bool
    standardize: bool = False
    input_size: int = 48
    mean: float = 0.5
    std: float = 0.25

    def __post_init__(self) -> None:
        for name in ("equalize", "standardize"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"preprocessing: {name} must be true or false, got {getattr(self, name)!r}")
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
        """Plain JSON-able fields, e.g. {"equalize": false, "standardize": true, "input_size": 48, "mean": 0.5,
        "std": 0.25}. Files written before `standardize` existed lack it and load with False."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Preprocessing:
        """The inverse of to_dict. ValueError naming the unknown key, the missing key or the bad value."""
        known_fields(cls, data, "preprocessing")
        if "equalize" not in data:
            raise ValueError("preprocessing: the field 'equalize' is missing")
        return cls(**data)

    def describe(self) -> str:
        """One line for logs and reports, e.g. "standardised 48 px, (x/255 - 0.5) / 0.25"."""
        steps = [name for name, on in (("equalised", self.equalize), ("standardised", self.standardize)) if on]
        return f"{' + '.join(steps) or 'raw'} {self.input_size} px, (x/255 - {self.mean:g}) / {self.std:g}"

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
        if self.standardize:
            pixels = standardized(pixels)
        return (pixels / np.float32(255.0) - np.float32(self.mean)) / np.float32(self.std)


def standardized(pixels: np.ndarray) -> np.ndarray:
    """(N, 1, S, S) float32 grey levels -> the same with each crop's mean 127.5 and standard deviation 73.6
    (UNIFORM_MEAN, UNIFORM_STD), spreads below MIN_SPREAD scaled as MIN_SPREAD; float32 out."""
    mean = pixels.mean(axis=(1, 2, 3), keepdims=True)
    spread = np.maximum(pixels.std(axis=(1, 2, 3), keepdims=True), np.float32(MIN_SPREAD))
    return (pixels - mean) * (np.float32(UNIFORM_STD) / spread) + np.float32(UNIFORM_MEAN)
