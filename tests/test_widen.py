"""Growing a trained network wider keeps what it computes (Net2WiderNet), in both of batch norm's modes."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from ferstream.model.modelfile import load_model, to_input_tensor
from ferstream.training.data import load_dataset
from ferstream.model.architectures import build_model, count_parameters
from ferstream.training.widen import widen_into


@pytest.fixture(scope="module")
def real_faces(shared) -> torch.Tensor:
    faces = load_dataset(shared / "datasets" / "fer2013", "PublicTest")
    return to_input_tensor(faces.images[:64], load_model().preprocessing)


def doubled(shipped) -> torch.nn.Module:
    wider = build_model(replace(shipped.spec, channels=tuple(count * 2 for count in shipped.spec.channels)))
    widen_into(shipped.network, wider, seed=3)
    return wider


def without_dropout(network: torch.nn.Module, training: bool) -> torch.nn.Module:
    network.train(training)
    for module in network.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0  # dropout is random in training mode; only batch norm's mode should differ
    return network


@pytest.mark.parametrize("training", [False, True], ids=["running-statistics", "batch-statistics"])
def test_the_widened_network_computes_the_same_logits(real_faces: torch.Tensor, training: bool) -> None:
    shipped = load_model()
    wider = without_dropout(doubled(shipped), training)
    assert count_parameters(wider) > 3 * shipped.parameters
    with torch.no_grad():
        expected, grown = without_dropout(shipped.network, training)(real_faces), wider(real_faces)
    assert torch.allclose(grown, expected, atol=1e-4)
    assert expected.argmax(1).unique().numel() > 1  # real faces, not a constant answer


def test_a_copied_filter_parts_from_its_original_after_one_step(real_faces: torch.Tensor) -> None:
    """Unequal shares of the outgoing weights give the copies different gradients (equal halves would not)."""
    shipped = load_model()
    wider = without_dropout(doubled(shipped), True)
    first = wider.features[0]
    narrow = shipped.network.features[0].out_channels
    copy = narrow  # the first added channel; channel_map puts the originals first
    original = next(c for c in range(narrow) if torch.equal(first.weight[c], first.weight[copy]))
    labels = torch.arange(len(real_faces)) % 7
    torch.nn.functional.cross_entropy(wider(real_faces), labels).backward()
    torch.optim.SGD(wider.parameters(), lr=0.1).step()
    assert not torch.allclose(first.weight[copy], first.weight[original])


def test_narrowing_is_refused() -> None:
    shipped = load_model()
    narrower = build_model(replace(shipped.spec, width=shipped.spec.width / 2))
    with pytest.raises(ValueError, match="cannot widen"):
        widen_into(shipped.network, narrower)
