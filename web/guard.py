"""Who may use the gateway: the Host and Origin checks that keep other web pages out, and callers' tokens.

A browser lets any page it shows send requests to the gateway: a WebSocket opened from another site, a
form posted across sites, or (by DNS rebinding) a name of the attacker's that points at the gateway. So
every request must name the gateway in `Host` (its bound address, a loopback name when it listens on
loopback, or a name given with --allow-host), and every WebSocket and every request that is not a plain
read (POST and the like) must come from the gateway's own page or an --allow-origin origin when it says
where it comes from (`Origin`; `Sec-Fetch-Site` where a browser sends no Origin). Programs that send
neither, as curl does, are no web page and pass. Refusals are 403 before anything is read or forwarded.

With --auth-tokens, the annotation routes (`/v1/annotate`, `/v1/live`, `/v1/config`) also need one of the
tokens, as `authorization: Bearer TOKEN` or, from a browser's WebSocket (which cannot set headers), as
the subprotocol `bearer.` + base64url(TOKEN); without it: 401 and nothing done. The page itself and its
files, /healthz and /openapi.json stay open, so a browser can load the page that asks for the token.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from ferstream.auth.tokens import TokenChecker, is_loopback

# The subprotocol the page asks for and the gateway selects; browsers fail a WebSocket whose server selects
# none of the subprotocols it offered, and the token's own entry must never be echoed.
LIVE_SUBPROTOCOL = "ferstream"
TOKEN_SUBPROTOCOL_PREFIX = "bearer."
# Routes that do work with the server, or tell the page how: they need a caller's token when tokens are set.
GUARDED_PATHS = ("/v1/annotate", "/v1/live", "/v1/config")
# Methods that only read: a foreign page may send them, but the browser will not let it read the answer.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
WILDCARD_HOSTS = ("0.0.0.0", "::", "")


def host_name(host_header: str) -> str:
    """The name or address of a Host header, lower case, without its port or an IPv6 address's brackets."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host[1:]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def token_of_subprotocols(subprotocols: Iterable[str]) -> str | None:
    """The token a browser's WebSocket carries as subprotocol `bearer.<base64url of the token>`, or None."""
    for subprotocol in subprotocols:
        if subprotocol.startswith(TOKEN_SUBPROTOCOL_PREFIX):
            encoded = subprotocol[len(TOKEN_SUBPROTOCOL_PREFIX):]
            try:
                return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode("ascii")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                return ""
    return None


def caller_token(scope: Scope) -> str | None:
    """The caller's bearer token: the Authorization header's, else (WebSocket) its token subprotocol's."""
    authorization = Headers(scope=scope).get("authorization")
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        return token.strip() if scheme.lower() == "bearer" else ""
    if scope["type"] == "websocket":
        return token_of_subprotocols(scope.get("subprotocols", ()))
    return None


@dataclass(frozen=True)
class AccessPolicy:
    """Who may use the gateway.

    bound_host: the address it listens on (--host); hosts: further names it may be called by (--allow-host);
    origins: web origins besides its own whose pages may use it (--allow-origin, "https://app.example");
    tokens: the callers' bearer tokens (--auth-tokens), () for none required.
    """

    bound_host: str = "127.0.0.1"
    hosts: tuple[str, ...] = ()
    origins: tuple[str, ...] = ()
    tokens: tuple[str, ...] = ()

    def host_problem(self, host_header: str | None) -> str | None:
        """Why a request with this Host header is refused, or None. A request without one (HTTP/1.0) passes:
        browsers always send it."""
        if host_header is None:
            return None
        name = host_name(host_header)
        if name in (host_name(host) for host in self.hosts):
            return None
        bound = self.bound_host.strip("[]").lower()
        wildcard = bound in WILDCARD_HOSTS
        address = _ip(name)
        if address is not None:  # an address cannot be rebound; it only must be ours
            if wildcard or address == _ip(bound) or (address.is_loopback and is_loopback(bound)):
                return None
        elif name == "localhost" and (wildcard or is_loopback(bound)):
            return None
        elif name == bound:
            return None
        return (f"Host {host_header!r} is not this gateway's address: call it by {self.bound_host} or a name "
                "given with fer-web --allow-host")

    def origin_problem(self, scope: Scope, headers: Headers) -> str | None:
        """Why a request from the page (or program) it comes from is refused, or None: WebSockets and requests
        that change something must come from the gateway's own origin or an allowed one."""
        if scope["type"] == "http" and scope["method"] in SAFE_METHODS:
            return None
        origin = headers.get("origin")
        if origin is None:
            site = headers.get("sec-fetch-site")
            if site in ("cross-site", "same-site"):
                return f"a request from another site ({site}) is refused"
            return None
        secure = scope.get("scheme") in ("https", "wss")
        own = f"{'https' if secure else 'http'}://{headers.get('host', '')}".lower()
        if origin.lower() == own or origin.lower() in (allowed.lower().rstrip("/") for allowed in self.origins):
            return None
        return f"origin {origin!r} may not use this gateway (fer-web --allow-origin adds one)"

    def token_problem(self, scope: Scope) -> str | None:
        """Why the caller is not authenticated on a guarded route, or None."""
        if not self.tokens or not scope["path"].startswith(GUARDED_PATHS):
            return None
        if scope["type"] == "http" and scope["method"] == "OPTIONS":
            return None  # a CORS preflight carries no credentials by design
        token = caller_token(scope)
        if token is None:
            return "a token is required: send 'authorization: Bearer TOKEN'"
        if not TokenChecker(self.tokens).accepts(f"Bearer {token}"):
            return "the token is not one this gateway accepts"
        return None


class Guard:
    """ASGI middleware applying an AccessPolicy before the app sees a request: 403 for a foreign Host or
    Origin, 401 (with `www-authenticate: Bearer`) for a missing or wrong token; JSON bodies as the
    gateway's other errors, also for refused WebSocket upgrades."""

    def __init__(self, app: ASGIApp, policy: AccessPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        problem = self.policy.host_problem(headers.get("host")) or self.policy.origin_problem(scope, headers)
        status, code = 403, "PERMISSION_DENIED"
        if problem is None and (problem := self.policy.token_problem(scope)) is not None:
            status, code = 401, "UNAUTHENTICATED"
        if problem is None:
            await self.app(scope, receive, send)
            return
        await refuse(scope, receive, send, status, {"error": problem, "code": code})


async def refuse(scope: Scope, receive: Receive, send: Send, status: int, body: dict[str, str]) -> None:
    """Answers status with a JSON body, on HTTP or instead of a WebSocket handshake (where the server
    offers the ASGI http.response extension; else the handshake gets a bare 403)."""
    content = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})
        return
    await receive()  # websocket.connect
    if "websocket.http.response" in scope.get("extensions", {}):
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": content})
    else:
        await send({"type": "websocket.close", "code": 1008})
