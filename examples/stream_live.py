import sys

from ferstream.client import EmotionClient, emotion_name, video_frames

source = sys.argv[1] if len(sys.argv) > 1 else 0  # a video file, else camera 0
with EmotionClient() as client:
    # Live mode: the newest frame wins; frames there was no time for are listed as skipped.
    for response in client.stream(video_frames(source), mode="live"):
        emotions = [emotion_name(face.emotion) for face in response.faces]
        print(response.frame_id, emotions, "skipped:", list(response.skipped_frame_ids))
