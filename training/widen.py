"""Grow a trained VGG into a wider one that computes the same function (Net2WiderNet, Chen et al. 2016).

A wider model started this way begins at the trained model's accuracy instead of at chance, so a
CPU's few hours go into refining it rather than relearning it. Each extra channel of a layer copies an existing
channel (its filter and batch norm); the next layer splits the original's outgoing weights between
the copies at random fractions that sum to one. The sum over the copies is unchanged, and because the
fractions differ the copies receive different gradients and drift apart during training.
"""

from __future__ import annotations

import torch
from torch import nn

from ferstream.model.architectures import VGG, ArchSpec, build_model
from ferstream.model.modelfile import EmotionClassifier


def layers_of(network: VGG) -> tuple[list[nn.Conv2d], list[nn.BatchNorm2d]]:
    """The network's convolutions and batch norms, in order (one batch norm after each convolution)."""
    convs = [m for m in network.features if isinstance(m, nn.Conv2d)]
    norms = [m for m in network.features if isinstance(m, nn.BatchNorm2d)]
    return convs, norms


def channel_map(source: int, target: int, generator: torch.Generator) -> torch.Tensor:
    """For each target channel, the source channel it copies: the originals first, then random picks."""
    extra = torch.randint(source, (target - source,), generator=generator)
    return torch.cat([torch.arange(source), extra])


def split_fractions(mapping: torch.Tensor, source: int, generator: torch.Generator) -> torch.Tensor:
    """Per target channel, its share of the original's outgoing weights; the shares of each original sum to 1."""
    shares = 0.5 + torch.rand(len(mapping), generator=generator)  # 0.5..1.5: no copy gets a vanishing share
    totals = torch.zeros(source).index_add_(0, mapping, shares)
    return shares / totals[mapping]


@torch.no_grad()
def widen_into(source: VGG, target: VGG, seed: int = 0) -> None:
    """Fill target (same blocks, at least as many channels in every layer) so it computes what source does."""
    generator = torch.Generator().manual_seed(seed)
    source_convs, source_norms = layers_of(source)
    target_convs, target_norms = layers_of(target)
    if len(source_convs) != len(target_convs):
        raise ValueError(f"cannot widen {len(source_convs)} convolutions into {len(target_convs)}")
    incoming = torch.arange(1)  # the grey input channel, never widened
    incoming_share = torch.ones(1)
    for conv_in, norm_in, conv_out, norm_out in zip(source_convs, source_norms, target_convs, target_norms):
        if conv_out.out_channels < conv_in.out_channels:
            raise ValueError(f"cannot widen {conv_in.out_channels} channels into {conv_out.out_channels}")
        mapping = channel_map(conv_in.out_channels, conv_out.out_channels, generator)
        weight = conv_in.weight[mapping][:, incoming] * incoming_share.view(1, -1, 1, 1)
        conv_out.weight.copy_(weight)
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(norm_out, name).copy_(getattr(norm_in, name)[mapping])
        norm_out.num_batches_tracked.copy_(norm_in.num_batches_tracked)
        incoming, incoming_share = mapping, split_fractions(mapping, conv_in.out_channels, generator)
    target.classifier.weight.copy_(source.classifier.weight[:, incoming] * incoming_share)
    target.classifier.bias.copy_(source.classifier.bias)



def start_from(source: EmotionClassifier, spec: ArchSpec, seed: int = 0) -> VGG:
    """A new network for spec that computes what the model file `source` does: its weights when the
    specs agree up to dropout, grown with widen_into when spec is wider in every block.

    ValueError naming the file and both specs otherwise (another architecture, or narrower somewhere).
    """
    network = build_model(spec)
    # Dropout holds no weights, so a continued run may change it.
    if source.spec.to_dict() | {"dropout": 0} == spec.to_dict() | {"dropout": 0}:
        network.load_state_dict(source.network.state_dict())
    elif (source.spec.name, source.spec.num_classes) == (spec.name, spec.num_classes) and all(
            wide >= narrow for wide, narrow in zip(spec.block_channels(), source.spec.block_channels())):
        widen_into(source.network, network, seed)
    else:
        raise ValueError(f"{source.path}: holds {source.spec.to_dict()}, not the requested {spec.to_dict()} "
                         f"nor a narrower version of it")
    return network
