"""Who may talk to the server: TLS (optionally mutual) on the port, bearer tokens on the emotion RPCs.

Health and reflection stay open so load balancers and probes need no secret. Tokens are compared in
constant time and never logged; a refused call is logged with its peer and method only.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

log = logging.getLogger("ferstream.server")

TOKENS_ENV = "FER_AUTH_TOKENS"
BEARER = "bearer "


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


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses; 0.0.0.0 and '::' (every interface) are not."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_tokens(text: str) -> tuple[str, ...]:
    """Tokens from a file (one per line, '#' comments) or the environment (also comma-separated)."""
    tokens = []
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        tokens.extend(item.strip() for item in line.split(",") if item.strip())
    return tuple(tokens)


def load_tokens(path: Path | None) -> tuple[str, ...]:
    """Tokens from path, else from $FER_AUTH_TOKENS; () means no authentication.

    ValueError for a file or variable that holds no token, so a typo never turns authentication off, and
    for tokens that are not printable ASCII without spaces (what gRPC metadata carries).
    """
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise ValueError(f"--auth-tokens: cannot read {path}: {error.strerror}") from None
        except UnicodeDecodeError:
            raise ValueError(f"--auth-tokens: {path} is not text (tokens must be printable ASCII)") from None
        source = str(path)
    elif TOKENS_ENV in os.environ:
        text, source = os.environ[TOKENS_ENV], f"${TOKENS_ENV}"
    else:
        return ()
    tokens = parse_tokens(text)
    if not tokens:
        raise ValueError(f"{source} holds no token")
    if any(any(character.isspace() or not character.isprintable() for character in token) for token in tokens):
        raise ValueError(f"{source}: tokens cannot contain spaces or control characters")
    # gRPC metadata carries printable ASCII only: no client could send any other token, and every call with
    # one fails in the client library ("INTERNAL: Invalid metadata") before it reaches this server.
    if not all(token.isascii() for token in tokens):
        raise ValueError(f"{source}: tokens must be printable ASCII (gRPC metadata cannot carry other characters)")
    return tokens


class TokenChecker:
    """Constant-time membership of a presented token in the configured set."""

    def __init__(self, tokens: tuple[str, ...]) -> None:
        self._tokens = tuple(token.encode() for token in tokens)

    def accepts(self, authorization: str | None) -> bool:
        """True when authorization is 'Bearer <one of the tokens>' (scheme case-insensitive, token exact)."""
        if authorization is None or authorization[:len(BEARER)].lower() != BEARER:
            return False
        presented = authorization[len(BEARER):].strip().encode()
        accepted = False
        for token in self._tokens:  # no early exit: the time taken says nothing about which token matched
            accepted |= hmac.compare_digest(presented, token)
        return accepted


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
