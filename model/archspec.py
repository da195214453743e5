"""The arguments that rebuild a network (`ArchSpec`), stored in every model file and its ONNX export.

Torch-free, so the serving runtime can read and report a model's architecture without PyTorch; the
networks themselves are in architectures.py.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .fields import known_fields

# The reference VGG's blocks: 3x3 convolutions per block and channels per block at width 1.0.
REFERENCE_BLOCKS = (2, 3, 4, 4, 4)
REFERENCE_CHANNELS = (64, 128, 256, 256, 512)


@dataclass(frozen=True)
class ArchSpec:
    """Everything needed to rebuild a network; stored inside every model file.

    name: the architecture's key in architectures.ARCHITECTURES.
    width: multiplier on every block's channels (1.0: the reference's 13.1 M-parameter VGG).
    dropout: dropout probability after each block (training only).
    num_classes: outputs of the final dense layer (7: the EMOTIONS).
    channels: each block's channels before the width multiplier.
    ValueError when channels does not have one count per block.
    """

    name: str = "vgg"
    width: float = 1.0
    dropout: float = 0.3
    num_classes: int = 7
    channels: tuple[int, ...] = REFERENCE_CHANNELS  # per block, before the width multiplier

    def __post_init__(self) -> None:
        # Model files store the tuple as a list; keep equal specs equal.
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if len(self.channels) != len(REFERENCE_BLOCKS):
            raise ValueError(f"channels needs one count per block ({len(REFERENCE_BLOCKS)}), got {self.channels}")

    def to_dict(self) -> dict[str, Any]:
        """Plain fields (channels as a list once serialised), the inverse of from_dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> ArchSpec:
        """The spec a model file records; ValueError naming an unknown field or a bad value."""
        try:
            return cls(**known_fields(cls, data, "arch"))
        except (TypeError, ValueError) as error:
            raise ValueError(f"arch: {error}") from None

    def block_channels(self) -> list[int]:
        """The channels each block really has once the width multiplier is applied (at least 8)."""
        return [max(8, round(channels * self.width)) for channels in self.channels]

    def summary(self) -> str:
        """e.g. "vgg ×0.25 (16/32/64/64/128 channels)"."""
        return f"{self.name} ×{self.width:g} ({'/'.join(map(str, self.block_channels()))} channels)"
