"""Scoring during training: PublicTest loss and accuracy through the model's own preprocessing."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ferstream.model.modelfile import to_input_tensor
from ferstream.model.preprocess import Preprocessing

from .data import FaceSet


@torch.inference_mode()
def evaluate(network: torch.nn.Module, faces: FaceSet, preprocessing: Preprocessing, device: torch.device,
             batch_size: int = 512) -> tuple[float, float]:
    """(mean cross-entropy in nats, accuracy in 0..1) of network on faces, in eval mode and fp32.

    The crops go through `preprocessing` exactly as the server feeds them; batch_size only bounds memory.
    """
    network.eval()
    total_loss, correct = 0.0, 0
    for start in range(0, len(faces), batch_size):
        x = to_input_tensor(faces.images[start:start + batch_size], preprocessing).to(device)
        y = torch.from_numpy(faces.labels[start:start + batch_size]).to(device)
        logits = network(x).float()
        total_loss += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
    return total_loss / len(faces), correct / len(faces)


def selection_key(row: dict) -> tuple[float, float]:
    """How best.pt is chosen among a run's epochs: PublicTest accuracy, ties broken by the lower PublicTest loss."""
    return row["val_acc"], -row["val_loss"]
