"""Dataset loaders. Every format ends as a FaceSet of 48x48 uint8 crops in EMOTIONS order."""

from .dataset import DatasetError, FaceSet
from .detect import load_dataset

__all__ = ["DatasetError", "FaceSet", "load_dataset"]
