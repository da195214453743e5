"""ferstream's client: the EmotionClient library, the Tk app and headless mode (fer-client).

The names below are the library's public surface. By job: library (EmotionClient: the connection and the
unary calls), streaming (streams and frame sources), messages (images, options and faces as Python values),
window (flow control).
"""

from ferstream.client.library import EmotionClient
from ferstream.client.messages import (
    EMOTIONS,
    emotion_name,
    face_record,
    face_to_dict,
    omitted_note,
    probabilities,
)
from ferstream.client.streaming import IncompleteStream, video_frames

__all__ = [
    "EMOTIONS",
    "EmotionClient",
    "IncompleteStream",
    "emotion_name",
    "face_record",
    "face_to_dict",
    "omitted_note",
    "probabilities",
    "video_frames",
]
