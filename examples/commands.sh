fer-annotate photo.jpg     # offline, no server: photo.annotated.jpg and photo.annotated.jsonl
fer-client --headless --source clip.mp4 --out clip.annotated.mp4 --jsonl clip.jsonl   # every frame, through the server
