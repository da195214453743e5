"""EmotionClient: the Python face of the ferstream gRPC service, used by the app and by anyone's code.

    from ferstream.client import EmotionClient, face_to_dict, video_frames
    with EmotionClient() as client:                         # $FER_SERVER, else 127.0.0.1:50051
        for face in client.annotate("photo.jpg").faces:
            print(face_to_dict(face))
        for response in client.stream(video_frames("clip.mp4"), mode="file"):
            print(response.frame_id, len(response.faces))

Images may be BGR/grey numpy arrays (JPEG-encoded before sending, or sent raw with
``jpeg_quality=None``), already encoded bytes, or a file path.

Streams come in two modes, chosen per call:

- ``mode="live"`` (a camera): frames go out as fast as the iterable yields them; the server keeps only the
  newest frame waiting, so a producer faster than the server loses stale frames (listed in
  ``skipped_frame_ids``), never gains latency.
- ``mode="file"`` (a recording): every frame is answered, in order, one response per frame. At most
  ``max_in_flight`` frames are sent and unanswered at any time, so nothing waits long enough at the server
  to be replaced; should the server skip one all the same, it is sent again and its answer still comes out
  in its place.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Union

import cv2
import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ferstream.annotate.records import FaceRecord
from ferstream.client.window import DEFAULT_MAX_IN_FLIGHT, InFlightWindow
from ferstream.model.labels import EMOTIONS  # the Emotion enum's order (without UNSPECIFIED)
from ferstream.v1 import emotion_pb2, emotion_pb2_grpc

DEFAULT_TARGET = "127.0.0.1:50051"
# The server a client talks to when none is named: fer-client, the Node example and EmotionClient() alike.
SERVER_ENV = "FER_SERVER"
DEFAULT_JPEG_QUALITY = 85
# The lowest JPEG quality fer-client and fer-annotate --server send at: from 75 up, at least 95 % of faces keep
# the top emotion they have in the uncompressed frame; below, more change (docs/model-card.md#design-measurements).
MIN_JPEG_QUALITY = 75
# Frames are a few hundred KiB at most as JPEG, but raw 1080p BGR is ~6 MiB: lift gRPC's 4 MiB cap.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# Reconnection backoff, for gRPC's own connection attempts and the app's stream restarts alike: a restarted
# server is found again within seconds (gRPC's default grows to two minutes).
RECONNECT_INITIAL_S = 0.5
RECONNECT_MAX_S = 5.0
# HTTP/2 keepalive pings find a dead server (or a NAT that dropped the connection) while a stream is quiet;
# fer-server accepts pings every 10 s or more, so 20 s never earns a GOAWAY "too_many_pings".
KEEPALIVE_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
)
# Calls go to each of the target's addresses in turn: several listed ("ipv4:10.0.0.1:50051,10.0.0.2:50051")
# or several behind one name ("dns:///fer-server.default.svc:50051", a headless Service). A stream stays on
# the server it started on. With one address this is the same as gRPC's default, pick_first.
ROUND_ROBIN_SERVICE_CONFIG = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})

DETECTORS: tuple[str, ...] = ("haar", "ssd", "yunet")
# The emotion models a fer-server serves by name (AnnotateOptions.model; GetModelInfo lists them).
MODELS: tuple[str, ...] = ("fast", "accurate")

# close() waits this long for each cancelled stream's sending thread; it leaves at once unless the caller's
# frames iterable is blocked (a camera that stopped delivering).
SENDER_EXIT_TIMEOUT_S = 1.0

ImageInput = Union[np.ndarray, bytes, str, os.PathLike]
FrameInput = Union[ImageInput, emotion_pb2.StreamAnnotateRequest]
StreamMode = Literal["live", "file"]


def default_target() -> str:
    """$FER_SERVER when set, else 127.0.0.1:50051."""
    return os.environ.get(SERVER_ENV) or DEFAULT_TARGET


def video_frames(source: str | os.PathLike | int) -> Iterator[np.ndarray]:
    """Every frame of a video file (or camera index) as BGR arrays, until the source ends.

    Raises ValueError when the source cannot be opened. The capture is released when the iterator ends
    or is closed.
    """
    capture = cv2.VideoCapture(source if isinstance(source, int) else str(source))
    try:
        if not capture.isOpened():
            raise ValueError(f"{source}: cannot open it as a video or camera")
        while True:
            grabbed, frame = capture.read()
            if not grabbed:
                return
            yield frame
    finally:
        capture.release()


def emotion_name(value: int) -> str:
    """'happy' for EMOTION_HAPPY; 'unspecified' for 0."""
    return emotion_pb2.Emotion.Name(value).removeprefix("EMOTION_").lower()


def detector_value(name: str | int | None) -> int:
    """The Detector enum value for 'haar' / 'ssd' / 'yunet'; None, '' or 'default' mean the server's choice."""
    if name is None or name == "" or name == "default":
        return emotion_pb2.DETECTOR_UNSPECIFIED
    if isinstance(name, int):
        emotion_pb2.Detector.Name(name)  # ValueError for a value the proto does not define
        return name
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}")
    return emotion_pb2.Detector.Value(f"DETECTOR_{name.upper()}")


def detector_name(value: int) -> str:
    """'yunet' for DETECTOR_YUNET; 'default' for DETECTOR_UNSPECIFIED."""
    name = emotion_pb2.Detector.Name(value).removeprefix("DETECTOR_").lower()
    return "default" if name == "unspecified" else name


def probabilities(face: emotion_pb2.Face) -> tuple[float, ...]:
    """The face's 7 probabilities in EMOTIONS order (0 for a class the server did not send)."""
    by_class = {score.emotion: score.probability for score in face.scores}
    return tuple(float(by_class.get(index + 1, 0.0)) for index in range(len(EMOTIONS)))


def box_tuple(face: emotion_pb2.Face) -> tuple[int, int, int, int]:
    """(x, y, width, height) in pixels of the sent image."""
    return (face.box.x, face.box.y, face.box.width, face.box.height)


def make_options(
    detector: str | int | None = None, min_detection_score: float = 0.0, max_faces: int = 0, model: str = ""
) -> emotion_pb2.AnnotateOptions:
    """AnnotateOptions for a request: detector by name (None: the server's), score threshold 0-1 (0: the
    detector's own), most faces (0: the server's limit), emotion model by name ("fast", "accurate"; empty:
    the server's default for the call). ValueError for an unknown detector; the server refuses an unknown
    model (INVALID_ARGUMENT naming the ones it serves)."""
    return emotion_pb2.AnnotateOptions(
        detector=detector_value(detector), min_detection_score=min_detection_score, max_faces=max_faces,
        model=model
    )


def encode_image(image: ImageInput, jpeg_quality: int | None = DEFAULT_JPEG_QUALITY) -> emotion_pb2.Image:
    """Wraps an image for the wire: arrays become JPEG (or raw pixels when jpeg_quality is None)."""
    if isinstance(image, bytes):
        return emotion_pb2.Image(encoded=image)
    if isinstance(image, (str, os.PathLike)):
        return emotion_pb2.Image(encoded=Path(image).read_bytes())
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise TypeError("image must be a uint8 numpy array, encoded bytes or a file path")
    if jpeg_quality is None:
        return _raw_image(image)
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    if not ok:
        raise ValueError(f"cannot JPEG-encode an array of shape {image.shape}")
    return emotion_pb2.Image(encoded=jpeg.tobytes())


def _raw_image(image: np.ndarray) -> emotion_pb2.Image:
    """Grey (H, W) or BGR (H, W, 3) uint8 pixels as a RawImage, uncompressed."""
    if image.ndim == 2:
        pixel_format = emotion_pb2.PIXEL_FORMAT_GRAY8
    elif image.ndim == 3 and image.shape[2] == 3:
        pixel_format = emotion_pb2.PIXEL_FORMAT_BGR8
    else:
        raise ValueError(f"raw images must be grey (H, W) or BGR (H, W, 3), not {image.shape}")
    height, width = image.shape[:2]
    raw = emotion_pb2.RawImage(
        width=width, height=height, format=pixel_format, data=np.ascontiguousarray(image).tobytes()
    )
    return emotion_pb2.Image(raw=raw)


@dataclass(frozen=True)
class Credentials:
    """TLS material (PEM bytes) and a bearer token; all optional.

    With root_certificates the channel is TLS; adding private_key + certificate_chain makes it mutual TLS.
    The token travels as `authorization: Bearer <token>` metadata on every call.
    """

    root_certificates: bytes | None = None
    private_key: bytes | None = None
    certificate_chain: bytes | None = None
    token: str | None = None

    @property
    def uses_tls(self) -> bool:
        """True when the channel must be TLS (roots or a client certificate given)."""
        return self.root_certificates is not None or self.certificate_chain is not None

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The call metadata carrying the token; empty without one."""
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()


def token_problem(token: str | None) -> str | None:
    """Why token cannot travel as gRPC metadata (printable ASCII without spaces), or None when it can.

    gRPC refuses other characters on the client, before anything is sent: the call then fails with
    "INTERNAL: Invalid metadata", which reads as if the server had failed.
    """
    if token and not all(0x21 <= ord(character) <= 0x7E for character in token):
        return ("the token is not valid ASCII metadata (gRPC sends printable ASCII only, no spaces): "
                "check it locally, it was not sent")
    return None


class IncompleteStream(Exception):
    """A file-mode stream ended (by the server, e.g. while it shut down) before every frame was answered."""


class _FrameRequests:
    """The caller's frames as StreamAnnotateRequests: ids 1, 2, 3... and the stream's options for arrays,
    bytes and paths; a StreamAnnotateRequest passes as it is (its own id and options).

    Runs on gRPC's sending thread. An exception from the frames (a bad array, a failing reader) is kept for
    the caller, who sees it raised after the responses to the frames before it, instead of gRPC's bare
    UNKNOWN "Exception iterating requests!".
    """

    def __init__(self, frames: Iterable[FrameInput], options: emotion_pb2.AnnotateOptions,
                 jpeg_quality: int | None) -> None:
        self._frames = iter(frames)
        self._options = options
        self._jpeg_quality = jpeg_quality
        self._ids = itertools.count()  # 0-based: the frame's index, as the JSON lines' `frame`
        self.error: Exception | None = None
        self.sender: threading.Thread | None = None  # gRPC's thread that sends the requests

    def next_request(self) -> emotion_pb2.StreamAnnotateRequest | None:
        """The next request; None when the frames end or fail."""
        self.sender = threading.current_thread()
        if self.error is not None:
            return None
        try:
            frame = next(self._frames)
            if isinstance(frame, emotion_pb2.StreamAnnotateRequest):
                return frame
            image = encode_image(frame, self._jpeg_quality)
        except StopIteration:
            return None
        except Exception as error:  # handed to the caller's thread by raise_error()
            self.error = error
            return None
        return emotion_pb2.StreamAnnotateRequest(frame_id=next(self._ids), image=image, options=self._options)

    def __iter__(self) -> Iterator[emotion_pb2.StreamAnnotateRequest]:
        while (request := self.next_request()) is not None:
            yield request

    def close(self) -> None:
        """Closes the frames iterable when it is a generator (releasing a camera or a file it holds), unless
        the sending thread is still inside it."""
        close = getattr(self._frames, "close", None)
        if close is not None and (self.sender is None or not self.sender.is_alive()):
            try:
                close()
            except ValueError:  # "generator already executing": the sender is in it after all
                pass

    def raise_error(self) -> None:
        """Re-raises, on the caller's thread, what the frames raised."""
        if self.error is not None:
            raise self.error


class _InOrderWindow:
    """File mode's flow control for one stream.

    The sending side (gRPC's thread) sends a frame only while the window (InFlightWindow) has room, and
    re-sends any frame the server reported skipped before it sends a new one. The receiving side (the
    caller's thread) hands answers out in the order the frames were first sent, with the caller's frame ids.
    Frames travel under ids of their own (1, 2, 3... in first-send order), so a caller's repeated ids cannot
    mix answers up.
    """

    def __init__(self, source: _FrameRequests, max_in_flight: int) -> None:
        self._source = source
        self._window: InFlightWindow[None] = InFlightWindow(max_in_flight)
        self._changed = self._window.changed  # one lock for the window and the order kept here
        self._wire_ids = itertools.count(1)
        self._unanswered: dict[int, emotion_pb2.StreamAnnotateRequest] = {}  # wire id -> request
        self._caller_ids: dict[int, int] = {}  # wire id -> the caller's frame id
        self._order: collections.deque[int] = collections.deque()  # wire ids not yet handed out, in send order
        self._answers: dict[int, emotion_pb2.StreamAnnotateResponse] = {}
        self._resend: collections.deque[int] = collections.deque()
        self._exhausted = False
        self._closed = False

    def _can_act(self) -> bool:
        room = self._window.has_room() and (bool(self._resend) or not self._exhausted)
        done = self._exhausted and not self._unanswered
        return self._closed or room or done

    def requests(self) -> Iterator[emotion_pb2.StreamAnnotateRequest]:
        """What gRPC sends; ends (half-closing the stream) once every frame is answered."""
        while True:
            with self._changed:
                self._changed.wait_for(self._can_act)
                if self._closed:
                    return
                if self._resend:
                    request = self._unanswered.get(self._resend.popleft())
                    if request is None:
                        continue  # answered after all
                    self._window.sent(request.frame_id)
                elif self._exhausted:
                    return  # nothing left to send, nothing unanswered
                else:
                    request = None  # room in the window for a new frame
            if request is None and (request := self._pull()) is None:
                continue
            yield request

    def _pull(self) -> emotion_pb2.StreamAnnotateRequest | None:
        """The caller's next frame under its wire id; None when the frames are exhausted."""
        request = self._source.next_request()  # outside the lock: reading and encoding take time
        with self._changed:
            if request is None:
                self._exhausted = True
                self._changed.notify_all()
                return None
            wire_id = next(self._wire_ids)
            wire = emotion_pb2.StreamAnnotateRequest()
            wire.CopyFrom(request)  # every field the caller set (capture_time_ms too), under the wire id
            wire.frame_id = wire_id
            self._unanswered[wire_id] = wire
            self._window.sent(wire_id)
            self._caller_ids[wire_id] = request.frame_id
            self._order.append(wire_id)
            return wire

    def responses(self, call: Iterator[emotion_pb2.StreamAnnotateResponse]
                  ) -> Iterator[emotion_pb2.StreamAnnotateResponse]:
        """One response per frame, in order; IncompleteStream when the call ends with frames unanswered."""
        try:
            for response in call:
                yield from self._receive(response)
        finally:
            self.close()
        self._source.raise_error()
        if self._order:
            raise IncompleteStream(f"the server ended the stream with {len(self._order)} frame(s) unanswered, "
                                   f"the first being frame {self._caller_ids.get(self._order[0], '?')}")

    def _receive(self, response: emotion_pb2.StreamAnnotateResponse) -> list[emotion_pb2.StreamAnnotateResponse]:
        with self._changed:
            self._resend.extend(wire_id for wire_id in response.skipped_frame_ids if wire_id in self._unanswered)
            self._window.answered(response.frame_id, response.skipped_frame_ids)
            wire_id = response.frame_id
            if self._unanswered.pop(wire_id, None) is not None:
                response.frame_id = self._caller_ids.pop(wire_id)
                del response.skipped_frame_ids[:]  # re-sent, so not skipped for the caller
                self._answers[wire_id] = response
            ready = []
            while self._order and self._order[0] in self._answers:
                ready.append(self._answers.pop(self._order.popleft()))
            self._changed.notify_all()
            return ready

    def close(self) -> None:
        """Stops the sending side (on cancel, or when the call ended)."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()


class ResponseStream:
    """The responses of one StreamAnnotate call: iterate it; cancel() ends it from any thread.

    Iterating raises grpc.RpcError when the call fails (CANCELLED after cancel()), re-raises what the
    frames iterable raised once the frames before it are answered, and in file mode raises IncompleteStream
    when the server ended the call before answering every frame.
    """

    def __init__(self, call: grpc.Call, responses: Iterator[emotion_pb2.StreamAnnotateResponse],
                 source: _FrameRequests, on_cancel: Callable[[], None] = lambda: None) -> None:
        self._call = call
        self._responses = responses
        self._source = source
        self._on_cancel = on_cancel

    def __iter__(self) -> Iterator[emotion_pb2.StreamAnnotateResponse]:
        return self

    def __next__(self) -> emotion_pb2.StreamAnnotateResponse:
        return next(self._responses)

    def cancel(self) -> None:
        """Ends the call; safe from any thread and more than once."""
        self._on_cancel()
        self._call.cancel()

    def wait_sender(self, timeout: float) -> None:
        """Waits up to timeout seconds for gRPC's sending thread to leave the frames (after cancel())."""
        sender = self._source.sender
        if sender is not None and sender is not threading.current_thread():
            sender.join(timeout)
        self._source.close()

    def __enter__(self) -> ResponseStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()


class EmotionClient:
    """A channel to one ferstream server (or several, balanced per call). Thread-safe; close() (or `with`)
    releases the connection.

    target: "HOST:PORT", "ipv4:A:PORT,B:PORT" or "dns:///NAME:PORT"; None means $FER_SERVER, else
    127.0.0.1:50051. With root_certificates the channel is TLS (add private_key and certificate_chain for
    mutual TLS); token is sent as `authorization: Bearer TOKEN` (ValueError when it is not printable
    ASCII: gRPC could not send it). server_name: the name the server's TLS certificate must carry when it
    is not the target's host (an address, a load balancer's name). timeout (seconds) bounds each unary call;
    streams have no deadline.
    """

    def __init__(
        self,
        target: str | None = None,
        *,
        root_certificates: bytes | None = None,
        private_key: bytes | None = None,
        certificate_chain: bytes | None = None,
        token: str | None = None,
        timeout: float | None = 30.0,
        channel_options: Sequence[tuple[str, object]] = (),
        server_name: str | None = None,
    ) -> None:
        problem = token_problem(token)
        if problem is not None:
            raise ValueError(problem)
        self.target = target or default_target()
        self.timeout = timeout
        self._credentials = Credentials(root_certificates, private_key, certificate_chain, token)
        options = [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.initial_reconnect_backoff_ms", int(RECONNECT_INITIAL_S * 1000)),
            ("grpc.max_reconnect_backoff_ms", int(RECONNECT_MAX_S * 1000)),
            *KEEPALIVE_OPTIONS,
            ("grpc.service_config", ROUND_ROBIN_SERVICE_CONFIG),
            *channel_options,
        ]
        if server_name:  # the name the server's certificate must carry, when it is not the target's host
            options.append(("grpc.ssl_target_name_override", server_name))
        if self._credentials.uses_tls:
            tls = grpc.ssl_channel_credentials(root_certificates, private_key, certificate_chain)
            self._channel = grpc.secure_channel(self.target, tls, options=options)
        else:
            self._channel = grpc.insecure_channel(self.target, options=options)
        self._stub = emotion_pb2_grpc.EmotionServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        # Streams not yet ended, cancelled by close(). Held strongly: a stream whose loop was left by an
        # exception is otherwise collected later, its threads still running at interpreter exit, where they
        # can abort the process ("terminate called without an active exception").
        self._streams: set[ResponseStream] = set()

    @property
    def channel(self) -> grpc.Channel:
        """The underlying gRPC channel (for stubs of other services on the same connection)."""
        return self._channel

    def wait_ready(self, timeout: float) -> bool:
        """True once the channel is connected; False when timeout seconds pass first."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            return False
        return True

    def connection_problem(self, timeout: float = 5.0) -> str | None:
        """Why calls cannot reach the server (gRPC's own reason: a refused connection, a TLS handshake that
        failed and why), one line; None when a health check gets through. Waits at most timeout seconds."""
        try:
            self._health.Check(health_pb2.HealthCheckRequest(), timeout=timeout, metadata=self._credentials.metadata())
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE:
                return None  # the server answered: the connection itself works
            return " ".join((error.details() or error.code().name).split())
        return None

    def health(self, service: str = "", timeout: float | None = 5.0) -> bool:
        """True when the server reports SERVING for `service` ('' = the whole server)."""
        reply = self._health.Check(
            health_pb2.HealthCheckRequest(service=service),
            timeout=timeout,
            metadata=self._credentials.metadata(),
        )
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    def model_info(self, timeout: float | None = None) -> emotion_pb2.GetModelInfoResponse:
        """The served classes, the detectors (available or why not) and the model's metadata; timeout in
        seconds, default the client's."""
        return self._stub.GetModelInfo(
            emotion_pb2.GetModelInfoRequest(), timeout=timeout or self.timeout, metadata=self._credentials.metadata()
        )

    def _metadata(self, token: str | None) -> tuple[tuple[str, str], ...]:
        """The call's metadata: the client's own token, or token instead when one is given (ValueError when
        it cannot travel as metadata)."""
        if token is None:
            return self._credentials.metadata()
        if (problem := token_problem(token)) is not None:
            raise ValueError(problem)
        return Credentials(token=token).metadata()

    def annotate(
        self,
        image: ImageInput,
        *,
        detector: str | int | None = None,
        min_detection_score: float = 0.0,
        max_faces: int = 0,
        jpeg_quality: int | None = DEFAULT_JPEG_QUALITY,
        token: str | None = None,
        model: str = "",
    ) -> emotion_pb2.AnnotateResponse:
        """Faces, boxes and emotion probabilities of one image; the response's `model` names the emotion
        model that classified them (model: "fast" or "accurate"; empty: the server's default for photos,
        accurate unless fer-server --annotate-model says otherwise).

        token: sent instead of the client's own for this call (a gateway passing on its caller's).
        grpc.RpcError on failure: INVALID_ARGUMENT for a bad image or option (an unknown model included),
        FAILED_PRECONDITION for a
        detector the server lacks, UNAVAILABLE when the server cannot be reached.
        """
        request = emotion_pb2.AnnotateRequest(
            image=encode_image(image, jpeg_quality),
            options=make_options(detector, min_detection_score, max_faces, model),
        )
        return self._stub.Annotate(request, timeout=self.timeout, metadata=self._metadata(token))

    def stream(
        self,
        frames: Iterable[FrameInput],
        *,
        mode: StreamMode = "live",
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        detector: str | int | None = None,
        min_detection_score: float = 0.0,
        max_faces: int = 0,
        jpeg_quality: int | None = DEFAULT_JPEG_QUALITY,
        token: str | None = None,
        model: str = "",
    ) -> ResponseStream:
        """Streams frames through StreamAnnotate; iterate the result for the responses.

        mode="live" (a camera): frames are sent as fast as `frames` yields them and the server answers the
        newest it can, listing the ones it replaced in `skipped_frame_ids`: latency stays low, stale frames
        are lost. mode="file" (a recording): every frame is answered, in order (the n-th response answers
        the n-th frame), with at most max_in_flight frames sent and unanswered; skipped_frame_ids stays empty.
        The default window of 2 keeps the server busy without it ever replacing a frame (it keeps two frames
        of a stream in its workers, server/streams.py); a larger one may go faster, but frames the server
        replaces are sent again and so reach it out of order (its face tracks can jump there).

        Frames that are arrays/bytes/paths get frame ids 0, 1, 2... (their index in `frames`, the `frame`
        of fer-annotate's and fer-client --headless's JSON lines) and the given options; a
        StreamAnnotateRequest is sent as it is (its own id and options), which lets a caller change
        options mid-stream. A frame the server cannot use is answered with its `error` set, and the stream
        goes on. token: sent instead of the client's own for this stream. model: the emotion model ("fast",
        "accurate"; empty: the server's default for streams, fast unless fer-server --stream-model says
        otherwise). ValueError for an unknown mode, max_in_flight below 1, an unknown detector or a token that
        cannot travel as metadata.
        """
        if mode not in ("live", "file"):
            raise ValueError(f"mode must be 'live' or 'file', not {mode!r}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, not {max_in_flight}")
        source = _FrameRequests(frames, make_options(detector, min_detection_score, max_faces, model), jpeg_quality)
        metadata = self._metadata(token)
        if mode == "live":
            call = self._stub.StreamAnnotate(iter(source), metadata=metadata)

            def live_responses() -> Iterator[emotion_pb2.StreamAnnotateResponse]:
                yield from call
                source.raise_error()

            stream = ResponseStream(call, live_responses(), source)
        else:
            window = _InOrderWindow(source, max_in_flight)
            call = self._stub.StreamAnnotate(window.requests(), metadata=metadata)
            stream = ResponseStream(call, window.responses(call), source, on_cancel=window.close)
        self._streams.add(stream)
        call.add_done_callback(lambda _: self._streams.discard(stream))
        return stream

    def close(self) -> None:
        """Cancels the streams still open and closes the channel; calls still running end with CANCELLED."""
        streams = list(self._streams)
        for stream in streams:
            stream.cancel()
        for stream in streams:  # a sender still inside the C core at interpreter exit aborts the process
            stream.wait_sender(SENDER_EXIT_TIMEOUT_S)
        self._channel.close()

    def __enter__(self) -> EmotionClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def face_record(face: emotion_pb2.Face) -> FaceRecord:
    """The face as the JSON-lines FaceRecord that fer-annotate writes too (ferstream.annotate.records).

    probabilities holds the classes the server sent (all seven unless it serves a subset), in Emotion order;
    a stream's face also carries its track_id and, when the server smooths, track_probabilities.
    """
    def by_name(scores) -> dict[str, float]:
        return {emotion_name(score.emotion): float(score.probability)
                for score in sorted(scores, key=lambda score: score.emotion)}

    return FaceRecord(box_tuple(face), float(face.detection_score), emotion_name(face.emotion), by_name(face.scores),
                      face.track_id or None, by_name(face.track_scores) if face.track_scores else None)


def omitted_note(response: emotion_pb2.AnnotateResponse | emotion_pb2.StreamAnnotateResponse) -> str:
    """"32 of 43 faces shown (limit 32)" when the face limit (the request's max_faces, else the server's
    --max-faces) left faces out of the response; "" when it kept them all. The faces kept are the limit."""
    if not response.faces_omitted:
        return ""
    shown = len(response.faces)
    return f"{shown} of {shown + response.faces_omitted} faces shown (limit {shown})"


def face_to_dict(face: emotion_pb2.Face) -> dict[str, object]:
    """A JSON-ready view of one face: box, detection score, top emotion and its probabilities (the
    face's entry in fer-annotate's and fer-client --headless's JSON lines)."""
    return face_record(face).to_json()
