from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PixelFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PIXEL_FORMAT_UNSPECIFIED: _ClassVar[PixelFormat]
    PIXEL_FORMAT_GRAY8: _ClassVar[PixelFormat]
    PIXEL_FORMAT_BGR8: _ClassVar[PixelFormat]
    PIXEL_FORMAT_RGB8: _ClassVar[PixelFormat]

class Detector(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DETECTOR_UNSPECIFIED: _ClassVar[Detector]
    DETECTOR_HAAR: _ClassVar[Detector]
    DETECTOR_SSD: _ClassVar[Detector]
    DETECTOR_YUNET: _ClassVar[Detector]

class Emotion(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EMOTION_UNSPECIFIED: _ClassVar[Emotion]
    EMOTION_ANGRY: _ClassVar[Emotion]
    EMOTION_DISGUST: _ClassVar[Emotion]
    EMOTION_FEAR: _ClassVar[Emotion]
    EMOTION_HAPPY: _ClassVar[Emotion]
    EMOTION_SAD: _ClassVar[Emotion]
    EMOTION_SURPRISE: _ClassVar[Emotion]
    EMOTION_NEUTRAL: _ClassVar[Emotion]
PIXEL_FORMAT_UNSPECIFIED: PixelFormat
PIXEL_FORMAT_GRAY8: PixelFormat
PIXEL_FORMAT_BGR8: PixelFormat
PIXEL_FORMAT_RGB8: PixelFormat
DETECTOR_UNSPECIFIED: Detector
DETECTOR_HAAR: Detector
DETECTOR_SSD: Detector
DETECTOR_YUNET: Detector
EMOTION_UNSPECIFIED: Emotion
EMOTION_ANGRY: Emotion
EMOTION_DISGUST: Emotion
EMOTION_FEAR: Emotion
EMOTION_HAPPY: Emotion
EMOTION_SAD: Emotion
EMOTION_SURPRISE: Emotion
EMOTION_NEUTRAL: Emotion

class Image(_message.Message):
    __slots__ = ("encoded", "raw")
    ENCODED_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    encoded: bytes
    raw: RawImage
    def __init__(self, encoded: _Optional[bytes] = ..., raw: _Optional[_Union[RawImage, _Mapping]] = ...) -> None: ...

class RawImage(_message.Message):
    __slots__ = ("width", "height", "format", "data")
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    width: int
    height: int
    format: PixelFormat
    data: bytes
    def __init__(self, width: _Optional[int] = ..., height: _Optional[int] = ..., format: _Optional[_Union[PixelFormat, str]] = ..., data: _Optional[bytes] = ...) -> None: ...

class AnnotateOptions(_message.Message):
    __slots__ = ("detector", "min_detection_score", "max_faces", "min_face_px", "model", "track_smoothing_ms")
    DETECTOR_FIELD_NUMBER: _ClassVar[int]
    MIN_DETECTION_SCORE_FIELD_NUMBER: _ClassVar[int]
    MAX_FACES_FIELD_NUMBER: _ClassVar[int]
    MIN_FACE_PX_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TRACK_SMOOTHING_MS_FIELD_NUMBER: _ClassVar[int]
    detector: Detector
    min_detection_score: float
    max_faces: int
    min_face_px: int
    model: str
    track_smoothing_ms: float
    def __init__(self, detector: _Optional[_Union[Detector, str]] = ..., min_detection_score: _Optional[float] = ..., max_faces: _Optional[int] = ..., min_face_px: _Optional[int] = ..., model: _Optional[str] = ..., track_smoothing_ms: _Optional[float] = ...) -> None: ...

class StreamAnnotateRequest(_message.Message):
    __slots__ = ("frame_id", "image", "options", "capture_time_ms")
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    frame_id: int
    image: Image
    options: AnnotateOptions
    capture_time_ms: float
    def __init__(self, frame_id: _Optional[int] = ..., image: _Optional[_Union[Image, _Mapping]] = ..., options: _Optional[_Union[AnnotateOptions, _Mapping]] = ..., capture_time_ms: _Optional[float] = ...) -> None: ...

class StreamAnnotateResponse(_message.Message):
    __slots__ = ("frame_id", "faces", "timing", "error", "skipped_frame_ids", "faces_omitted", "model")
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    FACES_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FRAME_IDS_FIELD_NUMBER: _ClassVar[int]
    FACES_OMITTED_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    frame_id: int
    faces: _containers.RepeatedCompositeFieldContainer[Face]
    timing: Timing
    error: Error
    skipped_frame_ids: _containers.RepeatedScalarFieldContainer[int]
    faces_omitted: int
    model: str
    def __init__(self, frame_id: _Optional[int] = ..., faces: _Optional[_Iterable[_Union[Face, _Mapping]]] = ..., timing: _Optional[_Union[Timing, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., skipped_frame_ids: _Optional[_Iterable[int]] = ..., faces_omitted: _Optional[int] = ..., model: _Optional[str] = ...) -> None: ...

class AnnotateRequest(_message.Message):
    __slots__ = ("image", "options")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    image: Image
    options: AnnotateOptions
    def __init__(self, image: _Optional[_Union[Image, _Mapping]] = ..., options: _Optional[_Union[AnnotateOptions, _Mapping]] = ...) -> None: ...

class AnnotateResponse(_message.Message):
    __slots__ = ("faces", "timing", "faces_omitted", "model")
    FACES_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    FACES_OMITTED_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    faces: _containers.RepeatedCompositeFieldContainer[Face]
    timing: Timing
    faces_omitted: int
    model: str
    def __init__(self, faces: _Optional[_Iterable[_Union[Face, _Mapping]]] = ..., timing: _Optional[_Union[Timing, _Mapping]] = ..., faces_omitted: _Optional[int] = ..., model: _Optional[str] = ...) -> None: ...

class Face(_message.Message):
    __slots__ = ("box", "detection_score", "emotion", "scores", "landmarks", "track_id", "track_scores")
    BOX_FIELD_NUMBER: _ClassVar[int]
    DETECTION_SCORE_FIELD_NUMBER: _ClassVar[int]
    EMOTION_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    LANDMARKS_FIELD_NUMBER: _ClassVar[int]
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    TRACK_SCORES_FIELD_NUMBER: _ClassVar[int]
    box: Box
    detection_score: float
    emotion: Emotion
    scores: _containers.RepeatedCompositeFieldContainer[EmotionScore]
    landmarks: _containers.RepeatedCompositeFieldContainer[Point]
    track_id: int
    track_scores: _containers.RepeatedCompositeFieldContainer[EmotionScore]
    def __init__(self, box: _Optional[_Union[Box, _Mapping]] = ..., detection_score: _Optional[float] = ..., emotion: _Optional[_Union[Emotion, str]] = ..., scores: _Optional[_Iterable[_Union[EmotionScore, _Mapping]]] = ..., landmarks: _Optional[_Iterable[_Union[Point, _Mapping]]] = ..., track_id: _Optional[int] = ..., track_scores: _Optional[_Iterable[_Union[EmotionScore, _Mapping]]] = ...) -> None: ...

class Point(_message.Message):
    __slots__ = ("x", "y")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    x: float
    y: float
    def __init__(self, x: _Optional[float] = ..., y: _Optional[float] = ...) -> None: ...

class Box(_message.Message):
    __slots__ = ("x", "y", "width", "height")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    x: int
    y: int
    width: int
    height: int
    def __init__(self, x: _Optional[int] = ..., y: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class EmotionScore(_message.Message):
    __slots__ = ("emotion", "probability")
    EMOTION_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    emotion: Emotion
    probability: float
    def __init__(self, emotion: _Optional[_Union[Emotion, str]] = ..., probability: _Optional[float] = ...) -> None: ...

class Timing(_message.Message):
    __slots__ = ("decode_ms", "detect_ms", "classify_ms", "total_ms", "queue_ms", "batch_faces")
    DECODE_MS_FIELD_NUMBER: _ClassVar[int]
    DETECT_MS_FIELD_NUMBER: _ClassVar[int]
    CLASSIFY_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    BATCH_FACES_FIELD_NUMBER: _ClassVar[int]
    decode_ms: float
    detect_ms: float
    classify_ms: float
    total_ms: float
    queue_ms: float
    batch_faces: int
    def __init__(self, decode_ms: _Optional[float] = ..., detect_ms: _Optional[float] = ..., classify_ms: _Optional[float] = ..., total_ms: _Optional[float] = ..., queue_ms: _Optional[float] = ..., batch_faces: _Optional[int] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetModelInfoResponse(_message.Message):
    __slots__ = ("classes", "detectors", "default_detector", "model", "models", "default_annotate_model", "default_stream_model")
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    DETECTORS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_DETECTOR_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_ANNOTATE_MODEL_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_STREAM_MODEL_FIELD_NUMBER: _ClassVar[int]
    classes: _containers.RepeatedScalarFieldContainer[Emotion]
    detectors: _containers.RepeatedCompositeFieldContainer[DetectorInfo]
    default_detector: Detector
    model: ModelInfo
    models: _containers.RepeatedCompositeFieldContainer[ServedModel]
    default_annotate_model: str
    default_stream_model: str
    def __init__(self, classes: _Optional[_Iterable[_Union[Emotion, str]]] = ..., detectors: _Optional[_Iterable[_Union[DetectorInfo, _Mapping]]] = ..., default_detector: _Optional[_Union[Detector, str]] = ..., model: _Optional[_Union[ModelInfo, _Mapping]] = ..., models: _Optional[_Iterable[_Union[ServedModel, _Mapping]]] = ..., default_annotate_model: _Optional[str] = ..., default_stream_model: _Optional[str] = ...) -> None: ...

class ServedModel(_message.Message):
    __slots__ = ("name", "description", "inputs", "classes", "cost_ms", "provenance", "weights_sha256")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    COST_MS_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_SHA256_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    inputs: _containers.RepeatedScalarFieldContainer[str]
    classes: _containers.RepeatedScalarFieldContainer[Emotion]
    cost_ms: float
    provenance: str
    weights_sha256: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., inputs: _Optional[_Iterable[str]] = ..., classes: _Optional[_Iterable[_Union[Emotion, str]]] = ..., cost_ms: _Optional[float] = ..., provenance: _Optional[str] = ..., weights_sha256: _Optional[str] = ...) -> None: ...

class DetectorInfo(_message.Message):
    __slots__ = ("detector", "available", "detail")
    DETECTOR_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    detector: Detector
    available: bool
    detail: str
    def __init__(self, detector: _Optional[_Union[Detector, str]] = ..., available: _Optional[bool] = ..., detail: _Optional[str] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("architecture", "width", "parameters", "input_size", "weights_sha256", "public_test_accuracy", "training_command")
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    INPUT_SIZE_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_SHA256_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_TEST_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    TRAINING_COMMAND_FIELD_NUMBER: _ClassVar[int]
    architecture: str
    width: float
    parameters: int
    input_size: int
    weights_sha256: str
    public_test_accuracy: float
    training_command: str
    def __init__(self, architecture: _Optional[str] = ..., width: _Optional[float] = ..., parameters: _Optional[int] = ..., input_size: _Optional[int] = ..., weights_sha256: _Optional[str] = ..., public_test_accuracy: _Optional[float] = ..., training_command: _Optional[str] = ...) -> None: ...
