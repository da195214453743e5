"""fer-bench classifier --model accurate: faces/s of the accurate tier's classifier alone.

One run times, each labelled "MODEL, RUNTIME":
  accurate                     the served tier as the server runs it (model/tiers.py): the zoo model's
                               fastest form on the face and its mirror image, the fast CNN on both, combined
  zoo FORM, RUNTIME            the zoo expression model alone (model/zoo.py), each form (int8, f32) in each
                               installed runtime, one view per face
Batches are tiled from the real faces of the test frames (hand-drawn boxes, cut as the server cuts them for
this tier: 112x112 colour by the box fallback, 48x48 grey), and each call is the whole classifier call.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ferstream.model import zoo
from ferstream.model.runtime import load_classifier
from ferstream.model.tiers import ACCURATE, COLOUR, GREY, load_tiers
from ferstream.pipeline.crops import colour_crops, face_crops
from ferstream.pipeline.detectors import Detection

from .classifier import ROUNDS, ClassifierBench, ClassifierTiming, ModelDescription, fastest, installed_runtimes, \
    time_classifier
from .photos import TestFrame
from .report import markdown_table


def real_faces(frames: Sequence[TestFrame]) -> tuple[np.ndarray, np.ndarray]:
    """(N, 112, 112, 3) colour and (N, 48, 48) grey crops of every hand-boxed face, cut as the server cuts them."""
    boxes = [[Detection(x, y, w, h, 1.0) for x, y, w, h in frame.boxes] for frame in frames]
    colour = np.concatenate([colour_crops(frame.pixels, found) for frame, found in zip(frames, boxes)])
    grey = np.concatenate([face_crops(frame.pixels, found) for frame, found in zip(frames, boxes)])
    return colour, grey


def describe(label: str, runtime: str, source: str, summary: str) -> ModelDescription:
    """A ModelDescription of the MobileFaceNet (its size is OpenCV Zoo's, not counted here)."""
    return ModelDescription(label, runtime, source, "mobilefacenet", 1.0, [], 0, 0, summary)


def run_accurate_bench(frames: Sequence[TestFrame], batch_sizes: Sequence[int], thread_counts: Sequence[int],
                       seconds: float) -> ClassifierBench:
    """Every (model, threads, batch) combination, each timed for about `seconds` in ROUNDS slices taken in
    turns (as run_classifier_bench). The tier's input is a batch index into the real faces, so the tier's
    call gets both of its crop kinds."""
    colour, grey = real_faces(frames)
    forms = [path for path in (zoo.ZOO_INT8, zoo.ZOO_F32) if path.is_file()]
    runtimes = list(installed_runtimes())
    descriptions = [describe(ACCURATE, runtimes[0], str(zoo.ZOO_INT8.parent), "the served accurate tier")]
    descriptions += [describe(f"zoo {'int8' if path == zoo.ZOO_INT8 else 'f32'}, {runtime}", runtime, str(path),
                              "OpenCV Zoo's expression model alone") for path in forms for runtime in runtimes]
    timings = []
    for threads in thread_counts:
        tier = load_tiers(load_classifier(None, None, threads), (ACCURATE,), None, threads)[ACCURATE]

        def served(index: np.ndarray, tier=tier) -> np.ndarray:
            return tier.classify({COLOUR: colour[index], GREY: grey[index]})

        models = [(ACCURATE, served, np.arange(len(colour)))]
        for description, (path, runtime) in zip(descriptions[1:], [(p, r) for p in forms for r in runtimes]):
            models.append((description.label, zoo.open_zoo(path, runtime, threads), colour))
        for batch in batch_sizes:
            rounds: dict[str, list[ClassifierTiming]] = {label: [] for label, _, _ in models}
            for _ in range(ROUNDS):
                for label, classify, inputs in models:
                    rounds[label].append(time_classifier(label, classify, inputs, threads, batch, seconds / ROUNDS))
            timings += [fastest(rounds[label]) for label, _, _ in models]
    return ClassifierBench(descriptions, timings, installed_runtimes())


def accurate_table(bench: ClassifierBench) -> str:
    """Markdown: the models, then one row per timing grouped by threads and batch."""
    models = markdown_table(("model", "runtime", "what", "source"),
                            [(m.label, m.runtime, m.summary, m.source) for m in bench.models])
    rows = [(t.model, t.threads, t.batch, t.faces_per_s, t.ms_per_face, t.cpu_ms_per_face)
            for t in sorted(bench.timings, key=lambda t: (t.threads, t.batch))]
    return f"{models}\n\n" + markdown_table(("model", "threads", "batch", "faces/s", "ms/face", "CPU ms/face"), rows)
