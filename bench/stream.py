"""fer-bench stream: N concurrent StreamAnnotate clients against one server for T seconds.

Each stream sends the test frames' JPEGs in turn, either lockstep (the next frame goes as soon as
the previous one is answered: the most the server can answer) or at a fixed offered rate, with the
streams' send times spread evenly over one frame interval, as independent cameras would be. The
server answers the newest frame of a stream and skips older ones; skipped frames are the drops.
Latency is from handing a frame to gRPC to receiving its answer.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np

from ferstream.client.library import EmotionClient, detector_name, detector_value, make_options
from ferstream.v1 import emotion_pb2 as pb

from .report import markdown_table
from .server_process import BenchError, ServerProcess

# Extra time streams get to finish answering what was sent before the clock ran out.
DRAIN_S = 30.0
# Head start so that every stream's call is open before the first frame is due.
START_DELAY_S = 0.3


@dataclass(frozen=True)
class StreamSettings:
    streams: int = 1
    # 0: lockstep, each stream sends its next frame when the previous one is answered.
    fps: float = 0.0
    seconds: float = 10.0
    # None: the server's default detector.
    detector: str | None = None


@dataclass(frozen=True)
class Latency:
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    mean_ms: float | None

    @classmethod
    def of(cls, samples_ms: Sequence[float]) -> Latency:
        if not samples_ms:
            return cls(None, None, None, None)
        p50, p95, p99 = np.percentile(samples_ms, [50, 95, 99])
        return cls(float(p50), float(p95), float(p99), float(np.mean(samples_ms)))


@dataclass(frozen=True)
class StreamResult:
    stream: int
    sent: int
    answered: int
    # Frames the server skipped because a newer one of the same stream arrived first.
    dropped: int
    # Answers that carry an error instead of faces.
    errors: int
    faces: int
    answered_fps: float
    drop_rate: float
    latency: Latency


@dataclass(frozen=True)
class StreamBench:
    settings: StreamSettings
    server: str
    server_spawned: bool
    detector: str
    seconds: float
    sent: int
    answered: int
    dropped: int
    errors: int
    # Sent but neither answered nor reported skipped (should stay 0).
    lost: int
    offered_fps: float
    answered_fps: float
    drop_rate: float
    latency: Latency
    # None when the server was not started by the bench (its CPU time cannot be read).
    server_cpu_s: float | None
    server_cpu_s_per_frame: float | None
    # The bench process itself (every client thread), which shares the machine with a local server.
    client_cpu_s_per_frame: float
    streams: list[StreamResult]


@dataclass
class StreamClient:
    """One StreamAnnotate call: a paced request generator (gRPC's thread) and the response loop (ours)."""

    number: int
    client: EmotionClient
    frames: Sequence[bytes]
    options: pb.AnnotateOptions
    fps: float
    first_send: float
    stop_at: float
    sent_at: dict[int, float] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    answered: int = 0
    dropped: int = 0
    errors: int = 0
    faces: int = 0
    last_answer: float = 0.0
    failure: str | None = None
    # Lockstep: released by each answer, taken before each send.
    answer_arrived: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(1))

    def wait_for_turn(self, next_send: float) -> bool:
        """Blocks until the next frame may go; False when the run is over."""
        delay = next_send - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        if self.fps == 0:
            while not self.answer_arrived.acquire(timeout=0.05):
                if time.perf_counter() >= self.stop_at:
                    return False
        return time.perf_counter() < self.stop_at

    def requests(self) -> Iterator[pb.StreamAnnotateRequest]:
        period = 1.0 / self.fps if self.fps > 0 else 0.0
        next_send = self.first_send
        # Each stream starts at a different photo, so concurrent frames differ.
        first = self.number % len(self.frames)
        images = itertools.cycle([*self.frames[first:], *self.frames[:first]])
        for frame_id in itertools.count(1):
            if not self.wait_for_turn(next_send):
                return
            now = time.perf_counter()
            # A sender that fell a whole period behind (a starved client) resumes the rate instead of bursting.
            next_send = max(next_send + period, now)
            self.sent_at[frame_id] = now
            yield pb.StreamAnnotateRequest(frame_id=frame_id, image=pb.Image(encoded=next(images)),
                                           options=self.options)

    def run(self) -> None:
        try:
            for response in self.client.stream(self.requests()):
                received = time.perf_counter()
                self.answered += 1
                self.last_answer = received
                self.latencies_ms.append((received - self.sent_at[response.frame_id]) * 1000.0)
                self.dropped += len(response.skipped_frame_ids)
                if response.HasField("error"):
                    self.errors += 1
                self.faces += len(response.faces)
                self.answer_arrived.release()
        except grpc.RpcError as error:
            self.failure = f"stream {self.number}: {error.code().name}: {error.details()}"

    def result(self, start: float, planned_s: float) -> StreamResult:
        seconds = max(self.last_answer - start, planned_s)
        sent = len(self.sent_at)
        drop_rate = self.dropped / sent if sent else 0.0
        return StreamResult(self.number, sent, self.answered, self.dropped, self.errors, self.faces,
                            self.answered / seconds, drop_rate, Latency.of(self.latencies_ms))


def channel_options() -> list[tuple[str, object]]:
    # Each stream gets its own connection, as separate client processes would.
    return [("grpc.use_local_subchannel_pool", 1)]


def resolve_detector(client: EmotionClient, requested: str | None) -> str:
    """The detector the server will use; BenchError when the requested one is unavailable there."""
    info = client.model_info()
    wanted = detector_value(requested) or info.default_detector
    for status in info.detectors:
        if status.detector == wanted:
            if not status.available:
                raise BenchError(f"detector {detector_name(wanted)} is unavailable on the server: {status.detail}")
            return detector_name(wanted)
    raise BenchError(f"the server does not know detector {detector_name(wanted)}")


def warm_up(client: EmotionClient, frames: Sequence[bytes], detector: str) -> None:
    """One Annotate per frame, so first-call costs (allocation, kernel choice) stay out of the numbers."""
    for jpeg in frames:
        client.annotate(jpeg, detector=detector)


def measure_streams(address: str, frames: Sequence[bytes], settings: StreamSettings,
                    server_cpu: Callable[[], float | None]) -> tuple[list[StreamClient], float, float, float | None]:
    """The streams once finished, their common start, and the client and server CPU seconds they took."""
    with ExitStack() as stack:
        clients = [stack.enter_context(EmotionClient(address, channel_options=channel_options()))
                   for _ in range(settings.streams)]
        for client in clients:
            if not client.wait_ready(10.0):
                raise BenchError(f"cannot connect to {address}")
        options = make_options(settings.detector)
        start = time.perf_counter() + START_DELAY_S
        # Offered rate: stream k starts k/N of a frame interval after stream 0.
        spacing = 1.0 / (settings.fps * settings.streams) if settings.fps > 0 else 0.0
        streams = [StreamClient(number, client, frames, options, settings.fps, start + number * spacing,
                                start + settings.seconds) for number, client in enumerate(clients)]
        threads = [threading.Thread(target=stream.run, name=f"bench-stream-{stream.number}") for stream in streams]
        cpu_before, client_cpu_before = server_cpu(), time.process_time()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=START_DELAY_S + settings.seconds + DRAIN_S)
        cpu_after, client_cpu_after = server_cpu(), time.process_time()
        if any(thread.is_alive() for thread in threads):
            raise BenchError(f"streams still waiting for answers {DRAIN_S:.0f} s after the run ended")
    server_cpu_s = cpu_after - cpu_before if cpu_before is not None and cpu_after is not None else None
    return streams, start, client_cpu_after - client_cpu_before, server_cpu_s


def summarise(streams: list[StreamClient], start: float, settings: StreamSettings, address: str, spawned: bool,
              detector: str, client_cpu_s: float, server_cpu_s: float | None) -> StreamBench:
    failures = [stream.failure for stream in streams if stream.failure]
    if failures:
        raise BenchError("; ".join(failures))
    results = [stream.result(start, settings.seconds) for stream in streams]
    # The planned window, or longer when the last answers came after it.
    seconds = max(max(stream.last_answer for stream in streams) - start, settings.seconds)
    sent = sum(r.sent for r in results)
    answered = sum(r.answered for r in results)
    dropped = sum(r.dropped for r in results)
    return StreamBench(
        settings=settings, server=address, server_spawned=spawned, detector=detector, seconds=seconds,
        sent=sent, answered=answered, dropped=dropped, errors=sum(r.errors for r in results),
        lost=sent - answered - dropped, offered_fps=sent / settings.seconds, answered_fps=answered / seconds,
        drop_rate=dropped / sent if sent else 0.0,
        latency=Latency.of([ms for stream in streams for ms in stream.latencies_ms]),
        server_cpu_s=server_cpu_s,
        server_cpu_s_per_frame=server_cpu_s / answered if server_cpu_s is not None and answered else None,
        client_cpu_s_per_frame=client_cpu_s / answered if answered else 0.0, streams=results)


def run_stream_bench(frames: Sequence[bytes], settings: StreamSettings, server: str | None, models_dir: Path,
                     server_threads: int | None) -> StreamBench:
    """Against `server` (HOST:PORT) when given, else against a fer-server the bench starts and stops."""
    if settings.streams < 1 or settings.seconds <= 0 or settings.fps < 0:
        raise ValueError("--streams must be at least 1, --seconds positive and --fps not negative")
    with ExitStack() as stack:
        if server is None:
            max_streams = max(16, settings.streams)
            process = stack.enter_context(ServerProcess(models_dir, server_threads, max_streams))
            address, server_cpu = process.address, process.cpu_seconds
        else:
            address, server_cpu = server, (lambda: None)
        with EmotionClient(address, timeout=60.0) as probe:
            if not probe.wait_ready(10.0):
                raise BenchError(f"no server answers at {address}")
            detector = resolve_detector(probe, settings.detector)
            warm_up(probe, frames, detector)
        streams, start, client_cpu_s, server_cpu_s = measure_streams(address, frames, settings, server_cpu)
    return summarise(streams, start, settings, address, server is None, detector, client_cpu_s, server_cpu_s)


def stream_table(bench: StreamBench) -> str:
    def latency_cells(latency: Latency) -> tuple:
        return latency.p50_ms, latency.p95_ms, latency.p99_ms

    rows = [(r.stream, r.sent, r.answered, r.answered_fps, f"{r.drop_rate:.1%}", *latency_cells(r.latency), None)
            for r in bench.streams]
    rows.append(("all", bench.sent, bench.answered, bench.answered_fps, f"{bench.drop_rate:.1%}",
                 *latency_cells(bench.latency),
                 None if bench.server_cpu_s_per_frame is None else bench.server_cpu_s_per_frame * 1000.0))
    offered = "as fast as answered" if bench.settings.fps == 0 else f"{bench.settings.fps:g} fps offered per stream"
    heading = (f"{bench.settings.streams} stream(s), {offered}, detector {bench.detector}, "
               f"{bench.seconds:.1f} s against {bench.server}{' (spawned)' if bench.server_spawned else ''}\n\n")
    return heading + markdown_table(("stream", "sent", "answered", "answered fps", "dropped", "p50 ms", "p95 ms",
                                     "p99 ms", "server CPU ms/frame"), rows)
