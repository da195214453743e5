"""EmotionClient: the Python face of the ferstream gRPC service, used by the app and by anyone's code.

    from ferstream.client import EmotionClient, face_to_dict, video_frames
    with EmotionClient() as client:                         # $FER_SERVER, else 127.0.0.1:50051
        for face in client.annotate("photo.jpg").faces:
            print(face_to_dict(face))
        for response in client.stream(video_frames("clip.mp4"), mode="file"):
            print(response.frame_id, len(response.faces))

Images may be BGR/grey numpy arrays (JPEG-encoded before sending, or sent raw with
``jpeg_quality=None``), already encoded bytes, or a file path.

This module holds the connection (target, TLS, token, keepalive, balancing) and the unary calls (annotate,
model_info, health); streams are streaming.py's, and the messages' Python forms messages.py's.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ferstream.client.messages import DEFAULT_JPEG_QUALITY, ImageInput, encode_image, make_options
from ferstream.client.streaming import FrameInput, LiveStream, ResponseStream, StreamMode, open_live_stream, open_stream
from ferstream.client.window import DEFAULT_MAX_IN_FLIGHT
from ferstream.v1 import emotion_pb2, emotion_pb2_grpc

DEFAULT_TARGET = "127.0.0.1:50051"
# The server a client talks to when none is named: fer-client, the Node example and EmotionClient() alike.
SERVER_ENV = "FER_SERVER"
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

# close() waits this long for each cancelled stream's sending thread; it leaves at once unless the caller's
# frames iterable is blocked (a camera that stopped delivering).
SENDER_EXIT_TIMEOUT_S = 1.0

Stream = TypeVar("Stream", bound=ResponseStream)


def default_target() -> str:
    """$FER_SERVER when set, else 127.0.0.1:50051."""
    return os.environ.get(SERVER_ENV) or DEFAULT_TARGET


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

        mode="live" (a camera): `frames` is read as fast as it yields (on gRPC's sending thread); at most
        max_in_flight frames are sent and unanswered, and at most one waits to go, replaced by a newer one
        (see live_stream). Every frame gets an answer or is listed in a later answer's `skipped_frame_ids`
        (replaced while waiting here, or skipped by the server): latency stays low, stale frames are lost.
        mode="file" (a recording): every frame is answered, in order (the n-th response answers the n-th
        frame), with at most max_in_flight frames sent and unanswered; skipped_frame_ids stays empty.
        The default window of 2 keeps the server busy without it ever replacing a frame (it keeps two frames
        of a stream in its workers, server/streams.py); in file mode a larger one may go faster, but frames
        the server replaces are sent again and so reach it out of order (its face tracks can jump there).

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
        stream = open_stream(self._stub, frames, mode=mode, max_in_flight=max_in_flight,
                             options=make_options(detector, min_detection_score, max_faces, model),
                             jpeg_quality=jpeg_quality, metadata=self._metadata(token))
        return self._track(stream)

    def live_stream(
        self,
        *,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        detector: str | int | None = None,
        min_detection_score: float = 0.0,
        max_faces: int = 0,
        jpeg_quality: int | None = DEFAULT_JPEG_QUALITY,
        token: str | None = None,
        model: str = "",
    ) -> LiveStream:
        """A live-mode StreamAnnotate call fed by put(): for frames that are pushed to the caller (a
        socket's messages, a camera's callback) rather than read from an iterable.

        Each frame put is sent as soon as fewer than max_in_flight frames are unanswered; until then it
        waits, and a frame put while one waits replaces it (put() returns the replaced frame's id, which the
        next response lists in `skipped_frame_ids` with the frames the server skipped). The newest frame
        wins, as at the server, so a producer faster than the server loses stale frames and never gains
        latency, and at most 1 + max_in_flight frames are held. finish() ends the frames; iterate the stream
        for the responses, under the callers' frame ids. The options are stream()'s; ValueError as there.
        """
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, not {max_in_flight}")
        stream = open_live_stream(self._stub, max_in_flight=max_in_flight,
                                  options=make_options(detector, min_detection_score, max_faces, model),
                                  jpeg_quality=jpeg_quality, metadata=self._metadata(token))
        return self._track(stream)

    def _track(self, stream: Stream) -> Stream:
        """Holds stream until its call ends, for close() to cancel."""
        self._streams.add(stream)
        stream.add_done_callback(lambda: self._streams.discard(stream))
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
