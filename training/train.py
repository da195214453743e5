"""fer-train: train an emotion CNN on FER2013 (or FER+), selecting on PublicTest.

Every epoch writes OUT/last.pt (resumable), OUT/best.pt (the model file of the best PublicTest
epoch), OUT/metrics.csv, OUT/metrics.json and OUT/curves.png; the schedule's last epoch also writes
OUT/final.pt (its model file, chosen by no score). `--resume` continues OUT/last.pt.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shlex
import sys
import time
from dataclasses import asdict, dataclass, fields, replace
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from . import distributed
from .augment import AugmentSpec, augment_batch
from ferstream.model.modelfile import load_model, read_payload, save_model, to_input_tensor
from .data import DatasetError, FaceSet, load_dataset
from .data.votes import attach_votes
from .losses import distillation_loss, soft_cross_entropy
from ferstream.model.architectures import REFERENCE_CHANNELS, ArchSpec, build_model, count_parameters
from .plots import plot_curves
from .widen import widen_into


@dataclass
class TrainConfig:
    data: str = "../shared/datasets/fer2013"
    out: str = "runs/fer"
    arch: str = "vgg"
    width: float = 0.25
    channels: str = ",".join(map(str, REFERENCE_CHANNELS))  # per block, before --width
    dropout: float = 0.1
    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.05
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    ema_decay: float = 0.999
    seed: int = 0
    threads: int = 0  # 0: all cores
    device: str = "auto"
    limit: int = 0  # train on the first N images only (smoke runs); 0: all
    val_limit: int = 0
    # Start from this model file's weights (a longer schedule, a fine-tune, or a wider network grown from
    # a narrower one); "": random.
    init: str = ""
    erase_probability: float = 0.5  # random erasing; lower it when the model underfits
    teacher: str = ""  # model file to distil from: the loss also matches its softened predictions; "": none
    distill_weight: float = 0.5  # with --teacher: the distillation term's share of the loss
    temperature: float = 4.0  # with --teacher: softens both distributions before they are compared
    # A FER+ root: its annotators' vote distributions join the targets of the training images they match.
    votes: str = ""
    vote_weight: float = 0.5  # the votes' share of each target with votes; the rest is the one-hot label

    @property
    def arch_spec(self) -> ArchSpec:
        try:
            channels = tuple(int(count) for count in self.channels.split(","))
        except ValueError:
            raise ValueError(f"--channels wants comma-separated integers, got {self.channels!r}") from None
        return ArchSpec(name=self.arch, width=self.width, dropout=self.dropout, channels=channels)


def parse_args(argv: list[str] | None) -> tuple[TrainConfig, bool, int, int]:
    parser = argparse.ArgumentParser(prog="fer-train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for field in fields(TrainConfig):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default),
                            default=field.default, help=f"(default: {field.default})")
    parser.add_argument("--resume", action="store_true",
                        help="continue OUT/last.pt with its own settings; an explicit --epochs there re-plans "
                             "the cosine schedule's end from the current step")
    parser.add_argument("--stop-after", type=int, default=0,
                        help="end this run after N epochs, resumable later (time-boxed sessions); 0: train to the end")
    args = vars(parser.parse_args(argv))
    resume, stop_after = args.pop("resume"), args.pop("stop_after")
    given = argv if argv is not None else sys.argv[1:]
    epochs_override = args["epochs"] if resume and any(a.split("=")[0] == "--epochs" for a in given) else 0
    return TrainConfig(**args), resume, stop_after, epochs_override


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def targets_for(faces: FaceSet, index: np.ndarray, smoothing: float, vote_weight: float) -> torch.Tensor:
    """One-hot labels mixed with FER+ vote distributions where the faces carry them; then label smoothing."""
    target = F.one_hot(torch.from_numpy(faces.labels[index]), 7).float()
    if faces.soft_labels is not None:
        target = (1 - vote_weight) * target + vote_weight * torch.from_numpy(faces.soft_labels[index])
    return target * (1 - smoothing) + smoothing / target.shape[1]


@torch.inference_mode()
def evaluate(model: torch.nn.Module, faces: FaceSet, device: torch.device, batch_size: int = 512) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) on a FaceSet."""
    model.eval()
    total_loss, correct = 0.0, 0
    for start in range(0, len(faces), batch_size):
        x = to_input_tensor(faces.images[start:start + batch_size]).to(device)
        y = torch.from_numpy(faces.labels[start:start + batch_size]).to(device)
        logits = model(x).float()
        total_loss += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
    return total_loss / len(faces), correct / len(faces)


def selection_key(row: dict) -> tuple[float, float]:
    """PublicTest accuracy, ties broken by the lower PublicTest loss."""
    return row["val_acc"], -row["val_loss"]


def lr_at(step: int, total: int, peak: float) -> float:
    """Linear warm-up over the first 5 % of steps, then cosine decay to zero."""
    warmup = max(1, int(0.05 * total))
    if step < warmup:
        return peak * (step + 1) / warmup
    return 0.5 * peak * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def run_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, faces: FaceSet, order: np.ndarray,
              batch_size: int, config: TrainConfig, device: torch.device, schedule: Callable[[int], float],
              first_step: int = 0, ema: AveragedModel | None = None, teacher: torch.nn.Module | None = None,
              description: str = "") -> tuple[float, float]:
    """One pass over faces[order]; returns (mean loss, accuracy) on the augmented batches.

    `model` may be DDP-wrapped; the EMA follows the bare model inside it. A teacher sees the same
    augmented batch as the student.
    """
    model.train()
    steps = math.ceil(len(order) / batch_size)
    use_amp = device.type == "cuda"
    augment = AugmentSpec(erase_probability=config.erase_probability)
    seen, loss_sum, correct = 0, 0.0, 0
    bar = tqdm(range(steps), desc=description, leave=False, disable=not description)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = schedule(first_step + step)
        index = order[step * batch_size:(step + 1) * batch_size]
        x = augment_batch(to_input_tensor(faces.images[index]).to(device), augment)
        x = x.contiguous(memory_format=torch.channels_last)
        target = targets_for(faces, index, config.label_smoothing, config.vote_weight).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            logits = model(x)
            if teacher is not None:
                with torch.no_grad():
                    teacher_logits = teacher(x)
        loss = soft_cross_entropy(logits, target)
        if teacher is not None:
            weight = config.distill_weight
            loss = (1 - weight) * loss + weight * distillation_loss(logits, teacher_logits, config.temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if ema is not None:
            ema.update_parameters(getattr(model, "module", model))
        seen += len(index)
        loss_sum += loss.item() * len(index)
        correct += int((logits.argmax(1).cpu().numpy() == faces.labels[index]).sum())
        bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
    return loss_sum / seen, correct / seen


def with_votes(train_set: FaceSet, ferplus_root: str) -> FaceSet:
    """The training images with the FER+ votes of their Training split; PublicTest votes stay unread."""
    match = attach_votes(train_set, load_dataset(ferplus_root, "Training"))
    matched = int(match.matched.sum())
    if not matched:
        raise DatasetError(f"{ferplus_root}: none of its images matches a training image")
    print(f"fer-train: FER+ votes for {matched} training images; {len(train_set) - matched} unmatched keep "
          f"their one-hot labels", file=sys.stderr)
    return match.faces


def initial_model(path: str, spec: ArchSpec, seed: int) -> tuple[torch.nn.Module, str]:
    """(network, the command that trained it) from a model file, widened to spec if spec is wider."""
    payload = read_payload(path)
    source_spec = ArchSpec(**payload["arch"])
    network = build_model(spec)
    # Dropout holds no weights, so a continued run may change it.
    if source_spec.to_dict() | {"dropout": 0} == spec.to_dict() | {"dropout": 0}:
        network.load_state_dict(payload["state_dict"])
    elif (source_spec.name, source_spec.num_classes) == (spec.name, spec.num_classes) and all(
            wide >= narrow for wide, narrow in zip(spec.block_channels(), source_spec.block_channels())):
        source = build_model(source_spec)
        source.load_state_dict(payload["state_dict"])
        widen_into(source, network, seed)
    else:
        raise ValueError(f"{path}: holds {payload['arch']}, not the requested {spec.to_dict()} "
                         f"nor a narrower version of it")
    return network, payload["meta"].get("training_command", "")


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.9, nesterov=True,
                           weight_decay=config.weight_decay)


def train(config: TrainConfig, resume: bool = False, command: str = "", stop_after: int = 0,
          epochs_override: int = 0) -> dict:
    out = Path(config.out)
    last_path = out / "last.pt"
    state = None
    if resume:
        if not last_path.is_file():
            raise FileNotFoundError(f"{last_path}: nothing to resume")
        state = torch.load(last_path, map_location="cpu", weights_only=False)
        config = TrainConfig(**state["config"])
        if epochs_override:
            config = replace(config, epochs=epochs_override)
    spec = config.arch_spec  # parsed before any data is read, so a bad --channels fails at once
    out.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    context = distributed.setup(pick_device(config.device))
    device = context.device
    seed_everything(config.seed)

    train_set = load_dataset(config.data, "Training")
    val_set = load_dataset(config.data, "PublicTest")
    if config.votes:
        train_set = with_votes(train_set, config.votes)
    if config.limit:
        train_set = train_set.subset(np.random.default_rng(config.seed).permutation(len(train_set))[: config.limit])
    if config.val_limit:
        val_set = val_set.subset(np.random.default_rng(config.seed).permutation(len(val_set))[: config.val_limit])

    if config.init and state is None:
        model, earlier_command = initial_model(config.init, spec, config.seed)
        command = f"{earlier_command} && {command}" if earlier_command else command
    else:
        model = build_model(spec)
    # The teacher only runs forward, so it runs in the server's faster folded form.
    teacher = load_model(config.teacher).for_inference().network.to(device) if config.teacher else None
    model = model.to(device).to(memory_format=torch.channels_last)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
    optimizer = make_optimizer(model, config)
    trained = distributed.wrap(model, context)
    if context.enabled:
        torch.manual_seed(config.seed + context.rank)  # same initial weights, different augmentations
    # config.batch_size is the global batch; each rank takes its share of every step.
    rank_batch = max(1, config.batch_size // context.world_size)
    steps_per_epoch = math.ceil(len(train_set) // context.world_size / rank_batch)
    total_steps = steps_per_epoch * config.epochs
    history: list[dict] = []
    first_epoch = 0
    if state is not None:
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        history = state["history"]
        first_epoch = state["epoch"] + 1
        torch.set_rng_state(state["torch_rng"])
        np.random.set_state(state["numpy_rng"])
        command = state["command"]
        if epochs_override:
            command += f" && fer-train --out {config.out} --resume --epochs {epochs_override}"

    log = partial(print, file=sys.stderr) if context.is_main else lambda *args, **kwargs: None
    log(f"fer-train: {len(train_set)} training and {len(val_set)} PublicTest images, "
        f"{spec.summary()}: {count_parameters(model) / 1e6:.2f} M parameters, "
        f"{config.epochs} epochs on {device} x {context.world_size} process(es)")
    last_epoch = min(config.epochs, first_epoch + stop_after) if stop_after else config.epochs
    for epoch in range(first_epoch, last_epoch):
        started = time.time()
        schedule = partial(lr_at, total=total_steps, peak=config.lr)
        order = distributed.shard(np.random.permutation(len(train_set)), context)
        train_loss, train_acc = run_epoch(trained, optimizer, train_set, order, rank_batch, config, device,
                                          schedule, first_step=epoch * steps_per_epoch, ema=ema, teacher=teacher,
                                          description=f"epoch {epoch + 1}/{config.epochs}" if context.is_main else "")
        distributed.sync_buffers(model, context)
        if not context.is_main:
            continue
        val_loss, val_acc = evaluate(ema.module, val_set, device)
        row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"],
               "train_loss": train_loss, "train_acc": train_acc,
               "val_loss": val_loss, "val_acc": val_acc, "seconds": time.time() - started}
        history.append(row)
        log(json.dumps(row))
        meta = {"training_command": command, "training_config": asdict(config), "training_data": config.data,
                "metrics": {"public_test_accuracy": val_acc, "epoch": epoch + 1,
                            "train_images": len(train_set), "public_test_images": len(val_set)},
                "wall_seconds": sum(r["seconds"] for r in history)}
        if max(history, key=selection_key) is row:
            save_model(out / "best.pt", ema.module, spec, meta)
        if epoch + 1 == config.epochs:
            # The end of the schedule, whatever PublicTest says: the model a fixed recipe produces.
            save_model(out / "final.pt", ema.module, spec, meta)
        write_history(out, history)
        checkpoint = {"config": asdict(config), "epoch": epoch, "model": model.state_dict(),
                      "ema": ema.state_dict(), "optimizer": optimizer.state_dict(), "history": history,
                      "torch_rng": torch.get_rng_state(), "numpy_rng": np.random.get_state(),
                      "command": command}
        torch.save(checkpoint, out / "last.tmp")
        (out / "last.tmp").replace(last_path)
    if context.enabled:
        hashes = distributed.weights_per_rank(model, context)
        if context.is_main:
            (out / "distributed.json").write_text(json.dumps(
                {"world_size": context.world_size, "weights_sha256_per_rank": hashes}, indent=1))
    distributed.cleanup(context)
    return max(history, key=selection_key) if history else {}


def write_history(out: Path, history: list[dict]) -> None:
    (out / "metrics.json").write_text(json.dumps(history, indent=1))
    columns = list(history[0])
    lines = [",".join(columns)] + [",".join(f"{row[c]:.6g}" for c in columns) for row in history]
    (out / "metrics.csv").write_text("\n".join(lines) + "\n")
    plot_curves(history, out / "curves.png")


def main(argv: list[str] | None = None) -> int:
    config, resume, stop_after, epochs_override = parse_args(argv)
    command = "fer-train " + shlex.join(sys.argv[1:] if argv is None else argv)
    try:
        best = train(config, resume, command, stop_after, epochs_override)
    except (DatasetError, FileNotFoundError, ValueError) as error:
        print(f"fer-train: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fer-train: interrupted; continue with --resume", file=sys.stderr)
        return 130
    print(json.dumps({"best_epoch": best.get("epoch"), "public_test_accuracy": best.get("val_acc"),
                      "model": str(Path(config.out) / "best.pt")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
