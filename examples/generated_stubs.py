import os

import grpc
from ferstream.v1 import emotion_pb2 as pb, emotion_pb2_grpc as pb_grpc

channel = grpc.insecure_channel(os.environ.get("FER_SERVER", "127.0.0.1:50051"))
stub = pb_grpc.EmotionServiceStub(channel)
with open("photo.jpg", "rb") as photo:
    reply = stub.Annotate(pb.AnnotateRequest(image=pb.Image(encoded=photo.read())))
for face in reply.faces:
    box = face.box
    print(box.x, box.y, box.width, box.height, pb.Emotion.Name(face.emotion), round(face.detection_score, 3))
