"""Between ferstream.v1 messages and the frame path's plain Python types."""

from __future__ import annotations

from ferstream.pipeline.decode import EncodedImage, ImageSource, PixelFormat, RawImage
from ferstream.pipeline.detectors import DetectorKind
from ferstream.pipeline.errors import FrameError, invalid
from ferstream.pipeline.framepath import AnnotatedFrame, DetectOptions, FramePath, Timing
from ferstream.v1 import emotion_pb2 as pb

from .status import status_code

# EMOTIONS index i is the proto Emotion value i + 1 (same order).
EMOTION_OFFSET = 1


def image_source(image: pb.Image) -> ImageSource:
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
    detector: DetectorKind | None = None
    if options.detector != pb.DETECTOR_UNSPECIFIED:
        try:
            detector = DetectorKind(options.detector)
        except ValueError:
            raise invalid(f"unknown detector {options.detector}") from None
    return DetectOptions(detector, options.min_detection_score, options.max_faces)


def timing_message(timing: Timing) -> pb.Timing:
    return pb.Timing(decode_ms=timing.decode_ms, detect_ms=timing.detect_ms, classify_ms=timing.classify_ms,
                     total_ms=timing.total_ms, queue_ms=timing.queue_ms, batch_faces=timing.batch_faces)


def face_messages(frame: AnnotatedFrame) -> list[pb.Face]:
    faces = []
    for face in frame.faces:
        box = face.box
        scores = [pb.EmotionScore(emotion=index + EMOTION_OFFSET, probability=float(probability))
                  for index, probability in zip(face.classes, face.probabilities)]
        faces.append(pb.Face(box=pb.Box(x=box.x, y=box.y, width=box.width, height=box.height),
                             detection_score=box.score, emotion=face.top_class + EMOTION_OFFSET, scores=scores))
    return faces


def error_message(error: FrameError) -> pb.Error:
    return pb.Error(code=status_code(error).value[0], message=error.message)


def model_info(frame_path: FramePath) -> pb.GetModelInfoResponse:
    classifier = frame_path.classifier
    meta = classifier.meta
    model = pb.ModelInfo(
        architecture=classifier.spec.name,
        width=classifier.spec.width,
        parameters=classifier.parameters,
        input_size=int(meta.get("input_size", 48)),
        weights_sha256=meta.get("weights_sha256", ""),
        public_test_accuracy=float(meta.get("metrics", {}).get("public_test_accuracy", 0.0)),
        training_command=meta.get("training_command", ""),
    )
    detectors = [pb.DetectorInfo(detector=int(status.kind), available=status.available, detail=status.detail)
                 for status in frame_path.detectors.values()]
    return pb.GetModelInfoResponse(
        classes=[index + EMOTION_OFFSET for index in frame_path.classes],
        detectors=detectors,
        default_detector=int(frame_path.default_detector),
        model=model,
    )
