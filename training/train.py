"""fer-train: train an emotion CNN on FER2013 (or FER+), selecting epochs on PublicTest.

Every epoch writes, in OUT: last.pt (resumable with --resume), resume.pt (its compact form, small enough
to commit when a stage stops part-way), best.pt (the best PublicTest epoch), metrics.csv, metrics.json and
curves.png, and prints images per second and the time left; the schedule's last epoch also writes
final.pt (chosen by no score). The .pt files are model files that `load_model` and fer-eval read; each
records the preprocessing its crops went through and the chain of commands that produced it, as executed.

`--resume` continues OUT/last.pt with its own settings (also a last.pt written before model files held
training state), or OUT/resume.pt where there is no last.pt (training/checkpoint.py says what that
loses). Stop a run at any time (Ctrl-C): it continues from the last finished epoch.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ferstream.model.architectures import ArchSpec, build_model, count_parameters
from ferstream.model.archspec import REFERENCE_CHANNELS
from ferstream.model.modelfile import load_model, save_model
from ferstream.model.preprocess import Preprocessing
from ferstream.commandline import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, add_version_argument, print_error
from ferstream.commandline import CommandParser
from ferstream.pipeline.settings import default_data_dir

from . import distributed
from .augment import AugmentSpec
from .checkpoint import (COMPACT, LAST, Checkpoint, capture_rng, read_checkpoint, restore_rng, resumable,
                         write_checkpoint, write_compact)
from .data import DatasetError
from .data.splits import training_splits
from .loop import StepRecipe, lr_at, make_optimizer, seed_everything, train_epoch
from .losses import TeacherEnsemble
from .machine import PRECISIONS, describe_machine
from .photometric import PhotometricSpec
from .plots import plot_curves
from .precision import autocast_dtype
from .provenance import chain_of, chain_text, close_record, data_sha256, file_sha256, start_record
from .recipe import Recipe, RecipeError, read_recipe
from .validation import evaluate, selection_key
from .widen import start_from

PROG = "fer-train"


def default_data() -> str:
    """FER2013 under $FER_DATA_DIR (the shared data folder), else under ../shared."""
    return str(default_data_dir() / "datasets" / "fer2013")


def option(default, help: str):
    """A TrainConfig field: its default and its --help text."""
    if callable(default):
        return field(default_factory=default, metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Every setting of a run; stored in last.pt (resume) and each model file (training_config)."""

    data: str = option(default_data, "dataset with Training and PublicTest splits: the Kaggle train/+test/ "
                                     "folders, a FER+ root or fer2013.csv (default: $FER_DATA_DIR/datasets/"
                                     "fer2013, else ../shared/datasets/fer2013)")
    out: str = option("runs/fer", "output folder for last.pt, best.pt, final.pt, metrics and curves")
    arch: str = option("vgg", "network architecture (model/architectures.py registry)")
    width: float = option(0.25, "multiplier on every block's channels (1.0: the reference VGG, 13.1 M parameters)")
    channels: str = option(",".join(map(str, REFERENCE_CHANNELS)),
                           "each of the 5 blocks' channels before --width, comma-separated")
    dropout: float = option(0.1, "dropout probability after each block")
    epochs: int = option(30, "length of the cosine schedule in epochs; with --resume it re-plans the schedule's "
                             "end from the current step")
    batch_size: int = option(128, "images per step, over all processes together")
    lr: float = option(0.05, "peak learning rate: linear warm-up over 5 %% of the steps, then cosine decay to 0")
    weight_decay: float = option(5e-4, "L2 weight decay of SGD (Nesterov momentum 0.9)")
    label_smoothing: float = option(0.1, "share of each target spread evenly over the 7 classes")
    ema_decay: float = option(0.999, "evaluated and saved weights are an exponential moving average of "
                                     "SGD's, with this decay per step")
    seed: int = option(0, "seeds shuffling, augmentation, dropout and initial weights")
    threads: int = option(0, "threads of PyTorch, which trains the model; 0: every core")
    device: str = option("auto", "auto (CUDA when available, else cpu), cpu, cuda or cuda:N")
    precision: str = option("auto", "fp32, bf16 (autocast) or auto: bf16 on CUDA; on a CPU with AVX512-BF16/AMX "
                                    "the faster of the two for this network, timed once per machine; else fp32 "
                                    "(a CPU without them refuses bf16)")
    equalize: bool = option(False, "histogram-equalise every crop before the network, in training and in "
                                   "the model file for serving (the FER2013 JPEGs already are); off by default: "
                                   "it cost accuracy (docs/model-card.md)")
    standardize: bool = option(True, "give every crop the mean and spread of an equalised one before the network, "
                                     "in training and in the model file for serving, so a dim or flat face reaches "
                                     "the network as a lit one (model/preprocess.py)")
    photometric_probability: float = option(0.25, "probability of each photometric alteration below per training "
                                                  "image (0: none); applied before the preprocessing")
    brightness_min: float = option(0.15, "darkest brightness factor: factors are drawn log-uniformly up to 1.5 "
                                         "(0: no brightness changes)")
    contrast_min: float = option(0.2, "flattest contrast factor around the crop's mean: up to 1.5 (0: none)")
    gamma_max: float = option(2.5, "gamma exponents are drawn log-uniformly in 1/GAMMA_MAX..GAMMA_MAX (1: none)")
    blur_max: float = option(1.5, "largest Gaussian blur sigma, px of the 48 px crop (0: none)")
    motion_blur_max: int = option(7, "longest motion blur, px, at a random angle (below 2: none)")
    jpeg_min: int = option(10, "lowest JPEG quality of a re-encoded crop, up to 90 (0: none)")
    noise_max: float = option(8.0, "largest Gaussian noise std, grey levels (0: none)")
    shadow_max: float = option(0.7, "deepest shadow across part of the face, a fraction of the light removed "
                                    "(0: none)")
    limit: int = option(0, "train on N random training images only (smoke runs); 0: all")
    val_limit: int = option(0, "score N random PublicTest images only (smoke runs); 0: all")
    init: str = option("", "start from this model file's weights (a longer schedule, a fine-tune, or a "
                           "narrower network grown wider); its command chain is continued; \"\": random")
    erase_probability: float = option(0.5, "probability of random erasing per image; lower it when the model "
                                           "underfits")
    max_rotation: float = option(10.0, "largest random rotation of a training face, degrees either way; the "
                                       "served path meets faces rolled beyond what alignment undoes")
    teacher: str = option("", "model file(s) to distil from, comma-separated: the loss also matches their "
                              "softened predictions, averaged over the files; \"\": none")
    distill_weight: float = option(0.5, "with --teacher: the distillation term's share of the loss")
    temperature: float = option(4.0, "with --teacher: softens both distributions before they are compared")
    clean_teacher: bool = option(False, "with --teacher: the teachers see each training face as it was before "
                                        "its photometric alteration (same warp, flip and erasing), so the student "
                                        "learns to read a dim, flat or blurred face as they read it unaltered")
    votes: str = option("", "a FER+ root: its annotators' vote distributions join the targets of the "
                            "training images they match; \"\": none")
    vote_weight: float = option(0.5, "with --votes: the votes' share of each target; the rest is the one-hot label")

    def __post_init__(self) -> None:
        """ValueError naming the first setting outside its range."""
        positive = ("width", "epochs", "batch_size", "temperature", "gamma_max")
        fractions = ("dropout", "label_smoothing", "ema_decay", "erase_probability", "distill_weight", "vote_weight",
                     "photometric_probability", "brightness_min", "contrast_min", "shadow_max")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        for name in fractions:
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"--{name.replace('_', '-')} must lie in 0..1, got {getattr(self, name)}")
        if not 0 <= self.max_rotation <= 180:
            raise ValueError(f"--max-rotation must lie in 0..180 degrees, got {self.max_rotation}")
        if not 0 <= self.jpeg_min <= 90:
            raise ValueError(f"--jpeg-min must lie in 0..90, got {self.jpeg_min}")
        for name in ("lr", "weight_decay", "threads", "limit", "val_limit", "blur_max", "motion_blur_max", "noise_max"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must not be negative, got {getattr(self, name)}")

    @property
    def arch_spec(self) -> ArchSpec:
        """The network's ArchSpec; ValueError when --channels is not comma-separated integers."""
        try:
            channels = tuple(int(count) for count in self.channels.split(","))
        except ValueError:
            raise ValueError(f"--channels wants comma-separated integers, got {self.channels!r}") from None
        return ArchSpec(name=self.arch, width=self.width, dropout=self.dropout, channels=channels)

    @property
    def preprocessing(self) -> Preprocessing:
        """What each crop goes through before the network, here and wherever the model is used."""
        return Preprocessing(equalize=self.equalize, standardize=self.standardize)

    @property
    def photometric(self) -> PhotometricSpec:
        """The photometric alterations of training crops."""
        return PhotometricSpec(probability=self.photometric_probability, brightness_min=self.brightness_min,
                               contrast_min=self.contrast_min, gamma_max=self.gamma_max, blur_max=self.blur_max,
                               motion_blur_max=self.motion_blur_max, jpeg_min=self.jpeg_min,
                               noise_max=self.noise_max, shadow_max=self.shadow_max)

    def step_recipe(self, autocast: torch.dtype | None = None) -> StepRecipe:
        """The training step's settings, its forward passes autocast to autocast (None: fp32; see precision.py)."""
        return StepRecipe(augment=AugmentSpec(erase_probability=self.erase_probability,
                                                      max_rotation_deg=self.max_rotation),
                          photometric=self.photometric,
                          label_smoothing=self.label_smoothing, vote_weight=self.vote_weight,
                          distill_weight=self.distill_weight, temperature=self.temperature,
                          clean_teacher=self.clean_teacher,
                          autocast=autocast)

    @classmethod
    def from_checkpoint(cls, stored: dict) -> TrainConfig:
        """The config a last.pt records; settings added since it was written take their defaults.

        ValueError for a setting this version does not know.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(stored) - known)
        if unknown:
            raise ValueError(f"last.pt has settings this fer-train does not know: {', '.join(unknown)}")
        return cls(**{**BEFORE_SETTINGS_EXISTED, **stored})


# What a run started before these settings existed did, so that resuming it goes on doing that: its
# crops were neither standardised nor altered photometrically.
BEFORE_SETTINGS_EXISTED = {"standardize": False, "photometric_probability": 0.0}

# Options --resume accepts; the rest of the settings come from last.pt. --data may move (another machine):
# its sha256 in the provenance shows whether it is still the same data. --equalize may be switched on
# for a run started before fer-train equalised (on the FER2013 JPEGs, which are equalised already, it
# changes little), so that replaying the recorded chain does what that run did. --precision is how the
# machine computes, like --device and --threads: a run may go on in bf16 where that is faster, or in fp32
# on a CPU without native bf16.
RESUME_OPTIONS = {"out", "epochs", "threads", "device", "data", "equalize", "precision"}


@dataclass(frozen=True)
class Invocation:
    """One fer-train command: its settings, the options given explicitly (by flag or recipe), argv verbatim,
    and the recipe file it read (--config), if any."""

    config: TrainConfig
    resume: bool
    stop_after: int
    given: frozenset[str]
    argv: tuple[str, ...]
    recipe: Recipe | None = None
    flags: frozenset[str] = frozenset()  # the options given as flags, which override the recipe's


def option_types() -> dict[str, type]:
    """{option name with underscores: its type} for every setting a recipe file may hold."""
    defaults = TrainConfig()
    return {**{setting.name: type(getattr(defaults, setting.name)) for setting in fields(TrainConfig)},
            "resume": bool, "stop_after": int}


def build_parser() -> argparse.ArgumentParser:
    """fer-train's options, one per TrainConfig field (its help and default) plus --resume and --stop-after;
    an option not given stays out of the parsed namespace (argparse.SUPPRESS), so Invocation.given holds
    exactly the options typed."""
    parser = CommandParser(prog=PROG, description=__doc__, argument_default=argparse.SUPPRESS,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = TrainConfig()
    parser.add_argument("--config", metavar="RECIPE",
                        help="a TOML file setting any option below, named with underscores "
                             "(erase_probability = 0.25); flags given as well override it")
    for setting in fields(TrainConfig):
        flag, default = f"--{setting.name.replace('_', '-')}", getattr(defaults, setting.name)
        text = setting.metadata["help"]
        if "(default" not in text and default != "":
            text += f" (default: {default})"
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=text)
        elif setting.name == "precision":
            parser.add_argument(flag, choices=PRECISIONS, help=text)
        else:
            parser.add_argument(flag, type=type(default), metavar=setting.name.upper(), help=text)
    parser.add_argument("--resume", action="store_true",
                        help="continue OUT/last.pt (else OUT/resume.pt) with its own settings; only --epochs, "
                             "--stop-after, --threads, --device, --precision, --data and --equalize may be given "
                             "with it")
    parser.add_argument("--stop-after", type=int, metavar="N",
                        help="end this command after N epochs, resumable later (runs with little time); "
                             "0: train to the schedule's end (default: 0)")
    add_version_argument(parser)
    return parser


def parse_args(argv: list[str]) -> Invocation:
    """argv (without the program name) -> Invocation; argparse exits 2 with one line for bad usage or a bad recipe."""
    parser = build_parser()
    flags = vars(parser.parse_args(argv))
    recipe = None
    if "config" in flags:
        try:
            recipe = read_recipe(flags.pop("config"), option_types())
        except RecipeError as error:
            parser.error(str(error))
        if recipe.settings.get("precision", "auto") not in PRECISIONS:
            parser.error(f"{recipe.path}: precision must be one of {', '.join(PRECISIONS)}, "
                         f"got {recipe.settings['precision']!r}")
    given = {**(recipe.settings if recipe else {}), **flags}
    resume, stop_after = given.pop("resume", False), given.pop("stop_after", 0)
    if stop_after < 0:
        parser.error(f"--stop-after must not be negative, got {stop_after}")
    # A recipe may repeat the settings of the run it resumes (train() checks they match); flags may not.
    refused = set(flags) - RESUME_OPTIONS - {"resume", "stop_after"}
    if resume and refused:
        parser.error(f"--resume takes its settings from OUT/last.pt; drop "
                     f"{', '.join('--' + name.replace('_', '-') for name in sorted(refused))}")
    return Invocation(config=TrainConfig(**given), resume=resume, stop_after=stop_after,
                      given=frozenset(given), argv=tuple(argv), recipe=recipe, flags=frozenset(flags))


def resumed_config(checkpoint: Checkpoint, run: Invocation) -> TrainConfig:
    """last.pt's settings, with what --resume may change taken from the command line or the recipe.

    ValueError when the recipe sets anything else to another value than last.pt's run has.
    """
    config = TrainConfig.from_checkpoint(checkpoint.config)
    stored = asdict(config)
    differing = sorted(name for name in run.given - RESUME_OPTIONS if getattr(run.config, name) != stored[name])
    if differing:
        raise ValueError(f"{run.recipe.path if run.recipe else 'the recipe'} sets "
                         f"{', '.join(f'{name} = {getattr(run.config, name)!r}' for name in differing)} but the run "
                         f"it resumes has {', '.join(f'{stored[name]!r}' for name in differing)}; --resume keeps "
                         f"the run's settings")
    return replace(config, **{name: getattr(run.config, name) for name in run.given & set(stored)})


def pick_device(name: str) -> torch.device:
    """torch.device for --device ("auto": CUDA when available, else the CPU)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def input_digests(config: TrainConfig, resuming: bool) -> dict:
    """The sha256 of every input this command reads: data, votes, the --teacher model files, and the --init
    one unless resuming (only the command that started the run read it; it may be gone since)."""
    inputs = {"data": data_sha256(config.data)}
    if config.votes:
        inputs["votes"] = data_sha256(config.votes)
    if config.init and not resuming:
        inputs["init"] = file_sha256(config.init)
    for index, teacher in enumerate(teacher_paths(config.teacher)):
        inputs["teacher" if index == 0 else f"teacher{index + 1}"] = file_sha256(teacher)
    return inputs


def teacher_paths(teacher: str) -> list[str]:
    """--teacher's comma-separated model files ([] for "")."""
    return [path.strip() for path in teacher.split(",") if path.strip()]


def load_teacher(paths: str, preprocessing: Preprocessing, temperature: float,
                 device: torch.device) -> torch.nn.Module:
    """The teachers' networks, folded for inference (they only run forward), as one TeacherEnsemble on device.

    They see the student's preprocessed crops, so ValueError unless their normalisation and input size
    are the student's; equalisation and standardisation may differ (the FER2013 JPEGs are equalised
    already, so both change them little).
    """
    networks = []
    for path in teacher_paths(paths):
        teacher = load_model(path)
        if replace(teacher.preprocessing, equalize=preprocessing.equalize, standardize=preprocessing.standardize) \
                != preprocessing:
            raise ValueError(f"{path}: the teacher expects {teacher.preprocessing.describe()}, "
                             f"the student {preprocessing.describe()}")
        networks.append(teacher.for_inference().network)
    return TeacherEnsemble(networks, temperature).to(device)


def train(run: Invocation) -> dict:
    """Run (or continue) the training run; returns the best epoch's metrics row ({} when none ran).

    Raises DatasetError, FileNotFoundError or ValueError (one line each) for bad inputs, before any
    file in OUT is written.
    """
    out = Path(run.config.out)
    checkpoint = read_checkpoint(resumable(out)) if run.resume else None
    config = resumed_config(checkpoint, run) if checkpoint else run.config
    spec, preprocessing = config.arch_spec, config.preprocessing  # a bad --channels fails before data is read
    if config.threads:
        torch.set_num_threads(config.threads)
    context = distributed.setup(pick_device(config.device))
    device = context.device
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # one input size throughout: let cuDNN pick its fastest kernels
    seed_everything(config.seed)
    splits = training_splits(config.data, config.votes, config.limit, config.val_limit, config.seed)

    # The model: fresh, grown from --init's model file, or (resuming) filled from last.pt below.
    chain = checkpoint.provenance if checkpoint else []
    if config.init and checkpoint is None:
        source = load_model(config.init)
        model = start_from(source, spec, config.seed)
        chain = chain_of(source.meta)
    else:
        model = build_model(spec)
    teacher = load_teacher(config.teacher, preprocessing, config.temperature, device) if config.teacher else None
    model = model.to(device).to(memory_format=torch.channels_last)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
    optimizer = make_optimizer(model, config.lr, config.weight_decay)
    trained = distributed.wrap(model, context)
    if context.enabled:
        torch.manual_seed(config.seed + context.rank)  # same initial weights, different augmentations
    # config.batch_size is the global batch; each rank takes its share of every step.
    rank_batch = max(1, config.batch_size // context.world_size)
    recipe = config.step_recipe(autocast_dtype(config.precision, model, rank_batch, device))
    steps_per_epoch = math.ceil(len(splits.train) // context.world_size / rank_batch)
    schedule = partial(lr_at, total=steps_per_epoch * config.epochs, peak=config.lr)
    history, first_epoch = [], 0
    if checkpoint:
        model.load_state_dict(checkpoint.model)
        if checkpoint.compact:  # the EMA continues from its own weights; SGD's momentum starts again at zero
            ema.module.load_state_dict(checkpoint.model)
        else:
            ema.load_state_dict(checkpoint.ema)
            optimizer.load_state_dict(checkpoint.optimizer)
        history, first_epoch = checkpoint.history, checkpoint.epoch + 1
        restore_rng(checkpoint.rng)
    inputs = input_digests(config, resuming=checkpoint is not None) if context.is_main else {}  # rank 0 writes files
    record = start_record(list(run.argv), describe_machine(device), inputs,
                          run.recipe.record() if run.recipe else None)

    log = partial(print, file=sys.stderr) if context.is_main else lambda *args, **kwargs: None
    log(f"{PROG}: {len(splits.train)} training and {len(splits.val)} PublicTest images ({preprocessing.describe()}), "
        f"{spec.summary()}: {count_parameters(model) / 1e6:.2f} M parameters, {config.epochs} epochs on {device} "
        f"x {context.world_size} process(es), {'fp32' if recipe.autocast is None else 'bf16 autocast'}")
    last_epoch = min(config.epochs, first_epoch + run.stop_after) if run.stop_after else config.epochs
    for epoch in range(first_epoch, last_epoch):
        started = time.time()
        order = distributed.shard(np.random.permutation(len(splits.train)), context)
        train_loss, train_acc = train_epoch(
            trained, optimizer, splits.train, order, rank_batch, preprocessing, recipe, device, schedule,
            first_step=epoch * steps_per_epoch, ema=ema, teacher=teacher,
            description=f"epoch {epoch + 1}/{config.epochs}" if context.is_main and sys.stderr.isatty() else "")
        distributed.sync_buffers(model, context)
        if not context.is_main:
            continue
        val_loss, val_acc = evaluate(ema.module, splits.val, preprocessing, device)
        row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], "train_loss": train_loss,
               "train_acc": train_acc, "val_loss": val_loss, "val_acc": val_acc, "seconds": time.time() - started}
        history.append(row)
        log(json.dumps(row))
        log(progress_line(row, len(order) * context.world_size, config.epochs, last_epoch))

        provenance = chain + [close_record(record, first_epoch + 1, epoch + 1)]
        meta = {"training_command": chain_text(provenance), "provenance": provenance,
                "training_config": asdict(config), "training_data": config.data,
                "metrics": {"public_test_accuracy": val_acc, "epoch": epoch + 1,
                            "train_images": len(splits.train), "public_test_images": len(splits.val)},
                "wall_seconds": sum(r["seconds"] for r in history)}
        if max(history, key=selection_key) is row:
            save_model(out / "best.pt", ema.module, spec, preprocessing, meta)
        if epoch + 1 == config.epochs:  # the schedule's end, whatever PublicTest says: a fixed recipe's result
            save_model(out / "final.pt", ema.module, spec, preprocessing, meta)
        write_history(out, history)
        state = Checkpoint(config=asdict(config), epoch=epoch, model=model.state_dict(), ema=ema.state_dict(),
                           optimizer=optimizer.state_dict(), history=history, rng=capture_rng(), provenance=provenance)
        write_checkpoint(out / LAST, ema.module, spec, preprocessing, meta, state)
        write_compact(out / COMPACT, ema.module, spec, preprocessing, meta, state)

    if context.enabled:
        hashes = distributed.weights_per_rank(model, context)
        if context.is_main:
            (out / "distributed.json").write_text(json.dumps(
                {"world_size": context.world_size, "weights_sha256_per_rank": hashes}, indent=1))
    distributed.cleanup(context)
    return max(history, key=selection_key) if history else {}


def progress_line(row: dict, images: int, epochs: int, last_epoch: int) -> str:
    """One line after an epoch: training images per second (whole epoch, evaluation included) and the time
    to the end of this command (last_epoch) and of the schedule (epochs) at that pace."""
    seconds = row["seconds"]
    left = (last_epoch - row["epoch"]) * seconds / 60
    to_end = (epochs - row["epoch"]) * seconds / 60
    return (f"{PROG}: epoch {row['epoch']}/{epochs}: {images / seconds:.0f} images/s, {seconds / 60:.1f} min an "
            f"epoch; about {left:.0f} min to the end of this command, {to_end:.0f} min to the schedule's end")


def write_history(out: Path, history: list[dict]) -> None:
    """OUT/metrics.json, OUT/metrics.csv (one row per epoch) and OUT/curves.png."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(history, indent=1))
    columns = list(history[0])
    lines = [",".join(columns)] + [",".join(f"{row[c]:.6g}" for c in columns) for row in history]
    (out / "metrics.csv").write_text("\n".join(lines) + "\n")
    plot_curves(history, out / "curves.png")


def main(argv: list[str] | None = None) -> int:
    """fer-train's entry point: 0 done, 2 bad arguments or inputs (one line), 130 interrupted (Ctrl-C)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        run = parse_args(argv)
        best = train(run)
    except (DatasetError, OSError, ValueError) as error:
        print_error(PROG, str(error))
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; continue from the last finished epoch with --out OUT --resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(json.dumps({"best_epoch": best.get("epoch"), "public_test_accuracy": best.get("val_acc"),
                      "model": str(Path(run.config.out) / "best.pt")}))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
