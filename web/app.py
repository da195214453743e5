"""The gateway's routes: the page and its files, the live WebSocket, `POST /v1/annotate`, `/healthz` and
`/openapi.json`. Every gRPC call goes through one EmotionClient (one channel, thread-safe)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.protobuf.message import Message
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import Message as AsgiMessage, Receive
from starlette.websockets import WebSocket, WebSocketDisconnect

from ferstream.client.library import EmotionClient
from ferstream.client.messages import face_record, make_options
from ferstream.client.window import DEFAULT_MAX_IN_FLIGHT
from ferstream.model.labels import EMOTIONS
from ferstream.pipeline.decode import JPEG_SOI, jpeg_header
from ferstream.pipeline.errors import BadInput
from ferstream.pipeline.settings import DEFAULT_MAX_MESSAGE_BYTES
from ferstream.annotate.draw import CHART_DIMMING, colour_of, text_colour_on
from ferstream.annotate.records import FrameRecord
from ferstream.v1 import emotion_pb2

from .guard import LIVE_SUBPROTOCOL, AccessPolicy, Guard, caller_token
from .httpstatus import PAYLOAD_TOO_LARGE, REQUEST_TIMEOUT, error_body, http_error_body, rpc_error_body
from .live import LiveBridge, image_size
from .openapi import openapi_document

log = logging.getLogger("ferstream.web")

STATIC_DIR = Path(__file__).with_name("static")
# A multipart body carries its boundaries and part headers besides the image: a few hundred bytes in
# practice; 64 KiB, as the server allows a message beyond its pixels (pipeline/settings.py).
MULTIPART_OVERHEAD_BYTES = 64 * 1024
# A WebSocket message this much over the frame limit still gets a per-frame error answer; a larger one
# ends the socket (close code 1009, "message too big") before the gateway reads it.
WEBSOCKET_SLACK_BYTES = 1024 * 1024
# /healthz asks the server this long before calling it unreachable.
HEALTH_TIMEOUT_S = 3.0
# A request body that sends nothing for this long is given up (408): a silent or very slow client would
# otherwise hold its connection and buffers for ever.
BODY_IDLE_TIMEOUT_S = 30.0
# Leading bytes of the images the server decodes (pipeline/decode.py): JPEG, PNG, BMP, and WebP's RIFF
# header, whose bytes 8-12 say WEBP. A body that starts otherwise is refused at its first bytes.
IMAGE_SIGNATURES = (JPEG_SOI, b"\x89PNG\r\n\x1a\n", b"BM", b"RIFF")
SIGNATURE_BYTES = 12
# A JPEG's frame header (SOF, which gives its size) follows its APPn segments: EXIF with its thumbnail (at most
# 64 KiB), ICC profiles, XMP. The photos in testdata have theirs within 4 KiB; 1 MiB holds any camera's. A
# body that starts as a JPEG but has no frame header in its first MiB is refused before the rest is read:
# the server would refuse it anyway, after the gateway had read, held and forwarded all of it.
JPEG_HEADER_BYTES = 1 << 20
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
    # Send each caller's own bearer token to the server instead of the gateway's (--forward-caller-token).
    forward_caller_token: bool = False
    # A request body that sends nothing for this long gets 408 (--body-timeout).
    body_timeout_s: float = BODY_IDLE_TIMEOUT_S

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


def not_an_image() -> BodyError:
    """The 400 for a body that does not start as an image the server decodes."""
    return BodyError("not a JPEG, PNG, BMP or WebP image (its first bytes say otherwise): refused before forwarding",
                     grpc.StatusCode.INVALID_ARGUMENT, 400)


def check_signature(head: bytes) -> None:
    """BodyError (400) unless head, an image's first bytes, starts as a JPEG, PNG, BMP or WebP file."""
    if not head.startswith(IMAGE_SIGNATURES) or (head.startswith(b"RIFF") and head[8:12] != b"WEBP"):
        raise not_an_image()


class HeadCheck:
    """Checks a body's first bytes as they arrive, before the rest is read: the image signature
    (check_signature) and, for a JPEG, that its frame header lies within JPEG_HEADER_BYTES (the markers
    before it well formed). Holds at most that many bytes, and none once the check passed."""

    def __init__(self) -> None:
        self._head = b""
        self._passed = False

    def feed(self, chunk: bytes, last: bool) -> None:
        """Takes the body's next chunk (last: no more follow); BodyError (400) as soon as the bytes so far
        cannot begin an image the server decodes."""
        if self._passed:
            return
        self._head += chunk[:JPEG_HEADER_BYTES - len(self._head)]
        complete = last or len(self._head) >= JPEG_HEADER_BYTES
        if not self._head or (len(self._head) < SIGNATURE_BYTES and not complete):
            return
        check_signature(self._head)
        if self._head.startswith(JPEG_SOI):
            try:
                jpeg_header(self._head)
            except BadInput as error:  # perhaps only cut short: more bytes may bring the frame header
                if complete:
                    raise BodyError(f"{error.message} within its first {len(self._head)} bytes: refused before "
                                    "forwarding", grpc.StatusCode.INVALID_ARGUMENT, 400) from None
                return
        self._passed = True
        self._head = b""


def check_message_size(request: Message, limit: int) -> None:
    """BodyError (413) when the request for the server would be over limit bytes (computed, not serialised):
    gRPC would end the whole call for it."""
    size = request.ByteSize()
    if size > limit:
        raise too_large(f"the image's request is {size} bytes", limit)


def bounded_receive(request: Request, limit: int, idle_s: float = BODY_IDLE_TIMEOUT_S) -> Receive:
    """The request's ASGI receive, raising BodyError when the body passes limit bytes (413) or sends
    nothing for idle_s seconds (408): what the multipart parser reads from."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(f"the body is {declared} bytes", limit)
    size = 0

    async def receive() -> AsgiMessage:
        nonlocal size
        try:
            message = await asyncio.wait_for(request.receive(), idle_s)
        except TimeoutError:
            raise BodyError(f"the body sent nothing for {idle_s:g} s", grpc.StatusCode.DEADLINE_EXCEEDED,
                            REQUEST_TIMEOUT) from None
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        size += len(message.get("body", b""))
        if size > limit:
            raise too_large(f"the body is over {limit} bytes", limit)
        return message

    return receive


async def read_raw_image(request: Request, limit: int, idle_s: float = BODY_IDLE_TIMEOUT_S) -> bytes:
    """The whole body, refused as soon as it passes limit bytes (413), stays silent (408) or starts as no
    image (400, HeadCheck): a refused body is never held, only its first chunks."""
    receive = bounded_receive(request, limit, idle_s)
    # One growing buffer, each chunk freed as soon as it is copied: a list of the server's chunks (64 KiB each)
    # would leave a large body scattered over the allocator's heap, where free() cannot hand it back to the
    # system while anything later lies above it (8 refused 45 MB bodies left 420 MB resident, now and then).
    # A buffer this large is a mapping of its own, returned whole when freed.
    body = bytearray()
    head = HeadCheck()
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        body += chunk
        more = message.get("more_body", False)
        head.feed(chunk, last=not more)
        if not more:
            return bytes(body)


async def read_form_image(request: Request, limit: int, idle_s: float = BODY_IDLE_TIMEOUT_S) -> bytes:
    """The first file of a multipart/form-data body. The parser keeps a large file on disk, not in memory
    (Starlette spools it), so a refused one leaves nothing behind; its first bytes are checked (HeadCheck)
    before the rest is read."""
    try:
        form = await Request(request.scope, bounded_receive(request, limit, idle_s)).form(max_files=1,
                                                                                          max_fields=16)
    except HTTPException as error:  # the parser's own complaint: a damaged form, too many parts
        raise BodyError(f"not a usable multipart form: {error.detail}", grpc.StatusCode.INVALID_ARGUMENT,
                        400) from None
    try:
        files = [value for value in form.values() if not isinstance(value, str)]
        if not files:
            raise BodyError("the multipart form has no file", grpc.StatusCode.INVALID_ARGUMENT, 400)
        head = await files[0].read(JPEG_HEADER_BYTES)
        HeadCheck().feed(head, last=len(head) < JPEG_HEADER_BYTES)
        return head + await files[0].read()
    finally:
        await form.close()


def is_multipart(request: Request) -> bool:
    """True for a multipart/form-data body (media types are case-insensitive, RFC 9110 8.3.1)."""
    return request.headers.get("content-type", "").strip().lower().startswith("multipart/form-data")


async def image_of(request: Request, settings: GatewaySettings) -> bytes:
    """The image of a request: the raw body, or the first file of a multipart/form-data body."""
    if is_multipart(request):
        body = await read_form_image(request, settings.max_message_bytes + MULTIPART_OVERHEAD_BYTES,
                                     settings.body_timeout_s)
    else:
        body = await read_raw_image(request, settings.max_message_bytes, settings.body_timeout_s)
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


def answer_json(record: FrameRecord, faces_omitted: int) -> dict[str, object]:
    """A frame record as the gateway answers it: the record, and `faces_omitted` (faces found but left out by
    the face limit: the caller's max_faces, else the server's --max-faces)."""
    return {**record.to_json(), "faces_omitted": int(faces_omitted)}


class HealthProbe:
    """Asks the server whether it serves, on a thread of its own (never in the pool REST calls wait in), one
    check at a time however many callers ask. With the gateway's own token in use, a cheap authenticated
    call also checks that the server accepts it: a server that refuses it serves no caller of this gateway."""

    def __init__(self, client: EmotionClient, check_token: bool) -> None:
        self._client = client
        self._check_token = check_token
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fer-web-health")
        self._pending: asyncio.Future | None = None

    def _probe(self) -> tuple[dict[str, str], int]:
        try:
            if not self._client.health("", HEALTH_TIMEOUT_S):
                return {"gateway": "ok", "server": "not serving"}, 503
            if self._check_token:
                self._client.model_info(timeout=HEALTH_TIMEOUT_S)
        except grpc.RpcError as error:
            body, _ = rpc_error_body(error)
            if error.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                return {"gateway": "ok", "server": "refuses the gateway's token", **body}, 503
            return {"gateway": "ok", "server": "unreachable", **body}, 503
        return {"gateway": "ok", "server": "serving"}, 200

    async def check(self) -> tuple[dict[str, str], int]:
        """(JSON body, HTTP status) of /healthz; callers arriving during a check share its answer."""
        if self._pending is None or self._pending.done():
            self._pending = asyncio.get_running_loop().run_in_executor(self._executor, self._probe)
        return await asyncio.shield(self._pending)

    def close(self) -> None:
        """Stops the probe's thread (after a check still running)."""
        self._executor.shutdown(wait=False, cancel_futures=True)


def build_app(client: EmotionClient, settings: GatewaySettings = GatewaySettings(),
              policy: AccessPolicy = AccessPolicy()) -> Starlette:
    """The gateway: every route of the module docstring, calling the server through client, behind the
    policy's Host, Origin and token checks (ferstream.web.guard)."""
    health = HealthProbe(client, check_token=not settings.forward_caller_token)

    def token_of(scope) -> str | None:
        """The token to send to the server for this caller: theirs with --forward-caller-token, else the
        gateway's own (None)."""
        return (caller_token(scope) or "") if settings.forward_caller_token else None

    async def page(request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html", headers={"cache-control": "no-cache"})

    async def config(request: Request) -> Response:
        return JSONResponse(page_config(settings))

    async def annotate(request: Request) -> Response:
        try:
            options = options_of(request)
            image = await image_of(request, settings)
            # Built to be measured and let go: held, it would be one more copy of the image per call.
            check_message_size(emotion_pb2.AnnotateRequest(image=emotion_pb2.Image(encoded=image), options=options),
                               settings.max_message_bytes)
        except BodyError as error:
            return JSONResponse(error_body(str(error), error.code), status_code=error.status)
        except ValueError as error:
            return JSONResponse(error_body(str(error), grpc.StatusCode.INVALID_ARGUMENT), status_code=400)
        except ClientDisconnect:
            log.info("POST /v1/annotate from %s: the caller went away during the upload", _peer(request))
            return Response(status_code=499)  # goes nowhere: nobody is left to read it
        try:
            reply = await run_in_threadpool(
                client.annotate, image, detector=options.detector,
                min_detection_score=options.min_detection_score, max_faces=options.max_faces, model=options.model,
                token=token_of(request.scope))
        except grpc.RpcError as error:
            body, status = rpc_error_body(error)
            # The error's traceback holds the frames that held the image and its request (copies of the body),
            # and one of them holds the awaited future that holds the error: a cycle that would keep them
            # all until the garbage collector next runs, which an idle gateway may not do for a long time.
            error.__traceback__ = None
            return JSONResponse(body, status_code=status)
        except ValueError as error:  # a caller's token that cannot travel as metadata
            error.__traceback__ = None  # as above
            return JSONResponse(error_body(str(error), grpc.StatusCode.UNAUTHENTICATED), status_code=401)
        width, height = await run_in_threadpool(image_size, image)
        record = FrameRecord(frame=0, width=width, height=height, faces=[face_record(face) for face in reply.faces])
        return JSONResponse({**answer_json(record, reply.faces_omitted), "model": reply.model})

    async def healthz(request: Request) -> Response:
        body, status = await health.check()
        return JSONResponse(body, status_code=status)

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document(settings.max_message_bytes, tokens_required=bool(policy.tokens)))

    async def live(websocket: WebSocket) -> None:
        offered = websocket.scope.get("subprotocols", [])
        await websocket.accept(LIVE_SUBPROTOCOL if LIVE_SUBPROTOCOL in offered else None)
        loop = asyncio.get_running_loop()
        outbox: asyncio.Queue[dict] = asyncio.Queue()
        bridge = LiveBridge(client, settings.max_in_flight,
                            lambda message: loop.call_soon_threadsafe(outbox.put_nowait, message),
                            token=token_of(websocket.scope))
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

    async def http_error(request: Request, error: HTTPException) -> Response:
        """Starlette's own errors (no such route, wrong method) as JSON, like every other error."""
        return JSONResponse(http_error_body(error.status_code, error.detail), status_code=error.status_code,
                            headers=error.headers)

    routes = [
        Route("/", page),
        Route("/v1/config", config),
        Route("/v1/annotate", annotate, methods=["POST"]),
        Route("/healthz", healthz),
        Route("/openapi.json", openapi),
        WebSocketRoute("/v1/live", live),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    middleware = [Middleware(Guard, policy=policy)]
    if policy.origins:  # pages of the allowed origins may read the answers (CORS), and send the token
        middleware.append(Middleware(CORSMiddleware, allow_origins=list(policy.origins), allow_methods=["GET", "POST"],
                                     allow_headers=["authorization", "content-type"]))
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        health.close()

    return Starlette(routes=routes, middleware=middleware, exception_handlers={HTTPException: http_error},
                     lifespan=lifespan)


def _peer(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "a caller"


async def _send_answers(websocket: WebSocket, outbox: asyncio.Queue[dict]) -> None:
    """Sends the bridge's messages to the page; after a stream error, closes the socket (the page opens a
    new one, and with it a new stream)."""
    while True:
        message = await outbox.get()
        await websocket.send_text(json.dumps(message))
        if message.get("ends_stream"):
            await websocket.close(CLOSE_TRY_AGAIN_LATER, message["code"])
            return
