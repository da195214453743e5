"""Server-side streams: each open StreamAnnotate call is one Stream, which receives its frames, hands the
newest one to the workers, answers them in order on their face tracks; the registry counts and limits them.

A client that sends faster than the server answers loses stale frames, never gains latency: each stream
keeps at most one frame that no worker has started (a newer one replaces it and its id is reported as
skipped), and at most IN_FLIGHT frames of the stream in the workers, so the next frame is decoded and
detected while the previous one is being classified. Answers leave in the order the frames were taken, and
each stream's face tracks (ferstream.pipeline.tracking) follow its answered frames in that order. The call's
status is not decided here: a stream limit raises StreamEnded, which the servicer maps to a status code.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from ferstream.pipeline.errors import FrameError, invalid
from ferstream.pipeline.tracking import DEFAULT_SMOOTHING_MS, FaceTracker, check_smoothing_ms
from ferstream.v1 import emotion_pb2 as pb

from . import protoconv
from .metrics import ServerMetrics
from .status import status_code
from .workers import FrameWorkers, Job, Outcome

log = logging.getLogger("ferstream.server")

# Frames of one stream in the workers at once: one being classified while the next is decoded and detected.
# More would only queue behind the same classifier and add latency.
IN_FLIGHT = 2


@dataclass
class StreamFrame:
    """One received StreamAnnotateRequest on its way through the stream: when it came (time.perf_counter),
    whom it replaced, and, once taken, its track settings and its work in the workers."""

    frame_id: int
    # The StreamAnnotateRequest; None once taken (the workers hold it until decoded: a raw frame can be 48 MiB).
    request: pb.StreamAnnotateRequest | None
    arrived: float = field(default_factory=time.perf_counter)
    # Ids of older frames this one replaced in the slot; reported in its answer's skipped_frame_ids.
    skipped: list[int] = field(default_factory=list)
    # The frame's time for track smoothing, in milliseconds: the client's capture time when the request
    # carries one, else `arrived`.
    time_ms: float = 0.0
    # Time constant of the track smoothing for this frame, in milliseconds; 0: off.
    smoothing_ms: float = DEFAULT_SMOOTHING_MS
    # Its trip through the workers; None when it was refused before (`refused` says why).
    job: Job | None = None
    refused: FrameError | None = None

    async def outcome(self) -> Outcome:
        """Its AnnotatedFrame, or the FrameError that stopped it (never raises one)."""
        return self.refused if self.job is None else await self.job.answered


def track_settings(request: pb.StreamAnnotateRequest, arrived: float, default_ms: float) -> tuple[float, float]:
    """(frame time, smoothing time constant), both in milliseconds, for a stream request's face tracks.

    The frame time is the request's capture_time_ms, else its arrival (`arrived`, a time.perf_counter()
    reading in seconds); the time constant is its options' track_smoothing_ms, else default_ms (the server's
    --track-smoothing-ms). BadInput (INVALID_ARGUMENT) for a non-finite capture time or a negative or
    non-finite time constant.
    """
    time_ms = request.capture_time_ms if request.HasField("capture_time_ms") else arrived * 1000.0
    if not math.isfinite(time_ms):
        raise invalid(f"capture_time_ms must be a finite number of milliseconds, got {time_ms}")
    smoothing_ms = default_ms
    if request.options.HasField("track_smoothing_ms"):
        try:
            smoothing_ms = check_smoothing_ms(request.options.track_smoothing_ms)
        except ValueError as error:
            raise invalid(f"track_smoothing_ms: {error}") from None
    return time_ms, smoothing_ms


class NewestFrameSlot:
    """Holds at most one unstarted frame; putting a newer one skips the older. Event-loop only."""

    def __init__(self) -> None:
        self.pending: StreamFrame | None = None
        self.skipped: list[int] = []
        self.received = 0
        self.closed = False
        self.changed = asyncio.Event()

    def put(self, frame: StreamFrame) -> None:
        """Keeps frame as the next one, replacing (skipping) an unstarted older one."""
        self.received += 1
        if self.closed:  # the server is draining: frames sent after that are not taken
            return
        if self.pending is not None:
            self.skipped.append(self.pending.frame_id)
        self.pending = frame
        self.changed.set()

    def close(self) -> None:
        """No more frames will come; the pending one is still handed out."""
        self.closed = True
        self.changed.set()

    async def take(self) -> StreamFrame | None:
        """The newest frame, carrying the ids it replaced, waiting for one; None once closed and empty."""
        while self.pending is None:
            if self.closed:
                return None
            self.changed.clear()
            await self.changed.wait()
        frame, self.pending = self.pending, None
        frame.skipped, self.skipped = self.skipped, []
        return frame


@dataclass(frozen=True)
class StreamLimits:
    """How long one stream may last; the defaults and their reasons live in ServerConfig."""

    idle_s: float  # ServerConfig.idle_timeout_s
    lifetime_s: float  # ServerConfig.max_stream_seconds; 0: none


@dataclass(frozen=True)
class StreamDefaults:
    """What a stream frame gets when its request does not say: the model tier (ServerConfig.stream_model,
    a tier the frame path serves) and the track smoothing time constant in milliseconds
    (ServerConfig.track_smoothing_ms; ValueError for a negative or non-finite one)."""

    model: str
    smoothing_ms: float = DEFAULT_SMOOTHING_MS

    def __post_init__(self) -> None:
        check_smoothing_ms(self.smoothing_ms)


class StreamEnded(Exception):
    """A stream limit ended the stream; `message` is the one line for the client."""

    # How the stream ended, for its closing log line.
    ending = "ended"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class IdleTimeout(StreamEnded):
    """No frame came for StreamLimits.idle_s seconds."""

    ending = "idle"


class LifetimeReached(StreamEnded):
    """The stream has lasted StreamLimits.lifetime_s seconds."""

    ending = "lifetime reached"


class StreamsFull(Exception):
    """--max-streams streams are already open."""


@dataclass
class StreamStats:
    """What one stream did, for its closing log line."""

    number: int
    peer: str
    opened: float = field(default_factory=time.monotonic)
    answered: int = 0
    errors: int = 0
    dropped: int = 0

    def summary(self, received: int) -> str:
        """One line: frames received, answered (with errors), dropped, and the answered rate."""
        seconds = time.monotonic() - self.opened
        fps = self.answered / seconds if seconds > 0 else 0.0
        return (f"stream {self.number} closed: {received} frames received, {self.answered} answered "
                f"({self.errors} with errors), {self.dropped} dropped, {fps:.1f} fps over {seconds:.1f} s")


# What the feeder puts on the answer queue after the last frame it took.
_END = object()


class Stream:
    """One open StreamAnnotate call: it receives its requests, submits the newest frame to the workers,
    tracks the faces of the answered frames and answers each frame taken, in order (`answers`).

    deadline: the call's, a time.monotonic() reading, or None; the workers drop a frame of the stream
    once it has passed. Event-loop only.
    """

    def __init__(self, number: int, peer: str, limits: StreamLimits, defaults: StreamDefaults,
                 workers: FrameWorkers, metrics: ServerMetrics, deadline: float | None) -> None:
        self.slot = NewestFrameSlot()
        self.stats = StreamStats(number, peer)
        self.limits = limits
        self.defaults = defaults
        self.workers = workers
        self.metrics = metrics
        self.deadline = deadline
        self.tracker = FaceTracker()
        # How the stream ended, for its closing log line; "cancelled" until it ends otherwise.
        self.ending = "cancelled"

    async def answers(self, requests: AsyncIterator[pb.StreamAnnotateRequest]
                      ) -> AsyncIterator[pb.StreamAnnotateResponse]:
        """One answer per frame taken from requests, in order, IN_FLIGHT frames deep in the workers.

        A receive task puts every request into the newest-frame slot; a feeder task takes the newest frame
        once the previous one has been detected and fewer than IN_FLIGHT frames wait for their answer, and
        submits it; this generator awaits each answer in turn. Ends when the client has half-closed (or the
        server drains) and every frame taken is answered; raises the feeder's StreamEnded (IdleTimeout,
        LifetimeReached) after the frames before it are answered. Closing it (the call is cancelled)
        abandons every frame still in the workers.
        """
        receiver = asyncio.create_task(self.receive(requests), name=f"stream-{self.stats.number}-receiver")
        taken: asyncio.Queue[StreamFrame | Exception | object] = asyncio.Queue()
        room = asyncio.Semaphore(IN_FLIGHT)
        in_workers: list[Job] = []
        feeder = asyncio.create_task(self.feed(taken, room, in_workers), name=f"stream-{self.stats.number}-feeder")
        try:
            while (frame := await taken.get()) is not _END:
                if isinstance(frame, StreamEnded):
                    self.ending = frame.ending
                if isinstance(frame, Exception):
                    raise frame
                outcome = await frame.outcome()
                if frame.job is not None:
                    in_workers.remove(frame.job)
                yield self.answer(frame, outcome)
                room.release()
            self.ending = "ended"
        finally:
            feeder.cancel()
            receiver.cancel()
            for job in in_workers:
                job.abandon()

    async def receive(self, requests: AsyncIterator[pb.StreamAnnotateRequest]) -> None:
        """Puts every request into the slot until the client half-closes or goes away, then closes the slot."""
        try:
            async for request in requests:
                self.metrics.frames_received.inc()
                self.slot.put(StreamFrame(request.frame_id, request))
        except Exception as error:  # the client went away mid-read; the stream ends with the slot
            log.debug("stream %d read ended: %s", self.stats.number, error)
        finally:
            self.slot.close()

    async def feed(self, taken: asyncio.Queue, room: asyncio.Semaphore, in_workers: list[Job]) -> None:
        """Takes frames from the slot and submits them while `room` allows, each once the previous one has
        been detected; puts each frame taken on `taken`, then _END, or the exception that stopped it."""
        try:
            while True:
                await room.acquire()
                frame = await self.next_frame()
                if frame is None:
                    break
                self.submit(frame)
                taken.put_nowait(frame)
                if frame.job is not None:
                    in_workers.append(frame.job)
                    await frame.job.detected
            taken.put_nowait(_END)
        except Exception as error:  # StreamEnded, or a bug: `answers` raises it after the answers before it
            taken.put_nowait(error)

    async def next_frame(self) -> StreamFrame | None:
        """The newest frame, or None once the client has half-closed and every frame was taken.

        IdleTimeout when no frame comes for limits.idle_s; LifetimeReached once limits.lifetime_s have passed.
        """
        lifetime = self.limits.lifetime_s
        left = lifetime - (time.monotonic() - self.stats.opened) if lifetime else float("inf")
        if left > 0:
            try:
                async with asyncio.timeout(min(self.limits.idle_s, left)):
                    return await self.slot.take()
            except TimeoutError:
                pass
        if lifetime and time.monotonic() - self.stats.opened >= lifetime:
            log.info("stream %d reached the %.0f s stream limit", self.stats.number, lifetime)
            raise LifetimeReached(f"streams last at most {lifetime:g} s on this server (--max-stream-seconds); "
                                  "reconnect to go on")
        log.info("stream %d sent no frame for %.0f s", self.stats.number, self.limits.idle_s)
        raise IdleTimeout(f"no frame for {self.limits.idle_s:g} s (--idle-timeout-s); the stream is closed")

    def submit(self, frame: StreamFrame) -> None:
        """Hands a taken frame to the workers (frame.job), or refuses it (frame.refused) when its track
        settings are bad; the stream lets go of the request either way."""
        request, frame.request = frame.request, None
        try:
            frame.time_ms, frame.smoothing_ms = track_settings(request, frame.arrived, self.defaults.smoothing_ms)
        except FrameError as error:
            self.metrics.failed(status_code(error))
            frame.refused = error
            return
        if not request.options.model:
            request.options.model = self.defaults.model
        frame.job = self.workers.submit(request.image, request.options, self.deadline, self, frame.arrived)

    def answer(self, frame: StreamFrame, outcome: Outcome) -> pb.StreamAnnotateResponse:
        """The response for a frame taken: counted, its faces on their tracks (frames must come in the
        order they were taken), or its error."""
        failed = isinstance(outcome, FrameError)
        if failed:
            log.debug("stream %d frame %d: %s", self.stats.number, frame.frame_id, outcome.message)
        self.stats.answered += 1
        self.stats.errors += failed
        self.stats.dropped += len(frame.skipped)
        if frame.skipped:
            self.metrics.frames_skipped.inc(len(frame.skipped))
        tracks = None if failed else self.tracker.track(outcome.faces, frame.time_ms, frame.smoothing_ms)
        return protoconv.stream_response(frame.frame_id, outcome, frame.skipped, frame.arrived, tracks)


class StreamRegistry:
    """The open streams: numbering, the --max-streams limit, the active-streams gauge, and draining.

    Each stream it opens submits its frames to `workers` with `limits` and `defaults`.
    """

    def __init__(self, max_streams: int, limits: StreamLimits, defaults: StreamDefaults, workers: FrameWorkers,
                 metrics: ServerMetrics) -> None:
        self.max_streams = max_streams
        self.limits = limits
        self.defaults = defaults
        self.workers = workers
        self.metrics = metrics
        self.open_streams: set[Stream] = set()
        self.numbers = itertools.count(1)

    def __len__(self) -> int:
        return len(self.open_streams)

    def open(self, peer: str, deadline: float | None) -> Stream:
        """A new stream for peer with the call's deadline (time.monotonic(), or None); StreamsFull when
        max_streams are already open."""
        if len(self.open_streams) >= self.max_streams:
            log.warning("stream from %s refused: %d streams already open", peer, len(self.open_streams))
            raise StreamsFull(f"the server already serves its limit of {self.max_streams} streams")
        stream = Stream(next(self.numbers), peer, self.limits, self.defaults, self.workers, self.metrics, deadline)
        self.open_streams.add(stream)
        self.metrics.active_streams.inc()
        log.info("stream %d opened by %s (%d open)", stream.stats.number, peer, len(self.open_streams))
        return stream

    def close(self, stream: Stream) -> None:
        """Forgets stream and logs its summary and how it ended."""
        self.open_streams.discard(stream)
        self.metrics.active_streams.dec()
        log.info("%s (%s)", stream.stats.summary(stream.slot.received), stream.ending)

    def drain(self) -> None:
        """Stop taking new frames: every open stream answers the frames it holds, then ends."""
        for stream in list(self.open_streams):
            stream.slot.close()
