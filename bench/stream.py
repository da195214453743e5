"""fer-bench stream: N concurrent StreamAnnotate clients against one server for T seconds.

With several --server addresses (one server directly and through a proxy, say) the same streams run
against each in turn, alternating for --rounds rounds, and the table compares their answered fps.

Each stream sends the test frames' JPEGs in turn, either as fast as answered (each stream keeps
`in_flight` frames sent and unanswered: the most the server can answer) or at a fixed offered rate,
with the streams' send times spread evenly over one frame interval, as independent cameras would be.
The newest frame wins: the client's live window keeps at most `in_flight` frames of a stream unanswered
and one waiting, which a newer frame replaces; frames replaced there or skipped by the server are the
drops. Latency is from handing a frame to the client library to receiving its answer.

Two numbers put the result in proportion, measured in the same run (never at the same time):
- the server's CPU seconds per answered frame beside the sum of its stage times per frame (decode +
  detect + the frame's share of its classifier call, from each answer's timing): the gap is gRPC,
  Python and waiting that no stage accounts for;
- the yardstick: decoding a frame plus YuNet on the whole frame, on one thread, times the cores (what
  the cores would do if they did nothing else), and the served fps as a multiple of it.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import grpc
import numpy as np

from ferstream.client.library import EmotionClient
from ferstream.client.messages import detector_name, detector_value, make_options
from ferstream.client.window import DEFAULT_MAX_IN_FLIGHT, InFlightWindow
from ferstream.pipeline import weights
from ferstream.v1 import emotion_pb2 as pb

from .report import markdown_table
from .server_process import BenchError, ServerProcess
from .timing import repeat_for

# Extra time streams get to finish answering what was sent before the clock ran out.
DRAIN_S = 30.0
# Head start so that every stream's call is open before the first frame is due.
START_DELAY_S = 0.3
# The yardstick's measurement: long enough for a steady rate, short beside the streams' run.
YARDSTICK_S = 3.0


@dataclass(frozen=True)
class StreamSettings:
    """What `fer-bench stream` runs: how many streams, how they send, for how long, which detector."""

    streams: int = 1
    # 0: lockstep, each stream sends its next frame when the previous one is answered.
    fps: float = 0.0
    seconds: float = 10.0
    # None: the server's default detector.
    detector: str | None = None
    # With fps 0: frames each stream keeps sent and unanswered. 2 lets the server detect a stream's next frame
    # while classifying its previous one; 1 is strict lockstep.
    in_flight: int = DEFAULT_MAX_IN_FLIGHT
    # The emotion model the streams ask for ("fast", "accurate"); empty: the server's default for streams.
    model: str = ""


@dataclass(frozen=True)
class Yardstick:
    """Decode + YuNet on the whole frame, one thread: what the machine's cores could do at most."""

    cores: int
    ms_per_frame_one_thread: float
    # cores x the one-thread rate.
    fps: float


@dataclass(frozen=True)
class StageTimes:
    """Mean server-side stage times per answered frame, from the answers' timing (wall clock, ms)."""

    decode_ms: float
    detect_ms: float
    # The frame's share of its classifier call: classify_ms x its faces / the call's faces.
    classify_share_ms: float

    @property
    def sum_ms(self) -> float:
        """decode + detect + classify share, ms per frame."""
        return self.decode_ms + self.detect_ms + self.classify_share_ms


@dataclass(frozen=True)
class Latency:
    """Percentiles and mean of answer latencies in ms (None when there were no answers)."""

    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    mean_ms: float | None

    @classmethod
    def of(cls, samples_ms: Sequence[float]) -> Latency:
        """The percentiles of samples_ms (numpy's linear interpolation)."""
        if not samples_ms:
            return cls(None, None, None, None)
        p50, p95, p99 = np.percentile(samples_ms, [50, 95, 99])
        return cls(float(p50), float(p95), float(p99), float(np.mean(samples_ms)))


@dataclass(frozen=True)
class StreamResult:
    """One stream's counts, rates and latency."""

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
    """The whole run: totals over the streams, server and client CPU, stage times and the yardstick."""

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
    stages: StageTimes
    # Server CPU per answered frame over the sum of its stage times; None without server CPU.
    cpu_over_stages: float | None
    # None when YuNet's weights are not found.
    yardstick: Yardstick | None
    # answered_fps / yardstick.fps.
    vs_yardstick: float | None
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
    # (decode_ms, detect_ms, classify share ms) of each answer without an error.
    stage_ms: list[tuple[float, float, float]] = field(default_factory=list)
    # Frames sent and unanswered at most (fps 0): the client's flow-control window.
    in_flight: int = 1
    window: InFlightWindow[None] = field(init=False)

    def __post_init__(self) -> None:
        self.window = InFlightWindow(self.in_flight)

    def wait_for_turn(self, next_send: float) -> bool:
        """Blocks until the next frame may go; False when the run is over."""
        delay = next_send - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        if self.fps == 0:
            while not self.window.wait_for_room(timeout=0.05):
                if time.perf_counter() >= self.stop_at:
                    return False
        return time.perf_counter() < self.stop_at

    def requests(self) -> Iterator[pb.StreamAnnotateRequest]:
        """The stream's requests, paced by fps or by answers; ends when the run is over."""
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
            self.window.sent(frame_id)
            yield pb.StreamAnnotateRequest(frame_id=frame_id, image=pb.Image(encoded=next(images)),
                                           options=self.options)

    def run(self) -> None:
        """Reads the answers until the server ends the stream; records a failure instead of raising."""
        try:
            for response in self.client.stream(self.requests(), max_in_flight=self.in_flight):
                received = time.perf_counter()
                self.answered += 1
                self.last_answer = received
                self.latencies_ms.append((received - self.sent_at[response.frame_id]) * 1000.0)
                self.dropped += len(response.skipped_frame_ids)
                if response.HasField("error"):
                    self.errors += 1
                else:
                    self.stage_ms.append(stage_times(response))
                self.faces += len(response.faces)
                # Each skipped frame was sent and will get no answer of its own: its place is free too.
                self.window.answered(response.frame_id, response.skipped_frame_ids)
        except grpc.RpcError as error:
            self.failure = f"stream {self.number}: {error.code().name}: {error.details()}"

    def result(self, start: float, planned_s: float) -> StreamResult:
        """This stream's StreamResult over max(planned_s, time to its last answer)."""
        seconds = max(self.last_answer - start, planned_s)
        sent = len(self.sent_at)
        drop_rate = self.dropped / sent if sent else 0.0
        return StreamResult(self.number, sent, self.answered, self.dropped, self.errors, self.faces,
                            self.answered / seconds, drop_rate, Latency.of(self.latencies_ms))


def stage_times(response: pb.StreamAnnotateResponse) -> tuple[float, float, float]:
    """(decode, detect, this frame's share of its classifier call) in ms, from an answer's timing."""
    timing = response.timing
    share = timing.classify_ms * len(response.faces) / timing.batch_faces if timing.batch_faces else 0.0
    return timing.decode_ms, timing.detect_ms, share


def available_cores() -> int:
    """Cores this process may run on (the yardstick's multiplier)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def measure_yardstick(frames: Sequence[bytes], models_dir: Path, seconds: float = YARDSTICK_S) -> Yardstick | None:
    """Decode + YuNet on each whole frame (no shrinking), OpenCV on one thread, times the cores.

    The yardstick is the one the frame path's throughput targets are stated against: cv2.FaceDetectorYN,
    the way a plain OpenCV program runs YuNet, whatever runtime the server's own YuNet uses
    (pipeline/yunet.py: ONNX Runtime). None when YuNet's weights are not in
    models_dir. Restores OpenCV's thread count afterwards.
    """
    found = weights.locate(weights.YUNET, weights.search_folders(models_dir))
    if not found.ok:
        return None
    previous_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yunet = cv2.FaceDetectorYN.create(str(found.path), "", (320, 320), 0.6, 0.3, 5000)
        images = itertools.cycle(frames)

        def one_frame() -> None:
            frame = cv2.imdecode(np.frombuffer(next(images), np.uint8), cv2.IMREAD_COLOR)
            yunet.setInputSize((frame.shape[1], frame.shape[0]))
            yunet.detect(frame)

        for _ in range(3):  # warm-up: the first calls allocate and pick kernels
            one_frame()
        measured = repeat_for(one_frame, seconds, min_calls=len(frames))
    finally:
        cv2.setNumThreads(previous_threads)
    cores = available_cores()
    return Yardstick(cores, measured.ms_per_call, cores * measured.calls_per_s)


def channel_options() -> list[tuple[str, object]]:
    # Each stream gets its own connection, as separate client processes would.
    """Channel arguments of each stream's client."""
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
        options = make_options(settings.detector, model=settings.model)
        start = time.perf_counter() + START_DELAY_S
        # Offered rate: stream k starts k/N of a frame interval after stream 0.
        spacing = 1.0 / (settings.fps * settings.streams) if settings.fps > 0 else 0.0
        streams = [StreamClient(number, client, frames, options, settings.fps, start + number * spacing,
                                start + settings.seconds, in_flight=settings.in_flight)
                   for number, client in enumerate(clients)]
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
              detector: str, client_cpu_s: float, server_cpu_s: float | None,
              yardstick: Yardstick | None = None) -> StreamBench:
    """A StreamBench from the finished streams; BenchError when a stream failed."""
    failures = [stream.failure for stream in streams if stream.failure]
    if failures:
        raise BenchError("; ".join(failures))
    results = [stream.result(start, settings.seconds) for stream in streams]
    # The planned window, or longer when the last answers came after it.
    seconds = max(max(stream.last_answer for stream in streams) - start, settings.seconds)
    sent = sum(r.sent for r in results)
    answered = sum(r.answered for r in results)
    dropped = sum(r.dropped for r in results)
    samples = [sample for stream in streams for sample in stream.stage_ms]
    stages = StageTimes(*(float(np.mean(column)) for column in zip(*samples))) if samples else StageTimes(0, 0, 0)
    server_cpu_s_per_frame = server_cpu_s / answered if server_cpu_s is not None and answered else None
    answered_fps = answered / seconds
    return StreamBench(
        settings=settings, server=address, server_spawned=spawned, detector=detector, seconds=seconds,
        sent=sent, answered=answered, dropped=dropped, errors=sum(r.errors for r in results),
        lost=sent - answered - dropped, offered_fps=sent / settings.seconds, answered_fps=answered_fps,
        drop_rate=dropped / sent if sent else 0.0,
        latency=Latency.of([ms for stream in streams for ms in stream.latencies_ms]),
        server_cpu_s=server_cpu_s, server_cpu_s_per_frame=server_cpu_s_per_frame,
        client_cpu_s_per_frame=client_cpu_s / answered if answered else 0.0, stages=stages,
        cpu_over_stages=(server_cpu_s_per_frame * 1000.0 / stages.sum_ms
                         if server_cpu_s_per_frame is not None and stages.sum_ms > 0 else None),
        yardstick=yardstick, vs_yardstick=answered_fps / yardstick.fps if yardstick else None, streams=results)


def check_settings(settings: StreamSettings) -> None:
    """ValueError for settings no run can have."""
    if settings.streams < 1 or settings.seconds <= 0 or settings.fps < 0 or settings.in_flight < 1:
        raise ValueError("--streams and --in-flight must be at least 1, --seconds positive and --fps not negative")


def prepare_server(address: str, frames: Sequence[bytes], settings: StreamSettings) -> str:
    """Waits for the server at address, warms it up; the detector the streams will use there."""
    with EmotionClient(address, timeout=60.0) as probe:
        if not probe.wait_ready(10.0):
            raise BenchError(f"no server answers at {address}")
        detector = resolve_detector(probe, settings.detector)
        warm_up(probe, frames, detector)
    return detector


def run_stream_bench(frames: Sequence[bytes], settings: StreamSettings, server: str | None, models_dir: Path,
                     server_threads: int | None) -> StreamBench:
    """Against `server` (HOST:PORT) when given, else against a fer-server the bench starts and stops."""
    check_settings(settings)
    yardstick = measure_yardstick(frames, models_dir, min(YARDSTICK_S, settings.seconds))
    with ExitStack() as stack:
        if server is None:
            max_streams = max(16, settings.streams)
            process = stack.enter_context(ServerProcess(models_dir, server_threads, max_streams))
            address, server_cpu = process.address, process.cpu_seconds
        else:
            address, server_cpu = server, (lambda: None)
        detector = prepare_server(address, frames, settings)
        streams, start, client_cpu_s, server_cpu_s = measure_streams(address, frames, settings, server_cpu)
    return summarise(streams, start, settings, address, server is None, detector, client_cpu_s, server_cpu_s,
                     yardstick)


def stream_table(bench: StreamBench) -> str:
    """The per-stream Markdown table followed by the proportions table."""
    def latency_cells(latency: Latency) -> tuple:
        return latency.p50_ms, latency.p95_ms, latency.p99_ms

    rows = [(r.stream, r.sent, r.answered, r.answered_fps, f"{r.drop_rate:.1%}", *latency_cells(r.latency), None)
            for r in bench.streams]
    rows.append(("all", bench.sent, bench.answered, bench.answered_fps, f"{bench.drop_rate:.1%}",
                 *latency_cells(bench.latency),
                 None if bench.server_cpu_s_per_frame is None else bench.server_cpu_s_per_frame * 1000.0))
    offered = (f"as fast as answered, {bench.settings.in_flight} in flight each" if bench.settings.fps == 0
               else f"{bench.settings.fps:g} fps offered per stream")
    model = f"model {bench.settings.model}" if bench.settings.model else "the server's default model"
    heading = (f"{bench.settings.streams} stream(s), {offered}, detector {bench.detector}, {model}, "
               f"{bench.seconds:.1f} s against {bench.server}{' (spawned)' if bench.server_spawned else ''}\n\n")
    return heading + markdown_table(("stream", "sent", "answered", "answered fps", "dropped", "p50 ms", "p95 ms",
                                     "p99 ms", "server CPU ms/frame"), rows) + "\n\n" + proportion_table(bench)


def proportion_table(bench: StreamBench) -> str:
    """Server CPU per frame beside the stage times, and the served rate beside the yardstick."""
    stages = bench.stages
    cpu_ms = None if bench.server_cpu_s_per_frame is None else bench.server_cpu_s_per_frame * 1000.0
    rows = [("server CPU per answered frame", cpu_ms, "ms",
             "–" if bench.cpu_over_stages is None else f"{bench.cpu_over_stages:.2f}× the stage sum"),
            ("stage sum per frame: decode + detect + classify share", stages.sum_ms, "ms",
             f"{stages.decode_ms:.2f} + {stages.detect_ms:.2f} + {stages.classify_share_ms:.2f}")]
    yardstick = bench.yardstick
    if yardstick is not None:
        rows += [(f"yardstick: decode + YuNet on the whole frame, 1 thread × {yardstick.cores} cores", yardstick.fps,
                  "fps", f"{yardstick.ms_per_frame_one_thread:.2f} ms per frame on one thread"),
                 ("served", bench.answered_fps, "fps", f"{bench.vs_yardstick:.2f}× the yardstick")]
    return markdown_table(("measure", "value", "unit", "note"), rows)


@dataclass(frozen=True)
class TargetSummary:
    """One address of a comparison: its answered fps in each round and on average."""

    server: str
    answered_fps: list[float]
    mean_fps: float
    # mean_fps over the first address's mean_fps.
    vs_first: float
    # Means over the rounds of each run's percentiles, ms.
    p50_ms: float | None
    p95_ms: float | None


@dataclass(frozen=True)
class StreamComparison:
    """The same streams against several addresses (a server directly and through a proxy, say), in turns."""

    settings: StreamSettings
    rounds: int
    detector: str
    targets: list[TargetSummary]
    # Every run, in the order they ran.
    runs: list[StreamBench]


def comparison_order(servers: Sequence[str], rounds: int) -> list[str]:
    """The addresses in turns, every other round reversed (A B, B A, A B...), so that a machine whose load
    drifts during the run weighs on each address alike."""
    return [server for number in range(rounds) for server in (servers if number % 2 == 0 else servers[::-1])]


def run_stream_comparison(frames: Sequence[bytes], settings: StreamSettings, servers: Sequence[str],
                          rounds: int) -> StreamComparison:
    """The streams against each running server in turn, rounds times (see comparison_order); BenchError when
    the addresses pick different detectors or a stream fails. No server CPU: the bench did not start them."""
    check_settings(settings)
    if len(servers) < 2 or rounds < 1:
        raise ValueError("a comparison needs two or more --server addresses and --rounds of at least 1")
    detectors = {server: prepare_server(server, frames, settings) for server in servers}
    if len(set(detectors.values())) > 1:
        raise BenchError(f"the servers use different detectors: {detectors}")
    runs = []
    for server in comparison_order(servers, rounds):
        streams, start, client_cpu_s, _ = measure_streams(server, frames, settings, lambda: None)
        runs.append(summarise(streams, start, settings, server, False, detectors[server], client_cpu_s, None))

    def mean(values: list[float | None]) -> float | None:
        return None if None in values else float(np.mean(values))

    targets = []
    for server in servers:
        own = [run for run in runs if run.server == server]
        fps = [run.answered_fps for run in own]
        targets.append(TargetSummary(server, fps, float(np.mean(fps)), 0.0, mean([run.latency.p50_ms for run in own]),
                                     mean([run.latency.p95_ms for run in own])))
    targets = [replace(target, vs_first=target.mean_fps / targets[0].mean_fps) for target in targets]
    return StreamComparison(settings, rounds, detectors[servers[0]], targets, runs)


def comparison_table(comparison: StreamComparison) -> str:
    """One row per address: fps per round, their mean, the mean beside the first address's, latency."""
    settings = comparison.settings
    offered = (f"as fast as answered, {settings.in_flight} in flight each" if settings.fps == 0
               else f"{settings.fps:g} fps offered per stream")
    heading = (f"{settings.streams} stream(s), {offered}, detector {comparison.detector}, {settings.seconds:g} s per "
               f"run, {comparison.rounds} round(s), the addresses in turns\n\n")
    rows = [(target.server, ", ".join(f"{fps:.1f}" for fps in target.answered_fps), target.mean_fps,
             f"{target.vs_first:.3f}×", target.p50_ms, target.p95_ms) for target in comparison.targets]
    return heading + markdown_table(("server", "answered fps per round", "mean fps", "vs first", "p50 ms", "p95 ms"),
                                    rows)
