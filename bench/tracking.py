"""fer-bench tracking: what face tracks add to each stream frame on the server, in milliseconds.

Two parts, each timed on its own over the same frames:
  tracker       Stream.track's work: FaceTracker.track on the frame path's faces (Hungarian assignment,
                smoothing), as the server runs it once per answered frame
  track fields  the Face messages' track_id and track_scores: add_faces with tracks minus without
Each is the fastest of ROUNDS rounds (the two message timings taking turns), so that other load on the
machine does not count.
Frames hold N faces (4 by default: tracking's budget is 0.5 ms per frame with four) that drift along
smooth paths with up to 3 px of jitter, so every frame matches every track, with random probabilities
(Dirichlet, seeded). Nothing else of the server runs: the numbers are the tracks' own cost.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from ferstream.model.labels import EMOTIONS
from ferstream.pipeline.detectors import Detection
from ferstream.pipeline.framepath import AnnotatedFrame, FaceResult
from ferstream.pipeline.tracking import DEFAULT_SMOOTHING_MS, FaceTracker
from ferstream.server.protoconv import add_faces
from ferstream.v1 import emotion_pb2 as pb

from .report import markdown_table
from .timing import repeat_for

FRAME_SIZE = (640, 480)
FRAME_MS = 1000 / 30
# Distinct frames the paths go through before repeating (they close on themselves, so the tracks never jump).
PATH_FRAMES = 300
# The budget set for tracking and smoothing together, per frame with four faces.
BUDGET_MS = 0.5
# Rounds each timing is cut into (the message timings with and without tracks taking turns).
ROUNDS = 5


@dataclass(frozen=True)
class TrackingBench:
    """Milliseconds per frame with `faces` faces: the tracker, the track fields, and both."""

    faces: int
    frames_timed: int  # frames the tracker was timed on, all rounds together
    smoothing_ms: float
    tracker_ms: float
    track_fields_ms: float
    # tracker_ms + track_fields_ms
    total_ms: float
    budget_ms: float = BUDGET_MS


def moving_faces(faces: int, seed: int = 0) -> list[AnnotatedFrame]:
    """PATH_FRAMES frames of `faces` 80 px faces on a FRAME_SIZE frame, each circling its own spot (radius
    40 px, one turn per PATH_FRAMES frames) with up to 3 px of jitter, with random probabilities."""
    rng = np.random.default_rng(seed)
    width, height = FRAME_SIZE
    columns = math.ceil(math.sqrt(faces))
    spots = [(60 + (index % columns) * (width - 200) / max(1, columns - 1),
              60 + (index // columns) * (height - 200) / max(1, columns - 1)) for index in range(faces)]
    frames = []
    for k in range(PATH_FRAMES):
        angle = 2 * math.pi * k / PATH_FRAMES
        results = []
        for x, y in spots:
            dx, dy = rng.integers(-3, 4, 2)
            box = Detection(int(x + 40 * math.cos(angle) + dx), int(y + 40 * math.sin(angle) + dy), 80, 80, 0.9)
            results.append(FaceResult(box, rng.dirichlet(np.ones(len(EMOTIONS))).astype(np.float32),
                                      tuple(range(len(EMOTIONS)))))
        frames.append(AnnotatedFrame(width, height, results))
    return frames


def run_tracking_bench(faces: int, seconds: float, smoothing_ms: float = DEFAULT_SMOOTHING_MS) -> TrackingBench:
    """Times the tracker and the track fields for about seconds / 3 each (and the fields' baseline); at
    least PATH_FRAMES frames each."""
    frames = moving_faces(faces)
    tracker = FaceTracker()
    clock = itertools.count()
    cycle = itertools.cycle(frames)

    def track() -> None:
        tracker.track(next(cycle).faces, next(clock) * FRAME_MS, smoothing_ms)

    tracker_times = [repeat_for(track, seconds / 3 / ROUNDS, PATH_FRAMES) for _ in range(ROUNDS)]
    tracker_ms = min(m.ms_per_call for m in tracker_times)
    tracks = [FaceTracker().track(frame.faces, 0.0, smoothing_ms) for frame in frames]
    pairs = itertools.cycle(zip(frames, tracks))
    plain = itertools.cycle(frames)
    with_tracks, without = [], []
    for _ in range(ROUNDS):
        with_tracks.append(repeat_for(lambda: add_faces(pb.StreamAnnotateResponse().faces, *next(pairs)),
                                      seconds / 3 / ROUNDS, PATH_FRAMES))
        without.append(repeat_for(lambda: add_faces(pb.StreamAnnotateResponse().faces, next(plain)),
                                  seconds / 3 / ROUNDS, PATH_FRAMES))
    fields_ms = max(0.0, min(m.ms_per_call for m in with_tracks) - min(m.ms_per_call for m in without))
    return TrackingBench(faces, sum(m.calls for m in tracker_times), smoothing_ms, tracker_ms, fields_ms,
                         tracker_ms + fields_ms)


def tracking_table(bench: TrackingBench) -> str:
    """Markdown: one row, milliseconds per frame, and the budget."""
    return markdown_table(("faces", "smoothing ms", "tracker ms/frame", "track fields ms/frame", "total ms/frame",
                           "budget ms/frame"),
                          [(bench.faces, bench.smoothing_ms, bench.tracker_ms, bench.track_fields_ms, bench.total_ms,
                            bench.budget_ms)])
