"""Between ferstream.v1 messages and the frame path's plain Python types (no call handling here)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ferstream.model.tiers import INPUT_DESCRIPTIONS
from ferstream.pipeline.decode import EncodedImage, ImageSource, PixelFormat, RawImage
from ferstream.pipeline.detectors import DetectorKind
from ferstream.pipeline.errors import FrameError, invalid
from ferstream.pipeline.framepath import AnnotatedFrame, DetectOptions, FramePath, Timing, milliseconds_since
from ferstream.pipeline.tracking import TrackedFace
from ferstream.v1 import emotion_pb2 as pb

from .status import status_code

if TYPE_CHECKING:  # the type of a repeated message field, for annotations only
    from google.protobuf.internal.containers import RepeatedCompositeFieldContainer

# EMOTIONS index i is the proto Emotion value i + 1 (same order).
EMOTION_OFFSET = 1


def image_source(image: pb.Image) -> ImageSource:
    """The frame path's view of an Image message; BadInput for no image or an unknown pixel format.

    The pixel bytes are read out of the message once (protobuf copies them on each access).
    """
    which = image.WhichOneof("source")
    if which == "encoded":
        return EncodedImage(image.encoded)
    if which == "raw":
        raw = image.raw
        try:
            pixel_format = PixelFormat(raw.format)
        except ValueError:
            raise invalid(f"unknown or unset pixel format {raw.format}") from None
        return RawImage(raw.width, raw.height, pixel_format, raw.data)
    raise invalid("the request has no image")


def detect_options(options: pb.AnnotateOptions) -> DetectOptions:
    """The request's detection settings; FrameError (INVALID_ARGUMENT) for an unknown detector number.
    Zero values (detector unset, scores, counts, min_face_px, model) mean the server's defaults (the servicer
    fills in the call's default model before the frame reaches the workers)."""
    detector: DetectorKind | None = None
    if options.detector != pb.DETECTOR_UNSPECIFIED:
        try:
            detector = DetectorKind(options.detector)
        except ValueError:
            raise invalid(f"unknown detector {options.detector}") from None
    return DetectOptions(detector, options.min_detection_score, options.max_faces, options.min_face_px, options.model)


def fill_timing(message: pb.Timing, timing: Timing) -> None:
    """Writes timing into a response's own Timing field (no separate message to build and copy)."""
    message.decode_ms = timing.decode_ms
    message.detect_ms = timing.detect_ms
    message.classify_ms = timing.classify_ms
    message.total_ms = timing.total_ms
    message.queue_ms = timing.queue_ms
    message.batch_faces = timing.batch_faces


def add_faces(faces: RepeatedCompositeFieldContainer[pb.Face], frame: AnnotatedFrame,
              tracks: Sequence[TrackedFace] | None = None) -> None:
    """Appends the frame's faces (box, score, emotion, scores, landmarks when the detector gave them), in the
    frame's order, to a message's repeated Face field. tracks (a stream's; one per face, in the same order) add
    each face's track_id and, when smoothing is on, its track_scores; without them both stay unset.

    Built where they belong: adding finished Face messages to a response would copy each one.
    """
    for index, face in enumerate(frame.faces):
        box = face.box
        message = faces.add(detection_score=box.score, emotion=face.top_class + EMOTION_OFFSET)
        message.box.x, message.box.y, message.box.width, message.box.height = box.x, box.y, box.width, box.height
        emotions = [emotion + EMOTION_OFFSET for emotion in face.classes]
        for emotion, probability in zip(emotions, face.probabilities.tolist()):
            message.scores.add(emotion=emotion, probability=probability)
        for x, y in box.landmarks:
            message.landmarks.add(x=x, y=y)
        if tracks:
            track = tracks[index]
            message.track_id = track.track_id
            if track.smoothed is not None:
                for emotion, probability in zip(emotions, track.smoothed.tolist()):
                    message.track_scores.add(emotion=emotion, probability=probability)


def annotate_response(frame: AnnotatedFrame) -> pb.AnnotateResponse:
    """The unary answer for an annotated frame."""
    response = pb.AnnotateResponse(faces_omitted=frame.faces_omitted, model=frame.model)
    add_faces(response.faces, frame)
    fill_timing(response.timing, frame.timing)
    return response


def stream_response(frame_id: int, outcome: AnnotatedFrame | FrameError, skipped: list[int],
                    arrived: float, tracks: Sequence[TrackedFace] | None = None) -> pb.StreamAnnotateResponse:
    """A stream's answer for one frame: its faces (on their tracks) and timing, or its error (with the gRPC
    code as a number and total_ms since `arrived`, a time.perf_counter() reading); skipped are the ids it
    replaced."""
    response = pb.StreamAnnotateResponse(frame_id=frame_id, skipped_frame_ids=skipped)
    if isinstance(outcome, FrameError):
        response.error.code = status_code(outcome).value[0]
        response.error.message = outcome.message
        response.timing.total_ms = milliseconds_since(arrived)
    else:
        add_faces(response.faces, outcome, tracks)
        fill_timing(response.timing, outcome.timing)
        response.faces_omitted = outcome.faces_omitted
        response.model = outcome.model
    return response


def model_info(frame_path: FramePath, annotate_model: str = "", stream_model: str = "") -> pb.GetModelInfoResponse:
    """GetModelInfo's answer: the served classes, the detectors, the fast tier's CNN, every served model tier
    (model/tiers.py: inputs, classes, cost measured at load, provenance) and each call's default tier.

    The model fields come from the served ONNX file's metadata (model/runtime.py): architecture and
    width from its ArchSpec, parameters of the trained network, input size from its preprocessing, and
    the sha256, PublicTest accuracy and training command of the PyTorch model file it was exported from.
    """
    classifier = frame_path.classifier
    meta = classifier.meta
    model = pb.ModelInfo(
        architecture=classifier.spec.name,
        width=classifier.spec.width,
        parameters=classifier.parameters,
        input_size=classifier.preprocessing.input_size,
        weights_sha256=classifier.source_weights_sha256,
        public_test_accuracy=float(meta.get("metrics", {}).get("public_test_accuracy", 0.0)),
        training_command=str(meta.get("training_command", "")),
    )
    detectors = [pb.DetectorInfo(detector=int(status.kind), available=status.available, detail=status.detail)
                 for status in frame_path.detectors.values()]
    classes = [index + EMOTION_OFFSET for index in frame_path.classes]
    models = [pb.ServedModel(name=tier.name, description=tier.description,
                             inputs=[INPUT_DESCRIPTIONS[kind] for kind in tier.inputs], classes=classes,
                             cost_ms=tier.cost_ms, provenance=tier.provenance, weights_sha256=tier.sha256)
              for tier in frame_path.tiers.values()]
    return pb.GetModelInfoResponse(
        classes=classes,
        detectors=detectors,
        default_detector=int(frame_path.default_detector),
        model=model,
        models=models,
        default_annotate_model=annotate_model or frame_path.default_model,
        default_stream_model=stream_model or frame_path.default_model,
    )
