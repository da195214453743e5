"""Bearer tokens and loopback hosts, as fer-server and fer-web read and check them.

The token file format: one token per line, `#` starts a comment, and a line may hold several tokens
separated by commas; $FER_AUTH_TOKENS holds the same text. Tokens are compared in constant time and never
logged. fer-server checks them on its emotion RPCs (ferstream.server.security), fer-web on its annotation
routes (ferstream.web.guard).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from pathlib import Path

TOKENS_ENV = "FER_AUTH_TOKENS"
BEARER = "bearer "


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
    # one fails in the client library ("INTERNAL: Invalid metadata") before it reaches the server.
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
