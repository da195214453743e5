"""Prometheus metrics of one server process: frames, faces, streams, batches, queue and stage latencies.

Each server owns its registry (not the process-global one), so tests and replicas never share counters.
Every method is safe to call from any thread (the workers record answers, the event loop records streams).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from ferstream.pipeline.framepath import AnnotatedFrame

log = logging.getLogger("ferstream.server")

# Seconds; frames take milliseconds to a second or two on a busy CPU.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
STAGES = ("decode", "detect", "classify", "queue", "total")


class ServerMetrics:
    """The counters, gauges and histograms of one server, in their own registry (`serve` exposes them)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.frames_received = Counter("ferstream_frames_received",
                                       "Frames received (stream frames and Annotate calls)", registry=registry)
        self.frames_answered = Counter("ferstream_frames_answered", "Frames answered with faces (possibly none)",
                                       registry=registry)
        self.frames_skipped = Counter("ferstream_frames_skipped", "Stream frames skipped because a newer one came",
                                      registry=registry)
        self.frames_failed = Counter("ferstream_frames_failed", "Frames answered with an error, by gRPC status code",
                                     ["code"], registry=registry)
        self.frames_expired = Counter("ferstream_frames_expired",
                                      "Frames dropped before any work because their caller stopped waiting "
                                      "(deadline passed or call cancelled)", registry=registry)
        self.faces = Counter("ferstream_faces", "Faces found and classified", registry=registry)
        self.active_streams = Gauge("ferstream_active_streams", "StreamAnnotate calls open now", registry=registry)
        self.batch_faces = Histogram("ferstream_batch_faces", "Face crops per classifier batch",
                                     buckets=BATCH_BUCKETS, registry=registry)
        self.batch_frames = Histogram("ferstream_batch_frames", "Frames per classifier batch",
                                      buckets=BATCH_BUCKETS, registry=registry)
        self.queue_depth = Gauge("ferstream_queue_depth", "Frames waiting for a detection worker", registry=registry)
        self.in_flight = Gauge("ferstream_frames_in_flight", "Frames handed to the workers and not yet answered",
                               registry=registry)
        self.stage_seconds = Histogram("ferstream_stage_seconds", "Time per frame in each stage of the frame path",
                                       ["stage"], buckets=LATENCY_BUCKETS, registry=registry)
        self.model_frames = Counter("ferstream_model_frames", "Frames answered, by the emotion model that "
                                    "classified them", ["model"], registry=registry)
        self.model_faces = Counter("ferstream_model_faces", "Faces classified, by emotion model", ["model"],
                                   registry=registry)
        self.model_classify_seconds = Histogram("ferstream_model_classify_seconds",
                                                "Time per frame in its emotion model's classifier call, by model",
                                                ["model"], buckets=LATENCY_BUCKETS, registry=registry)
        # Looked up once: a labelled child costs a lock and a dict lookup per call.
        self.stage_children = [self.stage_seconds.labels(stage) for stage in STAGES]

    def track_queue(self, depth: Callable[[], int], in_flight: Callable[[], int]) -> None:
        """Reads the queue depth and the frames in flight from the workers at scrape time."""
        self.queue_depth.set_function(depth)
        self.in_flight.set_function(in_flight)

    def answered(self, frame: AnnotatedFrame) -> None:
        """Counts one answered frame, its faces, and each stage's time."""
        self.frames_answered.inc()
        self.faces.inc(len(frame.faces))
        self.model_frames.labels(frame.model).inc()
        self.model_faces.labels(frame.model).inc(len(frame.faces))
        self.model_classify_seconds.labels(frame.model).observe(frame.timing.classify_ms / 1000.0)
        timing = frame.timing
        for child, milliseconds in zip(self.stage_children, (timing.decode_ms, timing.detect_ms, timing.classify_ms,
                                                             timing.queue_ms, timing.total_ms)):
            child.observe(milliseconds / 1000.0)

    def failed(self, code: grpc.StatusCode) -> None:
        """Counts one frame answered with an error."""
        self.frames_failed.labels(code.name).inc()

    def batch(self, frames: int, faces: int) -> None:
        """Counts one classifier call over `frames` frames holding `faces` crops."""
        self.batch_frames.observe(frames)
        self.batch_faces.observe(faces)

    def serve(self, host: str, port: int) -> int:
        """Starts the HTTP endpoint on a daemon thread; the port it listens on."""
        http_server, _ = start_http_server(port, addr=host, registry=self.registry)
        bound = http_server.server_address[1]
        log.info("metrics on http://%s:%d/metrics", host, bound)
        return bound
