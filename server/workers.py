"""The workers: a pool of detection threads, and one batcher thread that classifies across streams.

    event loop ── submit(Job) ──► jobs queue ──► detection worker 1..N ──► batcher ──► classifier call
        ▲                                       (decode, detect, crop;      (gathers detected frames of
        └──── asyncio futures, settled with     OpenCV single-threaded,     several streams for up to
              call_soon_threadsafe ◄─────────── own detectors each)         --max-delay-ms; one call)

Decoding and detection are OpenCV calls that release the GIL, so N workers run them on N cores side by
side; each worker owns its detectors (they are not thread-safe). Classification stays on one thread:
the classifier is fastest on batches, and the crops of frames from different streams share one call.

The batcher waits for more frames only while a frame of a stream not yet in the batch is being detected
(so it never waits for a stream's own next frame), for at most --max-delay-ms, and stops at --max-batch
crops. A job whose caller stopped waiting (deadline passed, call cancelled) is dropped at the next stage
boundary: before decoding, after it, before each of the detector's network runs (a level or a tile), before
cropping and before classification; a large frame nobody waits for holds a worker one network run at most.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
import numpy as np

from ferstream.pipeline.detectors import DetectorKind, DetectorStatus
from ferstream.pipeline.errors import Abandoned, FrameError
from ferstream.pipeline.framepath import AnnotatedFrame, DetectedFrame, DetectOptions, FramePath
from ferstream.v1 import emotion_pb2 as pb

from . import protoconv
from .heap import LARGE_REQUEST_BYTES, release_freed
from .metrics import ServerMetrics
from .status import CallError, status_code

log = logging.getLogger("ferstream.server")

Outcome = AnnotatedFrame | FrameError


@dataclass(eq=False)
class Job:
    """One frame's trip through the workers, from submission to its outcome.

    The event loop awaits `answered` (an AnnotatedFrame or the FrameError that stopped it; never an
    exception) and, for stream frames, `detected` (set once decoding and detection are over, either way).
    """

    # None once a detection worker has taken them.
    image: pb.Image | None
    options: pb.AnnotateOptions | None
    loop: asyncio.AbstractEventLoop
    answered: asyncio.Future
    # None when nobody waits for the end of detection (unary calls): one wake-up of the event loop less.
    detected: asyncio.Future | None
    # Frames of one stream never wait for each other in a batch; a unary call is its own stream.
    stream: object
    # time.perf_counter() when the frame arrived (its answer's total_ms starts here) and when it was submitted.
    arrived: float
    submitted: float = field(default_factory=time.perf_counter)
    # time.monotonic() after which nobody waits for the answer; None: no deadline.
    deadline: float | None = None
    # Set from the event loop when the caller is gone; read by the workers.
    abandoned: bool = False

    def expired(self) -> bool:
        """True when nobody will read the answer: abandoned, or past its deadline."""
        return self.abandoned or (self.deadline is not None and time.monotonic() > self.deadline)

    def abandon(self) -> None:
        """The caller is gone (event loop side): the workers skip what is left of this job."""
        self.abandoned = True

    # Called from worker threads.

    def finish_detection(self) -> None:
        """Detection is over; the stream may hand its next frame to the workers."""
        if self.detected is not None:
            self.loop.call_soon_threadsafe(_resolve, self.detected, None)

    def settle(self, outcome: Outcome) -> None:
        """The answer (or the error that ends this frame), handed to the event loop."""
        self.loop.call_soon_threadsafe(_settle_all, [(self, outcome)])


def settle_all(settled: list[tuple[Job, Outcome]]) -> None:
    """Hands a batch's answers to their event loops with one wake-up per loop, not one per frame."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Job, Outcome]]] = {}
    for job, outcome in settled:
        by_loop.setdefault(job.loop, []).append((job, outcome))
    for loop, answers in by_loop.items():
        loop.call_soon_threadsafe(_settle_all, answers)


def _resolve(future: asyncio.Future | None, value: object) -> None:
    if future is not None and not future.done():
        future.set_result(value)


def _settle_all(settled: list[tuple[Job, Outcome]]) -> None:
    for job, outcome in settled:
        _resolve(job.detected, None)
        _resolve(job.answered, outcome)


STOP = object()
# A blank VGA frame: the first call of each detector network allocates and picks kernels (up to a second on
# a busy machine), which would otherwise land on whichever client's frame reaches each worker first.
WARM_UP_FRAME_SHAPE = (480, 640, 3)


def warm_up(path: FramePath) -> None:
    """Runs every available detector of path once on a blank frame."""
    blank = np.zeros(WARM_UP_FRAME_SHAPE, np.uint8)
    for kind, status in path.detectors.items():
        if status.available:
            path.detect(blank, DetectOptions(detector=kind))


class Batcher:
    """The classifier thread: gathers detected frames across streams and classifies them in one call each."""

    def __init__(self, frame_path: FramePath, max_batch: int, max_delay_ms: float, metrics: ServerMetrics,
                 finished: Callable[[Job], None]) -> None:
        self.frame_path = frame_path
        self.max_batch = max_batch
        self.max_delay_s = max_delay_ms / 1000.0
        self.metrics = metrics
        self.finished = finished
        self.condition = threading.Condition()
        self.ready: collections.deque[tuple[Job, DetectedFrame]] = collections.deque()
        # Frames per stream submitted and not yet detected: the ones a batch may wait for.
        self.coming: collections.Counter = collections.Counter()
        self.stopping = False
        self.thread = threading.Thread(target=self.run, name="fer-batcher", daemon=True)

    def start(self) -> None:
        """Starts the classifier thread."""
        self.thread.start()

    def stop(self) -> None:
        """Classifies what is ready, then ends the thread (call after the detection workers have stopped)."""
        with self.condition:
            self.stopping = True
            self.condition.notify()
        self.thread.join()

    # Called by the detection workers (and by submit, for `expect`).

    def expect(self, stream: object) -> None:
        """A frame of stream has been submitted: batches may wait for it."""
        with self.condition:
            self.coming[stream] += 1

    def forget(self, stream: object) -> None:
        """A frame of stream will not come (it failed or expired before detection finished)."""
        with self.condition:
            self.release(stream)
            self.condition.notify()

    def deliver(self, job: Job, detected: DetectedFrame) -> None:
        """A detected frame, ready for classification."""
        with self.condition:
            self.release(job.stream)
            self.ready.append((job, detected))
            self.condition.notify()

    def release(self, stream: object) -> None:
        """One frame of stream is no longer coming (caller holds the condition)."""
        self.coming[stream] -= 1
        if self.coming[stream] <= 0:
            del self.coming[stream]

    # The classifier thread.

    def run(self) -> None:
        """The classifier thread's loop: gather a batch, classify it, until stopped."""
        while (batch := self.gather()) is not None:
            self.classify(batch)

    def gather(self) -> list[tuple[Job, DetectedFrame]] | None:
        """The next batch, or None once stopping with nothing ready."""
        with self.condition:
            while not self.ready:
                if self.stopping:
                    return None
                self.condition.wait()
            batch = [self.ready.popleft()]
            streams = {batch[0][0].stream}
            crops = len(batch[0][1].crops)
            give_up = time.perf_counter() + self.max_delay_s
            while crops < self.max_batch:
                if self.ready:
                    job, detected = self.ready.popleft()
                    batch.append((job, detected))
                    streams.add(job.stream)
                    crops += len(detected.crops)
                    continue
                left = give_up - time.perf_counter()
                if left <= 0 or self.stopping or all(stream in streams for stream in self.coming):
                    break
                self.condition.wait(left)
        return batch

    def classify(self, batch: list[tuple[Job, DetectedFrame]]) -> None:
        """One classifier call for the live frames of batch; settles each job with its answer or error."""
        live = [(job, detected) for job, detected in batch if not job.expired()]
        for job, _ in batch:
            if job.expired():  # nobody reads this answer: not classified
                self.metrics.frames_expired.inc()
                self.finished(job)
                job.settle(CallError(grpc.StatusCode.DEADLINE_EXCEEDED, "the caller stopped waiting"))
        if not live:
            return
        try:
            answers = self.frame_path.classify_frames([detected for _, detected in live])
        except Exception as error:  # a bug or a runtime failure costs this batch, not the thread
            log.exception("classification failed")
            for job, _ in live:
                self.fail(job, CallError(grpc.StatusCode.INTERNAL, f"classification failed: {error}"))
            return
        self.metrics.batch(len(live), answers[0].timing.batch_faces)
        now = time.perf_counter()
        for (job, _), answer in zip(live, answers):
            answer.timing.total_ms = (now - job.arrived) * 1000.0
            self.metrics.answered(answer)
            self.finished(job)
        settle_all([(job, answer) for (job, _), answer in zip(live, answers)])

    def fail(self, job: Job, error: FrameError) -> None:
        """Settles job with error (counted by status code)."""
        self.metrics.failed(status_code(error))
        self.finished(job)
        # An outcome now, no longer raised: its traceback would hold the frames that decoded the request's
        # image, and through the job its own future, a cycle that kept eight refused 45 MB images (0.85-1.3 GB)
        # until the garbage collector's next full pass, which an idle server may not make for a long time.
        job.settle(error.with_traceback(None))


class FrameWorkers:
    """The detection pool and the batcher behind one interface: submit a frame, await its outcome.

    `load_detectors` gives each detection worker after the first its own detectors (the first uses the
    frame path's). Thread counts are the caller's business: set them once per process before start().
    """

    def __init__(self, frame_path: FramePath, load_detectors: Callable[[], dict[DetectorKind, DetectorStatus]],
                 detect_workers: int, max_batch: int, max_delay_ms: float, metrics: ServerMetrics) -> None:
        if detect_workers < 1:
            raise ValueError(f"need at least one detection worker, got {detect_workers}")
        self.frame_path = frame_path
        self.load_detectors = load_detectors
        self.metrics = metrics
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.count_lock = threading.Lock()
        self.in_flight = 0
        # One frame path per detection thread, each with its own detectors; filled by start().
        self.paths: list[FramePath] = []
        self.batcher = Batcher(frame_path, max_batch, max_delay_ms, metrics, self.finished)
        self.threads = [threading.Thread(target=self.run, args=(number,), name=f"fer-detect-{number}", daemon=True)
                        for number in range(1, detect_workers + 1)]
        metrics.track_queue(self.jobs.qsize, lambda: self.in_flight)

    def start(self) -> None:
        """Loads and warms up every worker's detectors (blocking; seconds), then starts the threads."""
        self.paths = [self.frame_path] + [self.frame_path.with_detectors(self.load_detectors())
                                          for _ in self.threads[1:]]
        for path in self.paths:
            warm_up(path)
        self.batcher.start()
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        """Finishes every submitted job, then stops the threads (blocking)."""
        for _ in self.threads:
            self.jobs.put(STOP)
        for thread in self.threads:
            thread.join()
        self.batcher.stop()

    def submit(self, image: pb.Image, options: pb.AnnotateOptions, deadline: float | None, stream: object,
               arrived: float, track_detection: bool = True) -> Job:
        """Hands one frame to the workers (event loop side); its Job's futures say how it went.

        deadline: a time.monotonic() reading, or None; stream: any key shared by the frames of one stream;
        arrived: the time.perf_counter() reading its total_ms counts from; track_detection: set job.detected.
        """
        loop = asyncio.get_running_loop()
        job = Job(image, options, loop, loop.create_future(), loop.create_future() if track_detection else None,
                  stream, arrived, deadline=deadline)
        with self.count_lock:
            self.in_flight += 1
        self.batcher.expect(stream)
        self.jobs.put(job)
        return job

    async def annotate(self, image: pb.Image, options: pb.AnnotateOptions, deadline: float | None) -> Outcome:
        """One unary call's frame: its AnnotatedFrame, or the FrameError that stopped it."""
        self.metrics.frames_received.inc()
        job = self.submit(image, options, deadline, stream=object(), arrived=time.perf_counter(),
                          track_detection=False)
        try:
            return await job.answered
        except asyncio.CancelledError:
            job.abandon()
            raise

    def finished(self, job: Job) -> None:
        """One job fewer in flight (any thread); called before its answer is handed over."""
        with self.count_lock:
            self.in_flight -= 1

    # The detection threads.

    def run(self, number: int) -> None:
        """Detection thread `number` (1-based): detect jobs until STOP."""
        path = self.paths[number - 1]
        while (job := self.jobs.get()) is not STOP:
            self.detect(path, job)

    def detect(self, path: FramePath, job: Job) -> None:
        """Decode, detect and crop one job on this thread, or drop it if its caller stopped waiting."""
        started = time.perf_counter()
        if job.expired():
            self.drop(job)
            return
        # The request's bytes are not needed once decoded: let them go before the frame waits for its batch.
        image, options, job.image, job.options = job.image, job.options, None, None
        if image.ByteSize() >= LARGE_REQUEST_BYTES:
            release_freed()  # what gRPC freed receiving it (heap.py)
        try:
            detected = path.detect(protoconv.image_source(image), protoconv.detect_options(options), job.expired)
        except Abandoned:
            self.drop(job)
            return
        except FrameError as error:
            self.batcher.forget(job.stream)
            self.batcher.fail(job, error)
            return
        except Exception as error:  # a bug or an OpenCV failure must cost one frame, not the worker
            log.exception("detection failed")
            self.batcher.forget(job.stream)
            self.batcher.fail(job, CallError(grpc.StatusCode.INTERNAL, f"detection failed: {error}"))
            return
        detected.timing.queue_ms = (started - job.submitted) * 1000.0
        job.finish_detection()
        self.batcher.deliver(job, detected)

    def drop(self, job: Job) -> None:
        """Ends a job whose caller stopped waiting: dropped, not failed (nobody reads this answer)."""
        self.metrics.frames_expired.inc()
        self.batcher.forget(job.stream)
        self.finished(job)
        job.settle(CallError(grpc.StatusCode.DEADLINE_EXCEEDED, "the caller stopped waiting"))
