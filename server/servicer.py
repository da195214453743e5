"""ferstream.v1.EmotionService: call handling and message translation, nothing else.

Frames go to the workers (workers.py), streams' state, limits and face tracks live in streams.py, metrics
are recorded where things happen, and protoconv.py builds the messages. Status codes come from status.py.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator

import grpc

from ferstream.pipeline.errors import FrameError, invalid
from ferstream.pipeline.framepath import FramePath
from ferstream.pipeline.tracking import DEFAULT_SMOOTHING_MS, check_smoothing_ms
from ferstream.v1 import emotion_pb2 as pb
from ferstream.v1 import emotion_pb2_grpc as pb_grpc

from . import protoconv
from .status import status_code
from .streams import Arrival, IdleTimeout, LifetimeReached, StreamRegistry, StreamsFull, answers_in_order
from .workers import FrameWorkers, Job

log = logging.getLogger("ferstream.server")


def call_deadline(context: grpc.aio.ServicerContext) -> float | None:
    """The call's deadline as a time.monotonic() reading; None when the client set none."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


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


class Refused:
    """A stream frame answered with an error before reaching the workers (answers_in_order's InFlight)."""

    def __init__(self, error: FrameError) -> None:
        loop = asyncio.get_running_loop()
        self.detected: asyncio.Future = loop.create_future()
        self.detected.set_result(None)
        self.answered: asyncio.Future = loop.create_future()
        self.answered.set_result(error)

    def abandon(self) -> None:
        """Nothing to stop: no worker has it."""


class EmotionServicer(pb_grpc.EmotionServiceServicer):
    """The three RPCs of ferstream.v1.EmotionService on top of the workers and the stream registry.

    track_smoothing_ms: the time constant of the face tracks' smoothing for stream requests that do not set
    their own (ServerConfig.track_smoothing_ms). annotate_model, stream_model: the model tier of Annotate
    calls and of stream frames that name none (ServerConfig; empty: the frame path's default); ValueError
    for a tier the frame path does not serve.
    """

    def __init__(self, frame_path: FramePath, workers: FrameWorkers, streams: StreamRegistry,
                 track_smoothing_ms: float = DEFAULT_SMOOTHING_MS, annotate_model: str = "",
                 stream_model: str = "") -> None:
        self.frame_path = frame_path
        self.workers = workers
        self.streams = streams
        self.track_smoothing_ms = check_smoothing_ms(track_smoothing_ms)
        self.annotate_model = frame_path.check_model(annotate_model or frame_path.default_model)
        self.stream_model = frame_path.check_model(stream_model or frame_path.default_model)

    async def Annotate(self, request: pb.AnnotateRequest, context: grpc.aio.ServicerContext) -> pb.AnnotateResponse:
        """One image: its faces, or the call ends with the frame's status (INVALID_ARGUMENT, ...)."""
        if not request.options.model:
            request.options.model = self.annotate_model
        outcome = await self.workers.annotate(request.image, request.options, call_deadline(context))
        if isinstance(outcome, FrameError):
            log.debug("Annotate from %s refused: %s", context.peer(), outcome.message)
            await context.abort(status_code(outcome), outcome.message)
        return protoconv.annotate_response(outcome)

    async def GetModelInfo(self, request: pb.GetModelInfoRequest, context) -> pb.GetModelInfoResponse:
        """Classes, detectors and the emotion model this server runs."""
        return protoconv.model_info(self.frame_path, self.annotate_model, self.stream_model)

    async def StreamAnnotate(self, request_iterator: AsyncIterator[pb.StreamAnnotateRequest],
                             context: grpc.aio.ServicerContext) -> AsyncIterator[pb.StreamAnnotateResponse]:
        """One answer per frame taken (in order; a frame's error does not end the stream), newer frames
        replacing unstarted ones, each face on its track. Ends OK when the client half-closes or the server
        drains; RESOURCE_EXHAUSTED over --max-streams, DEADLINE_EXCEEDED when idle, UNAVAILABLE past
        --max-stream-seconds."""
        try:
            stream = self.streams.open(context.peer())
        except StreamsFull as full:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(full))
        receiver = asyncio.create_task(stream.receive(request_iterator))
        deadline = call_deadline(context)

        def submit(arrival: Arrival) -> Job | Refused:
            # The workers hold the request from here on; it is released once decoded (a raw frame can be 48 MiB).
            request, arrival.request = arrival.request, None
            try:
                arrival.time_ms, arrival.smoothing_ms = track_settings(request, arrival.arrived,
                                                                       self.track_smoothing_ms)
            except FrameError as error:
                self.streams.metrics.failed(status_code(error))
                return Refused(error)
            if not request.options.model:
                request.options.model = self.stream_model
            return self.workers.submit(request.image, request.options, deadline, stream, arrival.arrived)

        outcome = "cancelled"
        try:
            async for arrival, answer in answers_in_order(stream, submit):
                failed = isinstance(answer, FrameError)
                if failed:
                    log.debug("stream %d frame %d: %s", stream.stats.number, arrival.frame_id, answer.message)
                stream.record(arrival, failed)
                tracks = None if failed else stream.track(arrival, answer)
                yield protoconv.stream_response(arrival.frame_id, answer, arrival.skipped, arrival.arrived, tracks)
            outcome = "ended"
        except IdleTimeout as idle:
            outcome = "idle"
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, idle.message)
        except LifetimeReached as lifetime:
            outcome = "lifetime reached"
            await context.abort(grpc.StatusCode.UNAVAILABLE, lifetime.message)
        finally:
            receiver.cancel()
            self.streams.close(stream, outcome)
