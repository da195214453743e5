"""EmotionClient: the Python face of the ferstream gRPC service, used by the app and by anyone's code.

    from ferstream.client import EmotionClient
    with EmotionClient("127.0.0.1:50051") as client:
        reply = client.annotate(cv2.imread("photo.jpg"), detector="yunet")
        for face in reply.faces:
            print(face.box, emotion_name(face.emotion), face.detection_score)

Images may be BGR/grey numpy arrays (JPEG-encoded before sending, or sent raw with
``jpeg_quality=None``), already encoded bytes, or a file path.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import cv2
import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ferstream.model.labels import EMOTIONS  # the Emotion enum's order (without UNSPECIFIED)
from ferstream.v1 import emotion_pb2, emotion_pb2_grpc

DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_JPEG_QUALITY = 85
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

ImageInput = Union[np.ndarray, bytes, str, os.PathLike]
FrameInput = Union[ImageInput, emotion_pb2.StreamAnnotateRequest]


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
    detector: str | int | None = None, min_detection_score: float = 0.0, max_faces: int = 0
) -> emotion_pb2.AnnotateOptions:
    return emotion_pb2.AnnotateOptions(
        detector=detector_value(detector), min_detection_score=min_detection_score, max_faces=max_faces
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
        return self.root_certificates is not None or self.certificate_chain is not None

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()


class ResponseStream:
    """The responses of one StreamAnnotate call: iterate it; cancel() ends it from any thread."""

    def __init__(self, call: grpc.Call) -> None:
        self._call = call

    def __iter__(self) -> Iterator[emotion_pb2.StreamAnnotateResponse]:
        return self._call

    def __next__(self) -> emotion_pb2.StreamAnnotateResponse:
        return next(self._call)

    def cancel(self) -> None:
        self._call.cancel()

    def __enter__(self) -> ResponseStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()


class EmotionClient:
    """A channel to one ferstream server. Thread-safe; close() (or `with`) releases the connection."""

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        root_certificates: bytes | None = None,
        private_key: bytes | None = None,
        certificate_chain: bytes | None = None,
        token: str | None = None,
        timeout: float | None = 30.0,
        channel_options: Sequence[tuple[str, object]] = (),
    ) -> None:
        self.target = target
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
        if self._credentials.uses_tls:
            tls = grpc.ssl_channel_credentials(root_certificates, private_key, certificate_chain)
            self._channel = grpc.secure_channel(target, tls, options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self._stub = emotion_pb2_grpc.EmotionServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    @property
    def channel(self) -> grpc.Channel:
        return self._channel

    def wait_ready(self, timeout: float) -> bool:
        """True once the channel is connected; False when timeout seconds pass first."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            return False
        return True

    def health(self, service: str = "", timeout: float | None = 5.0) -> bool:
        """True when the server reports SERVING for `service` ('' = the whole server)."""
        reply = self._health.Check(
            health_pb2.HealthCheckRequest(service=service),
            timeout=timeout,
            metadata=self._credentials.metadata(),
        )
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    def model_info(self) -> emotion_pb2.GetModelInfoResponse:
        return self._stub.GetModelInfo(
            emotion_pb2.GetModelInfoRequest(), timeout=self.timeout, metadata=self._credentials.metadata()
        )

    def annotate(
        self,
        image: ImageInput,
        *,
        detector: str | int | None = None,
        min_detection_score: float = 0.0,
        max_faces: int = 0,
        jpeg_quality: int | None = DEFAULT_JPEG_QUALITY,
    ) -> emotion_pb2.AnnotateResponse:
        """Faces, boxes and emotion probabilities of one image (grpc.RpcError on failure)."""
        request = emotion_pb2.AnnotateRequest(
            image=encode_image(image, jpeg_quality),
            options=make_options(detector, min_detection_score, max_faces),
        )
        return self._stub.Annotate(request, timeout=self.timeout, metadata=self._credentials.metadata())

    def stream(
        self,
        frames: Iterable[FrameInput],
        *,
        detector: str | int | None = None,
        min_detection_score: float = 0.0,
        max_faces: int = 0,
        jpeg_quality: int | None = DEFAULT_JPEG_QUALITY,
    ) -> ResponseStream:
        """Streams frames and yields one response per frame the server processed.

        Frames that are arrays/bytes/paths get frame ids 1, 2, 3... and the given options; a
        StreamAnnotateRequest is sent as it is (its own id and options), which lets a caller change
        options mid-stream. The server skips frames it could not start before a newer one came
        (listed in `skipped_frame_ids`), so a producer faster than the server loses frames, not time.
        """
        options = make_options(detector, min_detection_score, max_faces)
        ids = itertools.count(1)

        def requests() -> Iterator[emotion_pb2.StreamAnnotateRequest]:
            for frame in frames:
                if isinstance(frame, emotion_pb2.StreamAnnotateRequest):
                    yield frame
                else:
                    image = encode_image(frame, jpeg_quality)
                    yield emotion_pb2.StreamAnnotateRequest(frame_id=next(ids), image=image, options=options)

        call = self._stub.StreamAnnotate(requests(), metadata=self._credentials.metadata())
        return ResponseStream(call)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> EmotionClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def face_to_dict(face: emotion_pb2.Face) -> dict[str, object]:
    """A JSON-ready view of one face: box, detection score, top emotion and all probabilities."""
    x, y, width, height = box_tuple(face)
    return {
        "box": {"x": x, "y": y, "width": width, "height": height},
        "detection_score": round(float(face.detection_score), 4),
        "emotion": emotion_name(face.emotion),
        "probabilities": {name: round(p, 4) for name, p in zip(EMOTIONS, probabilities(face))},
    }
