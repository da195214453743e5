"""The gateway's routes: the page and its files, the live WebSocket, `POST /v1/annotate`, `/healthz` and
`/openapi.json`. Every gRPC call goes through one EmotionClient (one channel, thread-safe)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import grpc
import numpy as np
from google.protobuf.message import Message
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from ferstream.client.library import DEFAULT_MAX_IN_FLIGHT, EmotionClient, face_record, make_options
from ferstream.model.labels import EMOTIONS
from ferstream.pipeline.decode import JPEG_SOI, jpeg_header
from ferstream.annotate.draw import CHART_DIMMING, colour_of, text_colour_on
from ferstream.annotate.records import FrameRecord
from ferstream.server.limits import DEFAULT_MAX_MESSAGE_BYTES
from ferstream.v1 import emotion_pb2

from .httpstatus import PAYLOAD_TOO_LARGE, error_body, rpc_error_body
from .live import LiveBridge, frame_size
from .openapi import openapi_document

STATIC_DIR = Path(__file__).with_name("static")
# A multipart body carries its boundaries and part headers besides the image: a few hundred bytes in
# practice; 64 KiB, as the server allows a message beyond its pixels (server/limits.py).
MULTIPART_OVERHEAD_BYTES = 64 * 1024
# A WebSocket message this much over the frame limit still gets a per-frame error answer; a larger one
# ends the socket (close code 1009, "message too big") before the gateway reads it.
WEBSOCKET_SLACK_BYTES = 1024 * 1024
# /healthz asks the server this long before calling it unreachable.
HEALTH_TIMEOUT_S = 3.0
# WebSocket close code for "the server failed the stream; try again later" (RFC 6455 registry: 1013).
CLOSE_TRY_AGAIN_LATER = 1013


@dataclass(frozen=True)
class GatewaySettings:
    """What the gateway needs besides its client.

    max_message_bytes: the largest request forwarded (a photo's AnnotateRequest, a frame's
    StreamAnnotateRequest); fer-server's own default --max-message-bytes. max_in_flight: frames of one
    page sent to the server and unanswered at once; the server works on 2 of a stream at a time
    (server/streams.py IN_FLIGHT), the client library's window says the same.
    """

    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT

    @property
    def websocket_max_bytes(self) -> int:
        """uvicorn's limit on one WebSocket message."""
        return self.max_message_bytes + WEBSOCKET_SLACK_BYTES


def page_config(settings: GatewaySettings) -> dict[str, object]:
    """What the page draws with: the emotions in model order, each one's box colour and label text colour
    as CSS hex (from ferstream.annotate.draw, so the page draws as the Tk app does), the chart dimming and
    the frame size limit."""
    def css(bgr: tuple[int, int, int]) -> str:
        return "#{:02x}{:02x}{:02x}".format(*reversed(bgr))

    return {
        "emotions": list(EMOTIONS),
        "colours": {emotion: css(colour_of(emotion)) for emotion in EMOTIONS},
        "text_colours": {emotion: css(text_colour_on(colour_of(emotion))) for emotion in EMOTIONS},
        "unknown_colour": css(colour_of("")),
        "chart_dimming": CHART_DIMMING,
        "max_frame_bytes": settings.max_message_bytes,
    }


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) of an image the server annotated, as its boxes see it: from the header, except for a
    JPEG with EXIF data, whose orientation tag may turn it (the server decodes it turned), decoded here."""
    if data.startswith(JPEG_SOI) and jpeg_header(data).exif:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
        if image is not None:
            return image.shape[1], image.shape[0]
    return frame_size(data)


class BodyError(Exception):
    """The request body cannot be forwarded: one line, a gRPC code and an HTTP status."""

    def __init__(self, message: str, code: grpc.StatusCode, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


def too_large(what: str, limit: int) -> BodyError:
    """The 413 for `what` ("the body is N bytes") over limit bytes."""
    return BodyError(f"{what}, more than the {limit} this gateway forwards (fer-web --max-message-bytes)",
                     grpc.StatusCode.RESOURCE_EXHAUSTED, PAYLOAD_TOO_LARGE)


def check_message_size(request: Message, limit: int) -> None:
    """BodyError (413) when the request for the server would be over limit bytes (computed, not serialised):
    gRPC would end the whole call for it."""
    size = request.ByteSize()
    if size > limit:
        raise too_large(f"the image's request is {size} bytes", limit)


async def read_bounded(request: Request, limit: int) -> bytes:
    """The whole body, refused (413) as soon as it passes limit bytes: before reading it when
    Content-Length says so, else while it streams in."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(f"the body is {declared} bytes", limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(f"the body is over {limit} bytes", limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def image_of(request: Request, settings: GatewaySettings) -> bytes:
    """The image of a request: the raw body, or the first file of a multipart/form-data body."""
    multipart = request.headers.get("content-type", "").startswith("multipart/form-data")
    limit = settings.max_message_bytes + (MULTIPART_OVERHEAD_BYTES if multipart else 0)
    body = await read_bounded(request, limit)
    if multipart:
        async def replay() -> dict:
            return {"type": "http.request", "body": body, "more_body": False}

        form = await Request(request.scope, replay).form(max_files=1, max_fields=16)
        files = [value for value in form.values() if not isinstance(value, str)]
        if not files:
            raise BodyError("the multipart form has no file", grpc.StatusCode.INVALID_ARGUMENT, 400)
        body = await files[0].read()
    if not body:
        raise BodyError("the body is empty: send an image (JPEG, PNG, BMP or WebP)",
                        grpc.StatusCode.INVALID_ARGUMENT, 400)
    return body


def options_of(request: Request) -> emotion_pb2.AnnotateOptions:
    """AnnotateOptions from the query (?detector=yunet&min_detection_score=0.5&max_faces=4&model=fast);
    ValueError for a value that is not one (an unknown model is the server's to refuse)."""
    query = request.query_params
    score_text, max_faces_text = query.get("min_detection_score", "0"), query.get("max_faces", "0")
    try:
        score = float(score_text)
        max_faces = int(max_faces_text)
    except ValueError:
        raise ValueError(f"min_detection_score={score_text!r}, max_faces={max_faces_text!r}: "
                         "expected a number between 0 and 1 and a whole number of 0 or more") from None
    if not 0.0 <= score <= 1.0:
        raise ValueError(f"min_detection_score must be between 0 and 1, not {score}")
    if max_faces < 0:
        raise ValueError(f"max_faces must be 0 or more, not {max_faces}")
    return make_options(query.get("detector"), score, max_faces, query.get("model", ""))


def build_app(client: EmotionClient, settings: GatewaySettings = GatewaySettings()) -> Starlette:
    """The gateway: every route of the module docstring, calling the server through client."""

    async def page(request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html", headers={"cache-control": "no-cache"})

    async def config(request: Request) -> Response:
        return JSONResponse(page_config(settings))

    async def annotate(request: Request) -> Response:
        try:
            options = options_of(request)
            image = await image_of(request, settings)
            grpc_request = emotion_pb2.AnnotateRequest(image=emotion_pb2.Image(encoded=image), options=options)
            check_message_size(grpc_request, settings.max_message_bytes)
        except BodyError as error:
            return JSONResponse(error_body(str(error), error.code), status_code=error.status)
        except ValueError as error:
            return JSONResponse(error_body(str(error), grpc.StatusCode.INVALID_ARGUMENT), status_code=400)
        try:
            reply = await run_in_threadpool(
                client.annotate, image, detector=options.detector,
                min_detection_score=options.min_detection_score, max_faces=options.max_faces, model=options.model)
        except grpc.RpcError as error:
            body, status = rpc_error_body(error)
            return JSONResponse(body, status_code=status)
        width, height = await run_in_threadpool(image_size, image)
        record = FrameRecord(frame=0, width=width, height=height, faces=[face_record(face) for face in reply.faces])
        return JSONResponse({**record.to_json(), "model": reply.model})

    async def healthz(request: Request) -> Response:
        try:
            serving = await run_in_threadpool(client.health, "", HEALTH_TIMEOUT_S)
        except grpc.RpcError as error:
            body, _ = rpc_error_body(error)
            return JSONResponse({"gateway": "ok", "server": "unreachable", **body}, status_code=503)
        if not serving:
            return JSONResponse({"gateway": "ok", "server": "not serving"}, status_code=503)
        return JSONResponse({"gateway": "ok", "server": "serving"})

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document(settings.max_message_bytes))

    async def live(websocket: WebSocket) -> None:
        await websocket.accept()
        loop = asyncio.get_running_loop()
        outbox: asyncio.Queue[dict] = asyncio.Queue()
        bridge = LiveBridge(client, settings.max_in_flight,
                            lambda message: loop.call_soon_threadsafe(outbox.put_nowait, message))
        sender = asyncio.create_task(_send_answers(websocket, outbox))
        try:
            while not sender.done():
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                data = message.get("bytes")
                if data is None:
                    await outbox.put({"type": "error", **error_body(
                        "send frames as binary messages of JPEG bytes", grpc.StatusCode.INVALID_ARGUMENT),
                        "http_status": 400, "ends_stream": False})
                    continue
                frame = emotion_pb2.StreamAnnotateRequest(frame_id=1, image=emotion_pb2.Image(encoded=data))
                try:
                    check_message_size(frame, settings.max_message_bytes)
                except BodyError as error:
                    await outbox.put({"type": "error", **error_body(str(error), error.code),
                                      "http_status": error.status, "ends_stream": False})
                    continue
                bridge.put(data)
        except WebSocketDisconnect:
            pass
        finally:
            await run_in_threadpool(bridge.close)
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)  # a page gone mid-send is no error

    routes = [
        Route("/", page),
        Route("/v1/config", config),
        Route("/v1/annotate", annotate, methods=["POST"]),
        Route("/healthz", healthz),
        Route("/openapi.json", openapi),
        WebSocketRoute("/v1/live", live),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    return Starlette(routes=routes)


async def _send_answers(websocket: WebSocket, outbox: asyncio.Queue[dict]) -> None:
    """Sends the bridge's messages to the page; after a stream error, closes the socket (the page opens a
    new one, and with it a new stream)."""
    while True:
        message = await outbox.get()
        await websocket.send_text(json.dumps(message))
        if message.get("ends_stream"):
            await websocket.close(CLOSE_TRY_AGAIN_LATER, message["code"])
            return
