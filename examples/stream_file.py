from ferstream.client import EmotionClient, emotion_name, video_frames

with EmotionClient() as client:
    # File mode: every frame is answered, in order, with at most 2 frames at the server at a time.
    for response in client.stream(video_frames("clip.mp4"), mode="file"):
        print(response.frame_id, [emotion_name(face.emotion) for face in response.faces])
