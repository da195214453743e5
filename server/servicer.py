"""ferstream.v1.EmotionService: call handling, nothing else.

A unary frame goes to the workers (workers.py); a stream is one streams.Stream, which receives, submits,
tracks and answers its own frames. Metrics are recorded where things happen, protoconv.py builds the
messages, and frame errors' status codes come from status.py.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import aclosing

import grpc

from ferstream.pipeline.errors import FrameError
from ferstream.pipeline.framepath import FramePath
from ferstream.v1 import emotion_pb2 as pb
from ferstream.v1 import emotion_pb2_grpc as pb_grpc

from . import protoconv
from .status import status_code
from .streams import IdleTimeout, LifetimeReached, StreamRegistry, StreamsFull
from .workers import FrameWorkers

log = logging.getLogger("ferstream.server")


def call_deadline(context: grpc.aio.ServicerContext) -> float | None:
    """The call's deadline as a time.monotonic() reading; None when the client set none."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


class EmotionServicer(pb_grpc.EmotionServiceServicer):
    """The three RPCs of ferstream.v1.EmotionService on top of the workers and the stream registry.

    annotate_model: the model tier of Annotate calls that name none (ServerConfig; empty: the frame path's
    default); ValueError for a tier the frame path does not serve. Stream frames' defaults are the
    registry's (StreamRegistry.defaults).
    """

    def __init__(self, frame_path: FramePath, workers: FrameWorkers, streams: StreamRegistry,
                 annotate_model: str = "") -> None:
        self.frame_path = frame_path
        self.workers = workers
        self.streams = streams
        self.annotate_model = frame_path.check_model(annotate_model or frame_path.default_model)

    async def Annotate(self, request: pb.AnnotateRequest, context: grpc.aio.ServicerContext) -> pb.AnnotateResponse:
        """One image: its faces, or the call ends with the frame's status (INVALID_ARGUMENT, ...)."""
        if not request.options.model:
            request.options.model = self.annotate_model
        outcome = await self.workers.annotate(request.image, request.options, call_deadline(context))
        if isinstance(outcome, FrameError):
            log.debug("Annotate from %s refused: %s", context.peer(), outcome.message)
            # abort() raises, and gRPC keeps its error (with this frame in its traceback) in a reference cycle:
            # without the request in it, a refused image is freed at once, not at the collector's next pass.
            del request
            await context.abort(status_code(outcome), outcome.message)
        return protoconv.annotate_response(outcome)

    async def GetModelInfo(self, request: pb.GetModelInfoRequest, context) -> pb.GetModelInfoResponse:
        """Classes, detectors and the emotion model this server runs."""
        return protoconv.model_info(self.frame_path, self.annotate_model, self.streams.defaults.model)

    async def StreamAnnotate(self, request_iterator: AsyncIterator[pb.StreamAnnotateRequest],
                             context: grpc.aio.ServicerContext) -> AsyncIterator[pb.StreamAnnotateResponse]:
        """One answer per frame taken (in order; a frame's error does not end the stream), newer frames
        replacing unstarted ones, each face on its track. Ends OK when the client half-closes or the server
        drains; RESOURCE_EXHAUSTED over --max-streams, DEADLINE_EXCEEDED when idle, UNAVAILABLE past
        --max-stream-seconds."""
        try:
            stream = self.streams.open(context.peer(), call_deadline(context))
        except StreamsFull as full:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(full))
        try:
            # Closed here, not when collected: a cancelled call's frames leave the workers at once.
            async with aclosing(stream.answers(request_iterator)) as answers:
                async for response in answers:
                    yield response
        except IdleTimeout as idle:
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, idle.message)
        except LifetimeReached as lifetime:
            await context.abort(grpc.StatusCode.UNAVAILABLE, lifetime.message)
        finally:
            self.streams.close(stream)
