"""ferstream's client: the EmotionClient library, the Tk app and headless mode (fer-client)."""

from ferstream.client.library import EMOTIONS, EmotionClient, emotion_name, face_to_dict, probabilities

__all__ = ["EMOTIONS", "EmotionClient", "emotion_name", "face_to_dict", "probabilities"]
