"""Per-stream state: the newest-frame slot, statistics, idle and lifetime limits, and the open-stream registry.

A client that sends faster than the server answers loses stale frames, never gains latency: each stream
keeps at most one frame that no worker has started (a newer one replaces it and its id is reported as
skipped), and `answers_in_order` keeps at most IN_FLIGHT frames of the stream in the workers, so the
next frame is decoded and detected while the previous one is being classified. Answers leave in the
order the frames were taken, and each stream's face tracks (ferstream.pipeline.tracking) follow its
answered frames in that order. Nothing here knows gRPC: the servicer maps the exceptions to status codes.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ferstream.pipeline.tracking import DEFAULT_SMOOTHING_MS, FaceTracker, TrackedFace

from .metrics import ServerMetrics

if TYPE_CHECKING:  # framepath loads the model runtime; the stream state needs only the type
    from ferstream.pipeline.framepath import AnnotatedFrame

log = logging.getLogger("ferstream.server")

# Frames of one stream in the workers at once: one being classified while the next is decoded and detected.
# More would only queue behind the same classifier and add latency.
IN_FLIGHT = 2


@dataclass
class Arrival:
    """One received StreamAnnotateRequest, with when it came (time.perf_counter) and whom it replaced."""

    frame_id: int
    # The StreamAnnotateRequest; None once handed to the workers.
    request: Any
    arrived: float = field(default_factory=time.perf_counter)
    # Ids of older frames this one replaced in the slot; reported in its answer's skipped_frame_ids.
    skipped: list[int] = field(default_factory=list)
    # The frame's time for track smoothing, in milliseconds: the client's capture time when the request
    # carries one, else `arrived` (set by the servicer when it takes the request).
    time_ms: float = 0.0
    # Time constant of the track smoothing for this frame, in milliseconds; 0: off.
    smoothing_ms: float = DEFAULT_SMOOTHING_MS


class NewestFrameSlot:
    """Holds at most one unstarted frame; putting a newer one skips the older. Event-loop only."""

    def __init__(self) -> None:
        self.pending: Arrival | None = None
        self.skipped: list[int] = []
        self.received = 0
        self.closed = False
        self.changed = asyncio.Event()

    def put(self, arrival: Arrival) -> None:
        """Keeps arrival as the next frame, replacing (skipping) an unstarted older one."""
        self.received += 1
        if self.closed:  # the server is draining: frames sent after that are not taken
            return
        if self.pending is not None:
            self.skipped.append(self.pending.frame_id)
        self.pending = arrival
        self.changed.set()

    def close(self) -> None:
        """No more frames will come; the pending one is still handed out."""
        self.closed = True
        self.changed.set()

    async def take(self) -> Arrival | None:
        """The newest frame, carrying the ids it replaced, waiting for one; None once closed and empty."""
        while self.pending is None:
            if self.closed:
                return None
            self.changed.clear()
            await self.changed.wait()
        arrival, self.pending = self.pending, None
        arrival.skipped, self.skipped = self.skipped, []
        return arrival


@dataclass(frozen=True)
class StreamLimits:
    """How long one stream may last; the defaults and their reasons live in ServerConfig."""

    idle_s: float  # ServerConfig.idle_timeout_s
    lifetime_s: float  # ServerConfig.max_stream_seconds; 0: none


class StreamEnded(Exception):
    """A stream limit ended the stream; `message` is the one line for the client."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class IdleTimeout(StreamEnded):
    """No frame came for StreamLimits.idle_s seconds."""


class LifetimeReached(StreamEnded):
    """The stream has lasted StreamLimits.lifetime_s seconds."""


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


class Stream:
    """One open StreamAnnotate call's state: its slot, statistics, limits and face tracks."""

    def __init__(self, number: int, peer: str, limits: StreamLimits, metrics: ServerMetrics) -> None:
        self.slot = NewestFrameSlot()
        self.stats = StreamStats(number, peer)
        self.limits = limits
        self.metrics = metrics
        self.tracker = FaceTracker()

    def track(self, arrival: Arrival, frame: AnnotatedFrame) -> list[TrackedFace]:
        """The track of each face of an answered frame, in the frame's face order, at arrival.time_ms with
        arrival.smoothing_ms. Frames must come in the order they are answered (answers_in_order's)."""
        return self.tracker.track(frame.faces, arrival.time_ms, arrival.smoothing_ms)

    async def receive(self, requests: AsyncIterator[Any]) -> None:
        """Puts every request into the slot until the client half-closes or goes away, then closes the slot."""
        try:
            async for request in requests:
                self.metrics.frames_received.inc()
                self.slot.put(Arrival(request.frame_id, request))
        except Exception as error:  # the client went away mid-read; the handler ends with the slot
            log.debug("stream %d read ended: %s", self.stats.number, error)
        finally:
            self.slot.close()

    async def next_frame(self) -> Arrival | None:
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

    def record(self, arrival: Arrival, failed: bool) -> None:
        """Counts one answer (failed: it carries an error) and the frames it replaced."""
        self.stats.answered += 1
        self.stats.errors += failed
        self.stats.dropped += len(arrival.skipped)
        if arrival.skipped:
            self.metrics.frames_skipped.inc(len(arrival.skipped))


class InFlight(Protocol):
    """What the workers hand back for a submitted frame (server/workers.py's Job)."""

    detected: Awaitable[None]
    answered: Awaitable[Any]

    def abandon(self) -> None:
        """The caller is gone: skip what is left of this frame."""


async def answers_in_order(stream: Stream, submit: Callable[[Arrival], InFlight]
                           ) -> AsyncIterator[tuple[Arrival, Any]]:
    """(arrival, outcome) for each frame taken from the stream, in order, pipelined IN_FLIGHT deep.

    A feeder task takes the newest frame once the previous one has been detected and fewer than IN_FLIGHT
    frames wait for their answer, and submits it; this generator awaits each answer in turn. Ends when
    the slot is closed and drained; raises the feeder's StreamEnded after the frames before it are
    answered. Closing the generator (the call is cancelled) abandons every frame still in the workers.
    """
    queue: asyncio.Queue = asyncio.Queue()
    room = asyncio.Semaphore(IN_FLIGHT)
    submitted: list[InFlight] = []
    end = object()

    async def feed() -> None:
        try:
            while True:
                await room.acquire()
                arrival = await stream.next_frame()
                if arrival is None:
                    break
                job = submit(arrival)
                submitted.append(job)
                queue.put_nowait((arrival, job))
                await job.detected
            queue.put_nowait(end)
        except Exception as error:  # StreamEnded, or a bug: the handler raises it after the answers before it
            queue.put_nowait(error)

    feeder = asyncio.create_task(feed(), name=f"stream-{stream.stats.number}-feeder")
    try:
        while (item := await queue.get()) is not end:
            if isinstance(item, Exception):
                raise item
            arrival, job = item
            outcome = await job.answered
            submitted.remove(job)
            yield arrival, outcome
            room.release()
    finally:
        feeder.cancel()
        for job in submitted:
            job.abandon()


class StreamRegistry:
    """The open streams: numbering, the --max-streams limit, the active-streams gauge, and draining."""

    def __init__(self, max_streams: int, limits: StreamLimits, metrics: ServerMetrics) -> None:
        self.max_streams = max_streams
        self.limits = limits
        self.metrics = metrics
        self.open_streams: set[Stream] = set()
        self.numbers = itertools.count(1)

    def __len__(self) -> int:
        return len(self.open_streams)

    def open(self, peer: str) -> Stream:
        """A new stream for peer; StreamsFull when max_streams are already open."""
        if len(self.open_streams) >= self.max_streams:
            log.warning("stream from %s refused: %d streams already open", peer, len(self.open_streams))
            raise StreamsFull(f"the server already serves its limit of {self.max_streams} streams")
        stream = Stream(next(self.numbers), peer, self.limits, self.metrics)
        self.open_streams.add(stream)
        self.metrics.active_streams.inc()
        log.info("stream %d opened by %s (%d open)", stream.stats.number, peer, len(self.open_streams))
        return stream

    def close(self, stream: Stream, outcome: str) -> None:
        """Forgets stream and logs its summary; outcome says how it ended ("ended", "cancelled", ...)."""
        self.open_streams.discard(stream)
        self.metrics.active_streams.dec()
        log.info("%s (%s)", stream.stats.summary(stream.slot.received), outcome)

    def drain(self) -> None:
        """Stop taking new frames: every open stream answers the frames it holds, then ends."""
        for stream in list(self.open_streams):
            stream.slot.close()
