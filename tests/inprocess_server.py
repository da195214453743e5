"""fer-server's own serve() on loopback inside the test process: the real composition root, servicer and
workers, reachable over gRPC, without a subprocess (so hypothesis can send it thousands of requests)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from ferstream.server.app import serve
from ferstream.server.config import ServerConfig


@contextmanager
def inprocess_server(config: ServerConfig, start_timeout_s: float = 120.0) -> Iterator[str]:
    """Runs serve(config) on its own event loop thread; yields "127.0.0.1:PORT"; stops it (drained) on exit."""
    started = threading.Event()
    state: dict = {}

    def run() -> None:
        async def main() -> None:
            state["loop"] = asyncio.get_running_loop()
            state["stop"] = asyncio.Event()
            await serve(config, lambda host, port: (state.update(address=f"{host}:{port}"), started.set()),
                        state["stop"])

        try:
            asyncio.run(main())
        except BaseException as error:  # reported to the test thread below
            state["error"] = error
            started.set()

    thread = threading.Thread(target=run, name="inprocess-fer-server", daemon=True)
    thread.start()
    if not started.wait(start_timeout_s) or "error" in state:
        raise RuntimeError(f"the in-process server did not start: {state.get('error')!r}")
    try:
        yield state["address"]
    finally:
        state["loop"].call_soon_threadsafe(state["stop"].set)
        thread.join(timeout=60)
