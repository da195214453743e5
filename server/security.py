"""Who may talk to the server: TLS (optionally mutual) on the port, bearer tokens on the emotion RPCs.

Health and reflection stay open so load balancers and probes need no secret. The token file format and the
constant-time check are ferstream.auth.tokens' (fer-web checks its callers with the same); a refused call
is logged with its peer and method only.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from ferstream.auth.tokens import TokenChecker

log = logging.getLogger("ferstream.server")


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of the server's TLS identity and, for mutual TLS, the CA its clients' certificates come from."""

    cert: Path
    key: Path
    # With a client CA, every client must present a certificate it signed (mutual TLS).
    client_ca: Path | None = None

    def server_credentials(self) -> grpc.ServerCredentials:
        """Reads the PEM files; OSError when one cannot be read."""
        client_ca = self.client_ca.read_bytes() if self.client_ca else None
        return grpc.ssl_server_credentials([(self.key.read_bytes(), self.cert.read_bytes())],
                                           root_certificates=client_ca, require_client_auth=client_ca is not None)


def authorization_header(metadata) -> str | None:
    """The call's 'authorization' metadata value, or None."""
    for key, value in metadata or ():
        if key == "authorization":
            return value if isinstance(value, str) else value.decode(errors="replace")
    return None


class TokenInterceptor(grpc.aio.ServerInterceptor):
    """UNAUTHENTICATED for calls to the protected services that lack a valid `authorization: Bearer` token."""

    def __init__(self, tokens: tuple[str, ...], protected_services: tuple[str, ...]) -> None:
        self.checker = TokenChecker(tokens)
        self.prefixes = tuple(f"/{service}/" for service in protected_services)

    async def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable],
                                details: grpc.HandlerCallDetails):
        """Lets guarded methods through only with an accepted token; others always."""
        handler = await continuation(details)
        if handler is None or not details.method.startswith(self.prefixes):
            return handler
        if self.checker.accepts(authorization_header(details.invocation_metadata)):
            return handler
        return refusing_handler(handler, details.method)


UNAUTHENTICATED_MESSAGE = "a valid 'authorization: Bearer <token>' header is required"


def refusing_handler(handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
    """A handler of the same shape as handler that answers UNAUTHENTICATED without reading the request."""

    async def refuse(request, context: grpc.aio.ServicerContext) -> None:
        log.warning("%s from %s refused: missing or unknown token", method, context.peer())
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)

    async def refuse_streaming(request, context: grpc.aio.ServicerContext):
        await refuse(request, context)
        yield  # never reached; makes this an async generator, as response-streaming handlers are

    serializers = {"request_deserializer": handler.request_deserializer,
                   "response_serializer": handler.response_serializer}
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse_streaming, **serializers)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse, **serializers)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse_streaming, **serializers)
    return grpc.unary_unary_rpc_method_handler(refuse, **serializers)
