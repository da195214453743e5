"""The gRPC server's life: load the models, serve, and drain on SIGTERM/SIGINT.

`serve()` is the one place the server's parts are put together: frame path, workers, stream registry,
servicer, security, health, reflection and metrics.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import errno
import signal
import socket
from collections.abc import Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ferstream.v1 import emotion_pb2, emotion_pb2_grpc

from ferstream.pipeline.detectors import load_detectors
from ferstream.model.tiers import TIER_NAMES
from ferstream.pipeline.framepath import FramePath, load_frame_path, set_thread_counts

from .config import ServerConfig, available_cores
from .metrics import ServerMetrics
from .ready import announce_serving
from .security import TokenInterceptor
from .servicer import EmotionServicer
from .streams import StreamDefaults, StreamLimits, StreamRegistry
from .workers import FrameWorkers

log = logging.getLogger("ferstream.server")
SERVICE_NAME = emotion_pb2.DESCRIPTOR.services_by_name["EmotionService"].full_name

# HTTP/2 keepalive: the server pings a quiet connection every minute to find clients that vanished
# without a FIN, and accepts client pings as often as every 10 s (EmotionClient pings every 20 s), even
# between calls, instead of answering them with GOAWAY "too_many_pings".
KEEPALIVE_OPTIONS = [
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 5),
]


def server_options(config: ServerConfig) -> list[tuple[str, int]]:
    """gRPC channel arguments: message limits (see limits.py), port sharing, keepalive."""
    return [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.so_reuseport", int(config.share_port)),
        *KEEPALIVE_OPTIONS,
    ]


def detect_workers(config: ServerConfig) -> int:
    """Detection threads: --detect-workers, else one per core this process may use."""
    return config.detect_workers or available_cores()


def set_serving_threads(config: ServerConfig) -> None:
    """Thread pools of this process, set once before any inference: --threads for the classifier; OpenCV
    single-threaded, because detection runs in parallel across frames on the worker pool and OpenCV's own
    pool inside each worker would oversubscribe the cores."""
    import cv2

    set_thread_counts(config.threads)
    cv2.setNumThreads(1)


async def serve(config: ServerConfig, announce: Callable[[str, int], None] = announce_serving,
                stop: asyncio.Event | None = None) -> None:
    """Runs until SIGTERM or SIGINT (or until `stop` is set, when given), then stops taking work, answers
    what is in flight and returns.

    `announce(host, port)` is called once the server takes calls (--port 0 has become a real port).
    OSError when the port cannot be bound; ValueError/OSError/RuntimeError when the models cannot load.
    """
    if not config.share_port:
        check_port_free(config.host, config.port)
    set_serving_threads(config)
    frame_path = await asyncio.to_thread(load_frame_path, config.models_dir, config.model_path, config.classes,
                                         config.max_pixels, config.max_faces, config.min_face_px, TIER_NAMES,
                                         config.stream_model, config.tta)
    log_models(frame_path)
    metrics = ServerMetrics()
    if config.metrics_port is not None:
        metrics.serve(config.metrics_host, config.metrics_port)
    workers = FrameWorkers(frame_path, functools.partial(load_detectors, config.models_dir), detect_workers(config),
                           config.max_batch, config.max_delay_ms, metrics)
    await asyncio.to_thread(workers.start)
    log.info("%d detection worker(s), %d classifier thread(s)", len(workers.threads), config.threads)
    try:
        defaults = StreamDefaults(frame_path.check_model(config.stream_model or frame_path.default_model),
                                  config.track_smoothing_ms)
        streams = StreamRegistry(config.max_streams, StreamLimits(config.idle_timeout_s, config.max_stream_seconds),
                                 defaults, workers, metrics)
        server, health_servicer = grpc_server(config, EmotionServicer(frame_path, workers, streams,
                                                                    config.annotate_model))
        port = listen(server, config)
        await server.start()
        for service in ("", SERVICE_NAME):
            await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
        log.info("%s; %s", describe_transport(config), f"{len(config.auth_tokens)} bearer token(s) accepted"
                 if config.auth_tokens else "no token required")
        announce(config.host, port)

        await (stop or stop_signal()).wait()
        log.info("stopping: %d frame(s) in flight, %d stream(s) open; draining open calls for up to %.1f s",
                 workers.in_flight, len(streams), config.grace_s)
        await health_servicer.enter_graceful_shutdown()
        streams.drain()
        await server.stop(config.grace_s)
    finally:
        await asyncio.to_thread(workers.stop)
    log.info("stopped")


def log_models(frame_path: FramePath) -> None:
    """One line per detector (available or why not) and one for the emotion model."""
    for status in frame_path.detectors.values():
        log.info("detector %s: %s (%s)", status.kind.name, "available" if status.available else "unavailable",
                 status.detail)
    log.info("emotion model %s; default detector %s", frame_path.classifier.path, frame_path.default_detector.name)
    for tier in frame_path.tiers.values():
        log.info("model %s: %s; %.2f ms per face at batch 1", tier.name, tier.description, tier.cost_ms)


def grpc_server(config: ServerConfig, servicer: EmotionServicer) -> tuple[grpc.aio.Server, health.aio.HealthServicer]:
    """The gRPC server with the emotion service (behind the token check, when tokens are set), health and
    reflection; not yet listening."""
    health_servicer = health.aio.HealthServicer()
    interceptors = [TokenInterceptor(config.auth_tokens, (SERVICE_NAME,))] if config.auth_tokens else []
    server = grpc.aio.server(options=server_options(config), interceptors=interceptors)
    emotion_pb2_grpc.add_EmotionServiceServicer_to_server(servicer, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    return server, health_servicer


def stop_signal() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (the running loop's handlers)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)
    return stop


def check_port_free(host: str, port: int) -> None:
    """OSError (one line) when host:port cannot be bound now: checked before the models load (seconds), so a
    second server on a busy port fails at once. Binds every address host resolves to, as gRPC will, with
    SO_REUSEADDR as gRPC sets it, and lets go; port 0 (any free port) is always free. An address family this
    machine lacks (IPv6 off) is skipped, as gRPC skips it."""
    if port == 0:
        return
    try:
        addresses = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise OSError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    for family, kind, protocol, _, address in addresses:
        try:
            probe = socket.socket(family, kind, protocol)
        except OSError:
            continue
        with probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as error:
                reason = "the port is in use" if error.errno == errno.EADDRINUSE else error.strerror
                raise OSError(f"cannot listen on {host}:{port}: {reason}") from None


def listen(server: grpc.aio.Server, config: ServerConfig) -> int:
    """Adds the listening port (TLS or plaintext) and returns its number; OSError when it cannot bind."""
    address = f"{config.host}:{config.port}"
    try:
        if config.tls is not None:
            port = server.add_secure_port(address, config.tls.server_credentials())
        else:
            port = server.add_insecure_port(address)
    except RuntimeError:  # gRPC's "Failed to bind", which points at its debug logs rather than the cause
        port = 0
    if port == 0:
        raise OSError(f"cannot listen on {address}: the port is in use or the host is not an address of this machine")
    return port


def describe_transport(config: ServerConfig) -> str:
    """Plaintext, TLS or mutual TLS, for the start-up log line."""
    if config.tls is None:
        return "plaintext" + (" (--insecure)" if config.insecure else " (loopback only)")
    return "mutual TLS (client certificates required)" if config.tls.client_ca else "TLS"
