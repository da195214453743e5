"""fer-server --replicas N: N server processes sharing one port, the kernel spreading connections over them.

Python serves one frame path per process well but not more (the GIL, one batcher), so on a machine with
many cores several whole servers beat one big one. Each replica is a spawned process running the usual
`serve()` with its own models, with --threads capped at cores/N so the replicas do not fight over cores.
They all bind the same port with SO_REUSEPORT (which a lone server turns off; this is the pattern of grpc's
multiprocessing example), and Linux hands each new connection to one of them. A stream stays on the replica
its connection landed on; a client that opens many connections (or many clients) spreads out.

The parent binds the port first (picking a free one for --port 0) and holds it, unlistened, while the
replicas run, so nobody else takes it in between. It prints the one "serving on HOST:PORT" line once every
replica is serving, forwards SIGTERM/SIGINT to the replicas, and exits 0 once they have drained. When a
replica dies on its own, the parent stops the others and exits 1: a half-sized server is better restarted
by whatever supervises it than left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import queue
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess

from .config import ServerConfig, available_cores
from .ready import announce_serving

log = logging.getLogger("ferstream.server")
# fer-server's own format (cli.py), with the replica's number after the logger name.
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def threads_per_replica(config: ServerConfig, cores: int) -> int:
    """A replica's classifier threads: --threads, at most its share of the cores, at least 1."""
    return max(1, min(config.threads, cores // config.replicas))


def detect_workers_per_replica(config: ServerConfig, cores: int) -> int:
    """A replica's detection threads: --detect-workers (0: every core) capped at its share of the cores."""
    share = max(1, cores // config.replicas)
    return min(config.detect_workers, share) if config.detect_workers else share


def replica_config(config: ServerConfig, port: int, number: int, cores: int) -> ServerConfig:
    """Replica `number`'s settings (1-based): the reserved port, its share of the cores, its own metrics port."""
    metrics_port = config.metrics_port
    if metrics_port:  # a fixed metrics port cannot be shared: replica k serves on metrics_port + k - 1
        metrics_port += number - 1
    return replace(config, port=port, replicas=1, share_port=True, threads=threads_per_replica(config, cores),
                   detect_workers=detect_workers_per_replica(config, cores), metrics_port=metrics_port)


@contextlib.contextmanager
def reserved_port(host: str, port: int) -> Iterator[int]:
    """Binds host:port (0: a free port) with SO_REUSEPORT and holds it without listening while the block runs.

    The replicas can bind it too (same user, same option), and no other program can take it between the pick
    and their binds. A socket that never listens receives no connections.
    """
    if not hasattr(socket, "SO_REUSEPORT"):
        raise OSError("--replicas needs SO_REUSEPORT, which this platform lacks")
    family, kind, protocol, _, address = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind, protocol) as reservation:
        reservation.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        reservation.bind(address)
        yield reservation.getsockname()[1]


def report_listening(number: int, ready: multiprocessing.Queue) -> Callable[[str, int], None]:
    """A replica's announcement: it logs "listening on" and tells the parent, which alone says "serving on".

    So anyone watching the log for "serving on" waits for every replica, not just the first.
    """

    def announce(host: str, port: int) -> None:
        log.info("listening on %s:%d", host, port)
        ready.put(number)

    return announce


def stop_when_orphaned(parent_alive: Connection) -> None:
    """Sends this replica SIGTERM (a graceful stop) once the parent is gone, even killed with SIGKILL.

    Only the parent holds the pipe's sending end, so reading gets EOF exactly when the parent's process ends.
    """

    def watch() -> None:
        with contextlib.suppress(EOFError, OSError):
            parent_alive.recv()
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="fer-parent-watch", daemon=True).start()


def run_replica(number: int, config: ServerConfig, ready: multiprocessing.Queue, parent_alive: Connection) -> None:
    """The body of replica `number`, in a freshly spawned interpreter."""
    from .heap import bound_heap

    bound_heap()
    # Ctrl-C reaches the whole process group; the parent turns it into SIGTERM, which a replica still loading
    # its models dies of quietly and a serving one answers by draining.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop_when_orphaned(parent_alive)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT.replace("%(name)s", f"%(name)s[replica {number}]")))
    logging.basicConfig(level=config.log_level, handlers=[handler])
    from .app import serve

    try:
        asyncio.run(serve(config, report_listening(number, ready)))
    except (OSError, ValueError, RuntimeError) as error:
        log.error("cannot serve: %s", error)
        sys.exit(1)


class Replicas:
    """The replica processes, and the parent's SIGTERM/SIGINT handling that passes the stop on to them."""

    def __init__(self, config: ServerConfig, port: int) -> None:
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited gRPC or torch threads
        self.ready: multiprocessing.Queue = context.Queue()
        # Never written to: the replicas see it close when this process ends, however it ends.
        parent_alive, self._alive_sender = context.Pipe(duplex=False)
        cores = available_cores()
        self.processes: list[BaseProcess] = [
            context.Process(target=run_replica, name=f"fer-server-replica-{number}",
                            args=(number, replica_config(config, port, number, cores), self.ready, parent_alive))
            for number in range(1, config.replicas + 1)
        ]
        self.threads = threads_per_replica(config, cores)
        self.stop_requested = False

    def start(self) -> None:
        """Installs the stop handlers, then starts every replica process."""
        for signal_number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signal_number, self.request_stop)
        for process in self.processes:
            process.start()

    def request_stop(self, *_signal: object) -> None:
        """Signal handler: every replica drains its calls and exits (a second signal just repeats this)."""
        self.stop_requested = True
        for process in self.processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: the replica's own graceful stop

    def wait_until_serving(self) -> bool:
        """True once every replica serves; False when one exits first or a stop is requested."""
        waiting = set(range(1, len(self.processes) + 1))
        while waiting and not self.stop_requested:
            try:
                waiting.discard(self.ready.get(timeout=0.2))
            except queue.Empty:
                if any(process.exitcode is not None for process in self.processes):
                    return False
        return not waiting

    def supervise(self) -> int:
        """Waits for every replica to exit: 0 when they all stopped because we asked, 1 otherwise."""
        running = list(self.processes)
        failed = False
        while running:
            wait([process.sentinel for process in running])
            for process in [process for process in running if process.exitcode is not None]:
                running.remove(process)
                stopped_as_asked = self.stop_requested and process.exitcode in (0, -signal.SIGTERM)
                if not stopped_as_asked:
                    log.error("%s exited with code %s; stopping the others", process.name, process.exitcode)
                    failed = True
                    self.request_stop()
        log.info("all replicas stopped")
        return 1 if failed else 0


def serve_replicas(config: ServerConfig) -> int:
    """Runs config.replicas server processes on one port until SIGTERM/SIGINT; returns the exit code."""
    try:
        with reserved_port(config.host, config.port) as port:
            replicas = Replicas(config, port)
            log.info("starting %d replicas on port %d, %d classifier thread(s) each", config.replicas, port,
                     replicas.threads)
            started = time.monotonic()
            replicas.start()
            if replicas.wait_until_serving():
                log.info("all %d replicas ready after %.1f s", config.replicas, time.monotonic() - started)
                announce_serving(config.host, port)
            elif not replicas.stop_requested:
                log.error("a replica exited before serving")
                replicas.request_stop()
            return replicas.supervise()
    except OSError as error:
        log.error("cannot serve: %s", error)
        return 1
