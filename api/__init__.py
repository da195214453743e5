"""ferstream: facial emotion recognition in this process, or as a gRPC service.

    import ferstream
    faces = ferstream.analyze("photo.jpg")      # a path, encoded bytes or a BGR numpy array
    print(faces[0]["emotion"], faces[0]["box"])
    ferstream.analyze(frame, model="fast")      # the fast model, as live streams use

`analyze` runs the server's frame path (decode, detect, crop, classify) and the shipped model here, loaded
on the first call. The parts live in sub-packages: ferstream.client (EmotionClient for a fer-server),
ferstream.pipeline, ferstream.model, ferstream.annotate, ferstream.server, ferstream.web, ferstream.auth,
ferstream.training, ferstream.bench, ferstream.v1 (the generated protobuf code); docs/architecture.md draws
how they import one another. Importing ferstream alone loads none of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .inprocess import Faces, ImageInput

__all__ = ["analyze"]


def analyze(image: ImageInput, detector: str | None = None, min_detection_score: float = 0.0,
            max_faces: int = 0, model: str = "accurate") -> Faces:
    """The faces of one image, highest detection score first, as `ferstream.client.face_to_dict` gives them,
    in a list whose faces_omitted counts the faces that max_faces (0: 32, as fer-server) left out.

    See ferstream.inprocess.analyze (imported here on the first call, so that `import ferstream` stays light).
    """
    from .inprocess import analyze as run

    return run(image, detector, min_detection_score, max_faces, model)
