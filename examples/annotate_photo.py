from ferstream.client import EmotionClient, face_to_dict

with EmotionClient() as client:  # the server at $FER_SERVER, else 127.0.0.1:50051
    reply = client.annotate("photo.jpg")  # a file path, encoded bytes or a BGR numpy array
    for face in reply.faces:  # highest detection score first
        print(face_to_dict(face))  # box, detection score, top emotion, probability of each emotion
