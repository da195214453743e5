"""The VGG-style CNN family for 48x48 grey faces.

`vgg` with width 1.0 is the reference model we replace: five blocks of 2/3/4/4/4 3x3 convolutions
with 64/128/256/256/512 channels, batch norm, max-pool and dropout per block, one dense softmax
layer (13.1 M parameters). The width multiplier scales every block's channels, which is how the
shipped model trades accuracy for CPU milliseconds. `channels` sets each block's channels
before the multiplier, e.g. wider late blocks, where a weight costs few multiply-adds (docs/history.md: tried,
it bought little accuracy for its latency).
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

# ArchSpec lives in its own torch-free module so the serving runtime can read it; re-exported here.
from .archspec import REFERENCE_BLOCKS, ArchSpec


def conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    """A 3x3 same-padding convolution (no bias: the batch norm has one), batch norm and ReLU."""
    return [
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class VGG(nn.Module):
    """The reference VGG's layout at spec's widths: (N, 1, 48, 48) normalised input -> (N, classes) logits."""

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 1
        for depth, channels in zip(REFERENCE_BLOCKS, spec.block_channels()):
            for _ in range(depth):
                layers += conv_bn_relu(in_channels, channels)
                in_channels = channels
            layers += [nn.MaxPool2d(2), nn.Dropout(spec.dropout)]
        self.features = nn.Sequential(*layers)
        # 48 px halved five times leaves 1x1; pooling makes other input sizes (e.g. 44 crops) work too.
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(in_channels, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 1, 48, 48) normalised floats -> (N, classes) logits."""
        return self.classifier(self.pool(self.features(x)).flatten(1))


ARCHITECTURES = {"vgg": VGG}


def build_model(spec: ArchSpec) -> nn.Module:
    """A freshly initialised network for spec (training mode); ValueError for an unknown spec.name."""
    if spec.name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {spec.name!r}; known: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[spec.name](spec)


def fold_batch_norm(network: nn.Module) -> nn.Module:
    """An inference-only copy of network with each batch norm folded into the convolution before it.

    The outputs are the same up to float rounding. Channels-last on the CPU it is faster, because oneDNN
    then runs one kernel per layer instead of a convolution plus a separate pass over the activations.
    Not for training: the batch norms are gone.
    """
    with warnings.catch_warnings():
        # Importing it makes torch's own mkldnn helpers warn that torch.jit.script_method is deprecated.
        warnings.filterwarnings("ignore", message=".*torch.jit.script_method.*", category=DeprecationWarning)
        from torch.fx.experimental.optimization import fuse
    folded = fuse(copy.deepcopy(network).eval(), inplace=True)  # the caller's network keeps its BN and mode
    return folded.to(memory_format=torch.channels_last)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable and frozen parameters (weights and biases) of model."""
    return sum(p.numel() for p in model.parameters())


def count_multiply_adds(model: nn.Module, size: int = 48) -> int:
    """Multiply-adds of the convolutions and dense layers for one size x size grey face.

    Counted by running one face through the network, so it holds for any layer sizes; batch norm,
    pooling and activations (a few percent) are left out, as is usual.
    """
    total = 0

    def count(layer: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(layer, nn.Conv2d):
            per_output = layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
            total += output.numel() * per_output
        elif isinstance(layer, nn.Linear):
            total += output.numel() * layer.in_features

    hooks = [layer.register_forward_hook(count) for layer in model.modules()
             if isinstance(layer, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 1, size, size, device=next(model.parameters()).device))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return total
