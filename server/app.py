"""The gRPC server's life: load the models, serve, and drain on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ferstream.v1 import emotion_pb2, emotion_pb2_grpc

from .batcher import Batcher
from .config import ServerConfig
from .framepath import load_frame_path, set_thread_counts
from .servicer import EmotionServicer

log = logging.getLogger("ferstream.server")
SERVICE_NAME = emotion_pb2.DESCRIPTOR.services_by_name["EmotionService"].full_name


async def serve(config: ServerConfig) -> None:
    """Runs until SIGTERM or SIGINT, then stops taking work, finishes what is in flight and returns."""
    set_thread_counts(config.threads)
    frame_path = await asyncio.to_thread(load_frame_path, config.models_dir, config.model_path, config.classes,
                                         config.max_pixels, config.max_faces)
    for status in frame_path.detectors.values():
        log.info("detector %s: %s (%s)", status.kind.name, "available" if status.available else "unavailable",
                 status.detail)
    log.info("emotion model %s; default detector %s", frame_path.classifier.path, frame_path.default_detector.name)

    batcher = Batcher(frame_path, config.max_batch, config.max_delay_ms, config.threads)
    batcher.start()
    servicer = EmotionServicer(frame_path, batcher, config.max_streams)
    health_servicer = health.aio.HealthServicer()
    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
    ])
    emotion_pb2_grpc.add_EmotionServiceServicer_to_server(servicer, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    port = server.add_insecure_port(f"{config.host}:{config.port}")
    if port == 0:
        raise OSError(f"cannot listen on {config.host}:{config.port}")
    await server.start()
    for service in ("", SERVICE_NAME):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    log.info("serving on %s:%d", config.host, port)

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stopping.set)
    await stopping.wait()

    log.info("stopping: draining open calls for up to %.1f s", config.grace_s)
    await health_servicer.enter_graceful_shutdown()
    servicer.drain()
    await server.stop(config.grace_s)
    await asyncio.to_thread(batcher.stop)
    log.info("stopped")
