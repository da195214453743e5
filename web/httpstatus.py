"""gRPC status codes as HTTP statuses and the gateway's JSON error body.

The mapping is the one grpc-gateway uses (runtime.HTTPStatusFromCode) and google.rpc.Code documents, so
that a REST caller sees the status any gRPC-to-HTTP gateway would give it.
"""

from __future__ import annotations

import grpc

HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}
# A body the gateway refuses before forwarding: gRPC itself answers RESOURCE_EXHAUSTED for a message over
# the receive limit, HTTP has a status of its own for it.
PAYLOAD_TOO_LARGE = 413
# A request body that stopped arriving.
REQUEST_TIMEOUT = 408
# gRPC's own words for a message over a receive or send limit (RESOURCE_EXHAUSTED): a body too large, not
# a server too busy, so 413 rather than the 429 that tells a client to send it again.
MESSAGE_TOO_LARGE_DETAILS = "message larger than max"
# Codes for the gateway's own HTTP errors (no such route, a wrong method), as grpc-gateway answers them.
HTTP_ERROR_CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
                    403: grpc.StatusCode.PERMISSION_DENIED, 404: grpc.StatusCode.NOT_FOUND,
                    405: grpc.StatusCode.UNIMPLEMENTED, 408: grpc.StatusCode.DEADLINE_EXCEEDED,
                    413: grpc.StatusCode.RESOURCE_EXHAUSTED}


def http_status(code: grpc.StatusCode) -> int:
    """The HTTP status for a gRPC status code (500 for one not in the table)."""
    return HTTP_STATUS.get(code, 500)


def error_body(message: str, code: grpc.StatusCode) -> dict[str, str]:
    """The JSON error object: {"error": one line for people, "code": the gRPC code's name}."""
    return {"error": " ".join(message.split()), "code": code.name}


def rpc_error_body(error: grpc.RpcError) -> tuple[dict[str, str], int]:
    """(error_body, HTTP status) of a failed call; the message is the server's details, else the code."""
    code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = error.details() if isinstance(error, grpc.Call) else None
    status = http_status(code)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and MESSAGE_TOO_LARGE_DETAILS in (details or "").lower():
        status = PAYLOAD_TOO_LARGE
    return error_body(details or code.name.lower().replace("_", " "), code), status


def http_error_body(status: int, detail: str) -> dict[str, str]:
    """The JSON error object for one of HTTP's own errors (404, 405, ...), with the matching gRPC code."""
    return error_body(detail, HTTP_ERROR_CODES.get(status, grpc.StatusCode.UNKNOWN))
