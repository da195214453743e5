"""ferstream.v1.EmotionService: thin glue between gRPC calls, the stream slots and the batcher."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc

from ferstream.v1 import emotion_pb2 as pb
from ferstream.v1 import emotion_pb2_grpc as pb_grpc

from . import protoconv
from .batcher import Batcher
from ferstream.pipeline.errors import FrameError
from ferstream.pipeline.framepath import AnnotatedFrame, FramePath
from .metrics import ServerMetrics
from .slot import Arrival, NewestFrameSlot
from .status import status_code

log = logging.getLogger("ferstream.server")


@dataclass
class StreamStats:
    number: int
    peer: str
    opened: float = field(default_factory=time.monotonic)
    answered: int = 0
    errors: int = 0
    dropped: int = 0

    def summary(self, received: int) -> str:
        seconds = time.monotonic() - self.opened
        fps = self.answered / seconds if seconds > 0 else 0.0
        return (f"stream {self.number} closed: {received} frames received, {self.answered} answered "
                f"({self.errors} with errors), {self.dropped} dropped, {fps:.1f} fps over {seconds:.1f} s")


@dataclass(frozen=True)
class StreamLimits:
    """How long one stream may last; the defaults and their reasons live in ServerConfig."""

    idle_s: float  # ServerConfig.idle_timeout_s
    lifetime_s: float  # ServerConfig.max_stream_seconds; 0: none


def call_deadline(context: grpc.aio.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


class EmotionServicer(pb_grpc.EmotionServiceServicer):
    def __init__(self, frame_path: FramePath, batcher: Batcher, max_streams: int,
                 limits: StreamLimits) -> None:
        self.frame_path = frame_path
        self.batcher = batcher
        self.metrics: ServerMetrics = batcher.metrics
        self.max_streams = max_streams
        self.limits = limits
        self.open_slots: set[NewestFrameSlot] = set()
        self.stream_numbers = itertools.count(1)

    async def annotate(self, request, context: grpc.aio.ServicerContext) -> AnnotatedFrame:
        source = protoconv.image_source(request.image)
        options = protoconv.detect_options(request.options)
        return await self.batcher.annotate(source, options, call_deadline(context))

    async def Annotate(self, request: pb.AnnotateRequest, context: grpc.aio.ServicerContext) -> pb.AnnotateResponse:
        start = time.perf_counter()
        self.metrics.frames_received.inc()
        try:
            frame = await self.annotate(request, context)
        except FrameError as error:
            self.metrics.failed(status_code(error))
            log.info("Annotate from %s refused: %s", context.peer(), error.message)
            await context.abort(status_code(error), error.message)
        frame.timing.total_ms = (time.perf_counter() - start) * 1000.0
        self.metrics.answered(frame)
        return pb.AnnotateResponse(faces=protoconv.face_messages(frame), timing=protoconv.timing_message(frame.timing))

    async def GetModelInfo(self, request: pb.GetModelInfoRequest, context) -> pb.GetModelInfoResponse:
        return protoconv.model_info(self.frame_path)

    async def StreamAnnotate(self, request_iterator: AsyncIterator[pb.StreamAnnotateRequest],
                             context: grpc.aio.ServicerContext) -> AsyncIterator[pb.StreamAnnotateResponse]:
        if len(self.open_slots) >= self.max_streams:
            log.warning("stream from %s refused: %d streams already open", context.peer(), len(self.open_slots))
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"the server already serves its limit of {self.max_streams} streams")
        stats = StreamStats(next(self.stream_numbers), context.peer())
        slot = NewestFrameSlot()
        self.open_slots.add(slot)
        self.batcher.open_streams += 1
        self.metrics.active_streams.inc()
        log.info("stream %d opened by %s (%d open)", stats.number, stats.peer, len(self.open_slots))
        receiver = asyncio.create_task(self.receive(request_iterator, slot))
        outcome = "cancelled"
        try:
            while (arrival := await self.next_frame(slot, stats, context)) is not None:
                response = await self.answer(arrival, context, stats)
                skipped = slot.take_skipped()
                stats.dropped += len(skipped)
                self.metrics.frames_skipped.inc(len(skipped))
                response.skipped_frame_ids.extend(skipped)
                yield response
            outcome = "ended"
        finally:
            receiver.cancel()
            self.open_slots.discard(slot)
            self.batcher.open_streams -= 1
            self.metrics.active_streams.dec()
            log.info("%s (%s)", stats.summary(slot.received), outcome)

    async def next_frame(self, slot: NewestFrameSlot, stats: StreamStats, context) -> Arrival | None:
        """The newest frame; ends the call with a status when the stream idles or outlives its limit."""
        lifetime = self.limits.lifetime_s
        left = lifetime - (time.monotonic() - stats.opened) if lifetime else float("inf")
        if left > 0:
            try:
                return await asyncio.wait_for(slot.take(), min(self.limits.idle_s, left))
            except TimeoutError:
                pass
        if lifetime and time.monotonic() - stats.opened >= lifetime:
            log.info("stream %d reached the %.0f s stream limit", stats.number, lifetime)
            await context.abort(grpc.StatusCode.UNAVAILABLE,
                                f"streams last at most {lifetime:g} s on this server (--max-stream-seconds); "
                                "reconnect to go on")
        log.info("stream %d sent no frame for %.0f s", stats.number, self.limits.idle_s)
        await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                            f"no frame for {self.limits.idle_s:g} s (--idle-timeout-s); the stream is closed")

    async def receive(self, request_iterator: AsyncIterator[pb.StreamAnnotateRequest], slot: NewestFrameSlot) -> None:
        try:
            async for request in request_iterator:
                self.metrics.frames_received.inc()
                slot.put(Arrival(request.frame_id, request))
        except Exception as error:  # the client went away mid-read; the handler ends with the slot
            log.debug("stream read ended: %s", error)
        finally:
            slot.close()

    async def answer(self, arrival: Arrival, context, stats: StreamStats) -> pb.StreamAnnotateResponse:
        response = pb.StreamAnnotateResponse(frame_id=arrival.frame_id)
        try:
            frame = await self.annotate(arrival.request, context)
        except FrameError as error:
            stats.errors += 1
            self.metrics.failed(status_code(error))
            log.info("stream %d frame %d: %s", stats.number, arrival.frame_id, error.message)
            response.error.CopyFrom(protoconv.error_message(error))
            response.timing.total_ms = (time.perf_counter() - arrival.arrived) * 1000.0
        else:
            frame.timing.total_ms = (time.perf_counter() - arrival.arrived) * 1000.0
            self.metrics.answered(frame)
            response.faces.extend(protoconv.face_messages(frame))
            response.timing.CopyFrom(protoconv.timing_message(frame.timing))
        stats.answered += 1
        return response

    def drain(self) -> None:
        """Stop taking new frames: every open stream answers the frame it holds, then ends."""
        for slot in list(self.open_slots):
            slot.close()
