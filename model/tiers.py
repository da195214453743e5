"""Model tiers: the emotion models a server keeps loaded side by side, each chosen by name per request.

  fast      the project's 48x48 grey CNN (runtime.py): about a millisecond per face; live streams' default.
  accurate  OpenCV Zoo's RAF-DB expression model (zoo.py) on 112x112 colour faces aligned on the ArcFace
            template, combined with the fast CNN (ACCURATE_RECIPE); photos' default.

A Tier turns a face's crops into probabilities over EMOTIONS. What each tier needs is its `inputs`: the
crop kinds the frame path cuts for it (GREY: 48x48 grey, pipeline/crops.face_crops; COLOUR: 112x112 BGR,
pipeline/crops.colour_crops), so a fast-tier request never pays for the accurate tier's crops.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .labels import EMOTIONS
from .runtime import ServedClassifier, median_ms

FAST, ACCURATE = "fast", "accurate"
TIER_NAMES = (FAST, ACCURATE)
# Crop kinds.
GREY, COLOUR = "grey48", "colour112"
# What each crop kind is, for GetModelInfo and reports.
INPUT_DESCRIPTIONS = {GREY: "48x48 grey face, aligned on YuNet's landmarks to FER2013's framing",
                      COLOUR: "112x112 colour face, aligned on YuNet's landmarks to the ArcFace template"}

Crops = Mapping[str, np.ndarray]


def unknown_tier(name: str, served: tuple[str, ...] = TIER_NAMES) -> str:
    """The one-line error for a model name that is not served, naming the choices."""
    return f"unknown model {name!r}; choose one of {', '.join(served)}"


def parse_model_argument(value: str | None) -> tuple[str | None, Path | None]:
    """A command line's --model: (tier, None) for a tier name, (None, file) for the fast tier's model file
    (write ./fast for a file named like a tier), (None, None) when not given. ValueError naming the tiers for
    a bare word that is neither (no suffix, no such file): a mistyped tier, not a model file."""
    if value is None:
        return None, None
    if value in TIER_NAMES:
        return value, None
    path = Path(value)
    if not path.suffix and path.parent == Path(".") and not path.exists():
        raise ValueError(unknown_tier(value) + ", or give a model file")
    return None, path


def mirrored(crops: np.ndarray) -> np.ndarray:
    """The crops flipped left to right ((N, H, W) or (N, H, W, C))."""
    return np.ascontiguousarray(crops[:, :, ::-1])


@dataclass(frozen=True)
class Recipe:
    """How the accurate tier combines its parts. The zoo model's probabilities are softmax(logits /
    zoo_temperature) (calibration: its raw softmax is overconfident, mean top probability 0.83 on
    realfaces-dev against the calibrated CNN's 0.54), averaged over the face and its mirror image when
    `mirror_zoo`; when `fast_weight` > 0 they are combined with the fast CNN's (calibrated in its graph,
    averaged over the mirror image too when `mirror_fast`) by a weighted geometric mean ("geometric",
    renormalised) or arithmetic mean ("mean")."""

    mirror_zoo: bool = False
    mirror_fast: bool = True
    fast_weight: float = 0.5
    combine: str = "geometric"
    zoo_temperature: float = 1.0

    def describe(self) -> str:
        """One line for logs and GetModelInfo."""
        def views(mirror: bool) -> str:
            return "face and its mirror image" if mirror else "face"

        zoo = f"the zoo model (temperature {self.zoo_temperature:g}) on the {views(self.mirror_zoo)}"
        if self.fast_weight <= 0:
            return f"{zoo} alone"
        name = "arithmetic" if self.combine == "mean" else "geometric"
        return (f"{name} mean of {zoo}, weight {1 - self.fast_weight:g}, and the fast CNN on the "
                f"{views(self.mirror_fast)}, weight {self.fast_weight:g}")


# The one number fitted: the zoo model's temperature, by NLL on realfaces-dev (3.05; on CK+48 2.85).
# The combination was chosen on realfaces-dev by balanced accuracy with CK+48 as a second check among
# unweighted means of the two models; the zoo model's mirror view added little there at twice its cost,
# so only the CNN's (a tenth of the zoo model's cost) is kept (docs/model-card.md has every candidate).
ACCURATE_RECIPE = Recipe(mirror_zoo=False, mirror_fast=True, fast_weight=0.5, combine="geometric",
                         zoo_temperature=3.0)


def combine(parts: list[tuple[np.ndarray, float]], how: str) -> np.ndarray:
    """Weighted mean of (N, C) probability arrays: arithmetic ("mean") or geometric ("geometric",
    renormalised to sum to 1). ValueError for another `how`."""
    total = sum(weight for _, weight in parts)
    if how == "mean":
        return sum(p * w for p, w in parts) / total
    if how == "geometric":
        log = sum(np.log(np.maximum(p, 1e-7)) * w for p, w in parts) / total
        out = np.exp(log - log.max(axis=1, keepdims=True))
        return out / out.sum(axis=1, keepdims=True)
    raise ValueError(f"unknown combination {how!r}; expected mean or geometric")


@dataclass
class Tier:
    """One served model: `classify(crops)` maps {crop kind: (N, ...) uint8 crops} for every kind in `inputs`
    to (N, len(EMOTIONS)) float32 probabilities in EMOTIONS order.

    cost_ms: wall milliseconds per face of classify on this CPU at batch 1, measured at load (0: not
    measured); forms: the file forms compared at load and their ms per face; provenance: where the weights
    come from and under which licence; description: the model and, for a combination, its recipe.
    """

    name: str
    inputs: tuple[str, ...]
    classify: Callable[[Crops], np.ndarray]
    description: str
    provenance: str
    files: tuple[str, ...]
    sha256: str = ""
    parameters: int = 0
    cost_ms: float = 0.0
    forms: dict[str, float] = field(default_factory=dict)

    @property
    def class_names(self) -> tuple[str, ...]:
        """The output classes in order: EMOTIONS for every tier."""
        return EMOTIONS

    def measure(self, runs: int = 5) -> float:
        """Sets and returns cost_ms: the median of `runs` calls on one blank face, after one unmeasured call."""
        blank = {GREY: np.zeros((1, 48, 48), np.uint8), COLOUR: np.zeros((1, 112, 112, 3), np.uint8)}
        crops = {kind: blank[kind] for kind in self.inputs}
        self.cost_ms = median_ms(lambda: self.classify(crops), runs)
        return self.cost_ms


def fast_tier(classifier: ServedClassifier) -> Tier:
    """The fast tier: the served CNN on 48x48 grey crops, with its served test-time augmentation (model/tta.py:
    each face and its mirror image by default)."""
    def classify(crops: Crops) -> np.ndarray:
        return classifier(crops[GREY])

    meta = classifier.meta
    provenance = "ferstream's own CNN trained on FER2013 (research use)"
    if command := meta.get("training_command"):
        provenance += f"; trained by `{command}`"
    tier = Tier(FAST, (GREY,), classify, f"{classifier.spec.name} width {classifier.spec.width:g}, "
                f"{classifier.parameters} parameters, 48x48 grey input", provenance, (str(classifier.path),),
                classifier.source_weights_sha256, classifier.parameters, forms=dict(classifier.form_costs))
    return tier


def accurate_tier(zoo_model, classifier: ServedClassifier, recipe: Recipe = ACCURATE_RECIPE) -> Tier:
    """The accurate tier: zoo_model (zoo.ZooClassifier) on 112x112 colour crops, combined with the fast CNN
    as recipe says."""
    from .zoo import TO_EMOTIONS, ZOO_SHA256, ZOO_SOURCE, softmax

    def zoo_probabilities(faces: np.ndarray) -> np.ndarray:
        return softmax(zoo_model.logits(faces) / recipe.zoo_temperature)[:, TO_EMOTIONS]

    def views(model: Callable[[np.ndarray], np.ndarray], faces: np.ndarray, mirror: bool) -> np.ndarray:
        if not mirror:
            return model(faces)
        both = model(np.concatenate([faces, mirrored(faces)]))
        return (both[:len(faces)] + both[len(faces):]) / 2.0

    def classify(crops: Crops) -> np.ndarray:
        zoo = views(zoo_probabilities, crops[COLOUR], recipe.mirror_zoo)
        if recipe.fast_weight <= 0:
            return zoo.astype(np.float32)
        # A classifier served with flip mirrors its faces itself (logits averaged, model/tta.py).
        fast = views(classifier, crops[GREY], recipe.mirror_fast and classifier.tta != "flip")
        return combine([(zoo, 1.0 - recipe.fast_weight), (fast, recipe.fast_weight)], recipe.combine).astype(np.float32)

    inputs = (COLOUR, GREY) if recipe.fast_weight > 0 else (COLOUR,)
    provenance = (f"{ZOO_SOURCE} (Jiang & Deng, IEEE TIP 2021; licence text beside the model file)"
                  + ("; with the fast tier's CNN" if recipe.fast_weight > 0 else ""))
    files = (str(zoo_model.path),) + ((str(classifier.path),) if recipe.fast_weight > 0 else ())
    return Tier(ACCURATE, inputs, classify, f"MobileFaceNet ({zoo_model.form}) on 112x112 colour input: "
                + recipe.describe(), provenance, files, ZOO_SHA256, forms=dict(zoo_model.form_costs))


def load_tiers(classifier: ServedClassifier, names: tuple[str, ...] = TIER_NAMES,
               runtime: str | None = None, threads: int | None = None) -> dict[str, Tier]:
    """The named tiers built on the served fast classifier (the accurate one loads the zoo model's fastest
    form, zoo.load_zoo), each with its cost measured. ValueError for an unknown name; load errors as
    zoo.load_zoo."""
    unknown = [name for name in names if name not in TIER_NAMES]
    if unknown:
        raise ValueError(unknown_tier(unknown[0]))
    tiers: dict[str, Tier] = {}
    for name in names:
        if name == FAST:
            tiers[name] = fast_tier(classifier)
        else:
            from .zoo import load_zoo

            tiers[name] = accurate_tier(load_zoo(runtime or classifier.runtime, threads), classifier)
        tiers[name].measure()
    return tiers
