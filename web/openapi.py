"""The gateway's OpenAPI 3.1 description, written out: the routes are few, and the record schema follows
ferstream.annotate.records (the JSON-lines format fer-annotate writes)."""

from __future__ import annotations

from ferstream.model.labels import EMOTIONS
from ferstream.commandline import package_version

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


def openapi_document(max_message_bytes: int, tokens_required: bool = False) -> dict:
    """The OpenAPI document served at /openapi.json; max_message_bytes is the gateway's body limit,
    tokens_required says whether callers need a bearer token (fer-web --auth-tokens)."""
    security = [{"bearer": []}] if tokens_required else []
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
                "security": security,
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
                    "multipart/form-data": {"schema": {"type": "object", "properties": {"file": image_body}},
                                            "description": "the first file of the form (media type in any case)"},
                }},
                "responses": {
                    "200": {"description": "the image's frame record (frame 0), faces highest detection score first",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/FrameRecord"}}}},
                    "400": _error_response("INVALID_ARGUMENT (not an image, damaged, too many pixels, a damaged "
                                           "form, a bad option) or FAILED_PRECONDITION (a detector the server lacks)"),
                    "401": _error_response("UNAUTHENTICATED: no token or a wrong one, or the server wants a token "
                                           "the gateway does not send"),
                    "403": _error_response("PERMISSION_DENIED: a request from another web page (Origin) or by a "
                                           "foreign name (Host), or the server refuses the token"),
                    "405": _error_response("UNIMPLEMENTED: a method other than POST"),
                    "408": _error_response("DEADLINE_EXCEEDED: the body stopped coming"),
                    "413": _error_response(f"RESOURCE_EXHAUSTED: the body is over {max_message_bytes} bytes, or "
                                           "over the server's own message limit"),
                    "429": _error_response("RESOURCE_EXHAUSTED: the server is at another of its limits"),
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
                "security": security,
                "description": "Send each frame as one binary message of JPEG bytes; each answer comes back as "
                               "a text message {type: 'frame', record: FrameRecord, counts, timing}. The newest "
                               "frame wins: frames replaced while waiting and frames the server skipped are "
                               "counted in counts.dropped. A failed stream sends {type: 'error', error, code, "
                               "http_status, ends_stream: true} and closes the socket with code 1013. A "
                               "browser sends its token as the subprotocol 'bearer.' + base64url(token) beside "
                               "'ferstream', which the gateway selects.",
                "responses": {"101": {"description": "switching to the WebSocket protocol"}},
            }},
            "/v1/config": {"get": {
                "summary": "What the page draws with: emotions, their colours, the frame size limit",
                "security": security,
                "responses": {"200": {"description": "a JSON object"}},
            }},
        },
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                      "description": "one of fer-web --auth-tokens"}},
                       "schemas": {
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
                                "faces_omitted": {"type": "integer", "minimum": 0,
                                                  "description": "faces found but left out by the face limit "
                                                                 "(max_faces, else the server's --max-faces)"},
                                "model": {"type": "string",
                                          "description": "/v1/annotate: the emotion model that classified the faces"},
                            }},
        }},
    }
