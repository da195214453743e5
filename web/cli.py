"""fer-web: the browser page and REST endpoint of ferstream, served by a gateway to a fer-server.

Exit codes: 0 stopped (SIGTERM), 1 cannot listen, 2 bad arguments or unreadable TLS or token files,
130 interrupted (Ctrl-C; quietly, as an interrupt needs no explanation). Every error is one line on stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path

from ferstream.commandline import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    CommandParser,
    add_version_argument,
    port_number,
    positive_int,
    print_error,
    seconds,
)

PROG = "fer-web"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
# Seconds each REST call may take at the server; the library's default for unary calls.
DEFAULT_TIMEOUT_S = 30.0


def build_parser() -> argparse.ArgumentParser:
    """fer-web's arguments; every option carries its help text."""
    from ferstream.client.cli import server_target
    from ferstream.client.library import default_target
    from ferstream.pipeline.settings import DEFAULT_MAX_MESSAGE_BYTES

    from .app import BODY_IDLE_TIMEOUT_S

    parser = CommandParser(
        prog=PROG,
        description="Serve ferstream to browsers: a page that annotates the webcam, a dropped video or photo "
        "live, and POST /v1/annotate for one image, both forwarded to a fer-server over gRPC.",
        epilog="Exit codes: 0 stopped, 1 cannot listen, 2 bad arguments or unreadable TLS or token files, "
        "130 interrupted.",
    )
    add_version_argument(parser)
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help="address to listen on; any other than loopback needs --tls-cert/--tls-key and "
                        "--auth-tokens (or --forward-caller-token), or --insecure (default: %(default)s)")
    parser.add_argument("--port", type=port_number, default=DEFAULT_PORT,
                        help="port to listen on; 0 picks a free one (default: %(default)s)")
    parser.add_argument("--server", type=server_target, default=default_target(), metavar="TARGET",
                        help="the fer-server to use: HOST:PORT, or several as ipv4:HOST:PORT,HOST:PORT or "
                        "dns:///NAME:PORT (default: $FER_SERVER or %(default)s)")
    parser.add_argument("--max-message-bytes", type=positive_int, default=DEFAULT_MAX_MESSAGE_BYTES, metavar="BYTES",
                        help="largest image or frame forwarded; larger ones get 413 (default: fer-server's "
                        "default --max-message-bytes, %(default)s)")
    parser.add_argument("--body-timeout", type=seconds, default=BODY_IDLE_TIMEOUT_S, metavar="SECONDS",
                        help="longest a request body may send nothing; then 408 (default: %(default)s)")
    parser.add_argument("--timeout", type=seconds, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                        help="longest wait for the server's answer to a POST /v1/annotate; then 504 "
                        "(default: %(default)s)")
    gateway = parser.add_argument_group("the gateway's own HTTPS")
    gateway.add_argument("--tls-cert", type=Path, metavar="PEM", help="serve HTTPS with this certificate chain")
    gateway.add_argument("--tls-key", type=Path, metavar="PEM", help="private key of --tls-cert")
    gateway.add_argument("--insecure", action="store_true",
                         help="allow plain HTTP, or callers without a token, on a non-loopback --host (anyone on "
                         "the network can watch the camera's frames and use the server)")
    access = parser.add_argument_group("who may use the gateway")
    access.add_argument("--auth-tokens", type=Path, metavar="FILE",
                        help="callers must send one of these bearer tokens (one per line, '#' comments: "
                        "fer-server's --auth-tokens format); the page asks for one once per tab")
    access.add_argument("--forward-caller-token", action="store_true",
                        help="send each caller's own token to the server instead of --token, so the server "
                        "decides who may use it")
    access.add_argument("--allow-origin", action="append", default=[], type=_origin, metavar="ORIGIN",
                        help="a web origin (https://app.example) whose pages may use the gateway besides its "
                        "own page; repeatable (default: none)")
    access.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                        help="a host name the gateway may be called by besides --host (a DNS name, or the name "
                        "a reverse proxy passes on); other names are refused, against DNS rebinding; "
                        "repeatable (default: none)")
    security = parser.add_argument_group("connecting to fer-server (as fer-client does)")
    security.add_argument("--tls-ca", type=Path, metavar="PEM", help="connect with TLS, trusting these roots")
    security.add_argument("--client-cert", type=Path, metavar="PEM",
                          help="mutual TLS: present this client certificate chain (with --client-key)")
    security.add_argument("--client-key", type=Path, metavar="PEM", help="private key of --client-cert")
    security.add_argument("--server-name", metavar="NAME",
                          help="the name the server's TLS certificate must carry, when it is not --server's host "
                          "(e.g. connecting by IP address or through a proxy) (default: --server's host)")
    security.add_argument("--token", default=os.environ.get("FER_TOKEN"),
                          help="bearer token sent to the server on every call (default: $FER_TOKEN)")
    return parser


def _origin(text: str) -> str:
    """argparse type for --allow-origin: scheme://host[:port], as browsers send it in Origin."""
    origin = text.strip().rstrip("/")
    scheme, separator, rest = origin.partition("://")
    if scheme.lower() not in ("http", "https") or not separator or not rest or "/" in rest:
        raise argparse.ArgumentTypeError(f"{text!r} is not an origin such as https://app.example or "
                                         "http://127.0.0.1:3000 (scheme, host and port only)")
    return origin


def main(argv: Sequence[str] | None = None) -> int:
    """Runs fer-web until stopped; returns its exit code (see the module docstring)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from ferstream.client.library import token_problem
    from ferstream.auth.tokens import is_loopback, load_tokens

    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    if (args.client_cert is None) != (args.client_key is None):
        parser.error("--client-cert and --client-key go together")
    if args.server_name is not None and args.tls_ca is None and args.client_cert is None:
        parser.error("--server-name is for TLS connections (with --tls-ca)")
    if not args.insecure and not is_loopback(args.host):
        if args.tls_cert is None:
            parser.error(f"refusing plain HTTP on non-loopback host {args.host}: give --tls-cert and --tls-key, "
                         "or --insecure to accept that anyone on the network can watch the frames and use the server")
        if args.auth_tokens is None and not args.forward_caller_token:
            parser.error(f"refusing callers without a token on non-loopback host {args.host}: give --auth-tokens "
                         "(or --forward-caller-token), or --insecure to accept that anyone on the network can use "
                         "the server")
    if (problem := token_problem(args.token)) is not None:
        return _fail(f"--token or $FER_TOKEN: {problem}", EXIT_USAGE)
    try:
        caller_tokens = load_tokens(args.auth_tokens) if args.auth_tokens is not None else ()
    except ValueError as error:
        return _fail(str(error), EXIT_USAGE)
    try:
        tls = tuple(path.read_bytes() if path else None for path in (args.tls_ca, args.client_key, args.client_cert))
        if args.tls_cert is not None:
            for path in (args.tls_cert, args.tls_key):
                path.read_bytes()  # ssl's own error names no file
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(args.tls_cert, args.tls_key)
    except OSError as error:
        return _fail(f"{error.filename}: {error.strerror}", EXIT_USAGE)
    except ssl.SSLError as error:
        return _fail(f"--tls-cert/--tls-key: not a usable certificate and key ({error.reason})", EXIT_USAGE)
    try:
        listener = socket.create_server((args.host.strip("[]"), args.port),
                                        family=socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    except OSError as error:
        return _fail(f"cannot listen on {args.host}:{args.port} ({error.strerror or error})", EXIT_FAILED)
    # uvicorn shuts down on SIGINT and SIGTERM, then raises the signal again for the handler it found: these
    # make the exit code 130 for an interrupt and 0 for a stop, even where the shell started us ignoring SIGINT.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _stop)
    try:
        return _serve(args, listener, tls, caller_tokens)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED  # Ctrl-C: the user knows why it stopped
    except _Stopped:
        return 0
    finally:
        listener.close()


class _Stopped(Exception):
    """SIGTERM came: the gateway has shut down."""


def _stop(signum: int, frame: object) -> None:
    raise _Stopped


def _serve(args: argparse.Namespace, listener: socket.socket, tls: tuple[bytes | None, ...],
           caller_tokens: tuple[str, ...]) -> int:
    import uvicorn

    from ferstream.client.library import EmotionClient

    from .app import GatewaySettings, build_app
    from .guard import AccessPolicy
    from .serving import AnnouncingServer, HeaderTimeoutH11Protocol

    root_certificates, private_key, certificate_chain = tls
    settings = GatewaySettings(max_message_bytes=args.max_message_bytes,
                               forward_caller_token=args.forward_caller_token, body_timeout_s=args.body_timeout)
    policy = AccessPolicy(bound_host=args.host, hosts=tuple(args.allow_host), origins=tuple(args.allow_origin),
                          tokens=caller_tokens)
    with EmotionClient(args.server, root_certificates=root_certificates, private_key=private_key,
                       certificate_chain=certificate_chain, token=args.token, timeout=args.timeout,
                       server_name=args.server_name) as client:
        config = uvicorn.Config(
            build_app(client, settings, policy), log_level="warning", ws="websockets-sansio",
            http=HeaderTimeoutH11Protocol, ws_max_size=settings.websocket_max_bytes,
            ssl_certfile=args.tls_cert, ssl_keyfile=args.tls_key)
        _log_to_stderr()
        host, port = listener.getsockname()[:2]
        scheme = "https" if args.tls_cert else "http"
        shown = f"[{host}]" if ":" in host else host
        AnnouncingServer(config, f"{PROG}: serving {scheme}://{shown}:{port}/ (fer-server at {args.server})").run(
            sockets=[listener])
    return 0


def _log_to_stderr() -> None:
    """The gateway's own log lines (a cancelled upload, a connection closed for slow headers) and asyncio's
    (connections that cannot be accepted: at most one line per interval, AcceptErrorLog) on stderr, as its
    start-up line."""
    from .serving import AcceptErrorLog

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(message)s"))
    logger = logging.getLogger("ferstream.web")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    event_loop_logger = logging.getLogger("asyncio")
    event_loop_logger.addHandler(handler)
    event_loop_logger.addFilter(AcceptErrorLog())
    event_loop_logger.propagate = False


def _fail(message: str, code: int) -> int:
    print_error(PROG, message)
    return code


if __name__ == "__main__":
    sys.exit(main())
