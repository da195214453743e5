"""The gateway's OpenAPI 3.1 description, written out: the routes are few, and the record schema follows
ferstream.annotate.records (the JSON-lines format fer-annotate writes)."""

from __future__ import annotations

from ferstream.model.labels import EMOTIONS
from ferstream.pipeline.commandline import package_version

_PROBABILITIES = {
    "type": "object",
    "description": "class name -> probability, in the model's class order, summing to 1 (4 decimals)",
    "properties": {name: {"type": "number", "minimum": 0, "maximum": 1} for name in EMOTIONS},
}
_ERROR = {
    "type": "object",
    "required": ["error", "code"],
    "properties": {
        "error": {"type": "string", "description": "one line saying what went wrong"},
        "code": {"type": "string", "description": "the gRPC status code's name, e.g. INVALID_ARGUMENT"},
    },
}


def _error_response(description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def openapi_document(max_message_bytes: int) -> dict:
    """The OpenAPI document served at /openapi.json; max_message_bytes is the gateway's body limit."""
    image_body = {"type": "string", "contentMediaType": "image/*",
                  "description": f"a JPEG, PNG, BMP or WebP image of at most {max_message_bytes} bytes"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "ferstream web gateway", "version": package_version(),
                 "description": "Facial emotion recognition over HTTP: one image in, its faces out. The "
                                "gateway forwards to a fer-server over gRPC; errors carry the gRPC code."},
        "paths": {
            "/v1/annotate": {"post": {
                "summary": "Faces, boxes and emotion probabilities of one image",
                "parameters": [
                    {"name": "detector", "in": "query", "schema": {"enum": ["haar", "ssd", "yunet"]},
                     "description": "face detector (default: the server's)"},
                    {"name": "min_detection_score", "in": "query",
                     "schema": {"type": "number", "minimum": 0, "maximum": 1},
                     "description": "drop faces scored below this (default 0: the detector's own threshold)"},
                    {"name": "max_faces", "in": "query", "schema": {"type": "integer", "minimum": 0},
                     "description": "most faces answered (default 0: the server's limit)"},
                    {"name": "model", "in": "query", "schema": {"enum": ["fast", "accurate"]},
                     "description": "emotion model (default: the server's for photos, accurate); the answer's "
                                    "`model` names the one used"},
                ],
                "requestBody": {"required": True, "content": {
                    "image/*": {"schema": image_body},
                    "application/octet-stream": {"schema": image_body},
                    "multipart/form-data": {"schema": {"type": "object", "properties": {"file": image_body}}},
                }},
                "responses": {
                    "200": {"description": "the image's frame record (frame 0), faces highest detection score first",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/FrameRecord"}}}},
                    "400": _error_response("INVALID_ARGUMENT (not an image, damaged, too many pixels, a bad option) "
                                           "or FAILED_PRECONDITION (a detector the server lacks)"),
                    "401": _error_response("UNAUTHENTICATED: the server wants a token the gateway lacks"),
                    "403": _error_response("PERMISSION_DENIED"),
                    "413": _error_response(f"RESOURCE_EXHAUSTED: the body is over {max_message_bytes} bytes"),
                    "503": _error_response("UNAVAILABLE: the server cannot be reached"),
                    "504": _error_response("DEADLINE_EXCEEDED: the server did not answer in time"),
                },
            }},
            "/healthz": {"get": {
                "summary": "Whether the gateway runs and its server is serving",
                "responses": {"200": {"description": "the server reports SERVING"},
                              "503": {"description": "the server is unreachable or not serving"}},
            }},
            "/v1/live": {"get": {
                "summary": "WebSocket: one live-mode StreamAnnotate",
                "description": "Send each frame as one binary message of JPEG bytes; each answer comes back as "
                               "a text message {type: 'frame', record: FrameRecord, counts, timing}. The newest "
                               "frame wins: frames replaced while waiting and frames the server skipped are "
                               "counted in counts.dropped. A failed stream sends {type: 'error', error, code, "
                               "http_status, ends_stream: true} and closes the socket with code 1013.",
                "responses": {"101": {"description": "switching to the WebSocket protocol"}},
            }},
            "/v1/config": {"get": {
                "summary": "What the page draws with: emotions, their colours, the frame size limit",
                "responses": {"200": {"description": "a JSON object"}},
            }},
        },
        "components": {"schemas": {
            "Error": _ERROR,
            "Box": {"type": "object", "description": "in pixels of the image",
                    "properties": {key: {"type": "integer"} for key in ("x", "y", "width", "height")}},
            "Face": {"type": "object", "required": ["box", "detection_score", "emotion", "probabilities"],
                     "properties": {
                         "box": {"$ref": "#/components/schemas/Box"},
                         "detection_score": {"type": "number", "minimum": 0, "maximum": 1},
                         "emotion": {"enum": list(EMOTIONS)},
                         "probabilities": _PROBABILITIES,
                         "track_id": {"type": "integer", "minimum": 1, "description": "stream faces only"},
                         "track_probabilities": {**_PROBABILITIES, "description": "smoothed over the track"},
                     }},
            "FrameRecord": {"type": "object", "required": ["frame", "width", "height", "faces"],
                            "properties": {
                                "frame": {"type": "integer", "minimum": 0},
                                "width": {"type": "integer"}, "height": {"type": "integer"},
                                "faces": {"type": "array", "items": {"$ref": "#/components/schemas/Face"}},
                                "error": {"type": "string"},
                                "model": {"type": "string",
                                          "description": "/v1/annotate: the emotion model that classified the faces"},
                            }},
        }},
    }
