"""Cross-stream micro-batching on the one worker thread that runs every detector and CNN call.

The event loop submits frames; the worker decodes, detects and crops each one as it arrives, keeps
gathering frames (from other streams) for up to max_delay_ms or until every open stream has one in
the batch or max_batch crops are waiting, then classifies all crops in one CNN call. Frames whose
caller has gone (cancelled, deadline passed) are dropped before any work is done on them.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from dataclasses import dataclass, field

import grpc
import numpy as np

from ferstream.pipeline.decode import ImageSource
from ferstream.pipeline.errors import FrameError
from ferstream.pipeline.framepath import AnnotatedFrame, DetectedFrame, DetectOptions, FramePath, set_thread_counts
from .metrics import ServerMetrics
from .status import CallError

log = logging.getLogger("ferstream.server")


@dataclass
class Job:
    source: ImageSource
    options: DetectOptions
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    submitted: float = field(default_factory=time.perf_counter)
    # time.monotonic() after which nobody waits for the answer; None: no deadline.
    deadline: float | None = None
    # Set from the event loop when the caller is cancelled; read by the worker.
    abandoned: bool = False

    def settle(self, result: AnnotatedFrame | None = None, error: BaseException | None = None) -> None:
        def apply() -> None:
            if self.future.done():
                return
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(result)

        self.loop.call_soon_threadsafe(apply)

    def expired(self) -> bool:
        return self.abandoned or (self.deadline is not None and time.monotonic() > self.deadline)


STOP = object()


class Batcher:
    def __init__(self, frame_path: FramePath, max_batch: int, max_delay_ms: float, threads: int,
                 metrics: ServerMetrics | None = None) -> None:
        self.frame_path = frame_path
        self.metrics = metrics or ServerMetrics()
        self.max_batch = max_batch
        self.max_delay_s = max_delay_ms / 1000.0
        self.threads = threads
        self.jobs: queue.Queue = queue.Queue()
        # Open streams: a batch that holds a frame from each of them stops waiting for more.
        self.open_streams = 0
        self.thread = threading.Thread(target=self.run, name="fer-worker", daemon=True)
        self.metrics.track_queue(self.jobs.qsize)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.jobs.put(STOP)
        self.thread.join()

    async def annotate(self, source: ImageSource, options: DetectOptions, deadline: float | None = None) -> AnnotatedFrame:
        """The annotated frame, computed on the worker; FrameError for a frame that cannot be annotated."""
        loop = asyncio.get_running_loop()
        job = Job(source, options, loop, loop.create_future(), deadline=deadline)
        self.jobs.put(job)
        try:
            return await job.future
        except asyncio.CancelledError:
            job.abandoned = True
            raise

    # Everything below runs on the worker thread.

    def run(self) -> None:
        set_thread_counts(self.threads)
        while True:
            job = self.jobs.get()
            if job is STOP:
                return
            stop = self.run_batch(job)
            if stop:
                return

    def run_batch(self, first: Job) -> bool:
        """Gather, detect and classify one batch starting with first; True when STOP was seen."""
        batch: list[tuple[Job, DetectedFrame]] = []
        jobs_seen = 0
        gather_until = time.perf_counter() + self.max_delay_s
        job: Job | object = first
        stop = False
        while True:
            jobs_seen += 1
            detected = self.detect(job)
            if detected is not None:
                batch.append((job, detected))
            crops = sum(len(detected.crops) for _, detected in batch)
            if crops >= self.max_batch or jobs_seen >= max(1, self.open_streams):
                break
            try:
                job = self.jobs.get(timeout=max(0.0, gather_until - time.perf_counter()))
            except queue.Empty:
                break
            if job is STOP:
                stop = True
                break
        self.classify(batch)
        return stop

    def detect(self, job: Job) -> DetectedFrame | None:
        if job.expired():
            job.settle(error=CallError(grpc.StatusCode.DEADLINE_EXCEEDED, "the caller stopped waiting"))
            return None
        started = time.perf_counter()
        try:
            detected = self.frame_path.detect(job.source, job.options)
        except FrameError as error:
            job.settle(error=error)
            return None
        except Exception as error:  # a bug or an OpenCV failure must cost one frame, not the worker
            log.exception("detection failed")
            job.settle(error=CallError(grpc.StatusCode.INTERNAL, f"detection failed: {error}"))
            return None
        detected.timing.queue_ms = (started - job.submitted) * 1000.0
        return detected

    def classify(self, batch: list[tuple[Job, DetectedFrame]]) -> None:
        if not batch:
            return
        started = time.perf_counter()
        try:
            probabilities = self.frame_path.classify(np.concatenate([detected.crops for _, detected in batch]))
        except Exception as error:
            log.exception("classification failed")
            for job, _ in batch:
                job.settle(error=CallError(grpc.StatusCode.INTERNAL, f"classification failed: {error}"))
            return
        classify_ms = (time.perf_counter() - started) * 1000.0
        self.metrics.batch(len(batch), len(probabilities))
        offset = 0
        for job, detected in batch:
            count = len(detected.crops)
            detected.timing.classify_ms = classify_ms
            detected.timing.batch_faces = len(probabilities)
            job.settle(self.frame_path.assemble(detected, probabilities[offset:offset + count]))
            offset += count
