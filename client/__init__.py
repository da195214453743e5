"""ferstream's client: the EmotionClient library, the Tk app and headless mode (fer-client).

The names below are the library's public surface; see ferstream.client.library for the rest.
"""

from ferstream.client.library import (
    EMOTIONS,
    EmotionClient,
    IncompleteStream,
    emotion_name,
    face_record,
    face_to_dict,
    omitted_note,
    probabilities,
    video_frames,
)

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
