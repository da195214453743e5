"""The streaming worker: sends the newest captured frames over StreamAnnotate with a bounded in-flight
window, keeps statistics, and reconnects with backoff when the server goes away.

It never touches Tk: everything it has to say goes through the `emit` callback as an event
(StateChanged, Annotated), which the app turns into queue items for its main thread.
"""

from __future__ import annotations

import enum
import itertools
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import grpc

from ferstream.client.capture import CapturedFrame, LatestFrame
from ferstream.client.library import RECONNECT_INITIAL_S, RECONNECT_MAX_S, EmotionClient
from ferstream.client.messages import DEFAULT_JPEG_QUALITY, encode_image, make_options
from ferstream.client.window import DEFAULT_MAX_IN_FLIGHT, InFlightWindow
from ferstream.v1 import emotion_pb2

# How long a blocked step waits before looking at the stop flag again: bounds how long stop() takes.
POLL_S = 0.1
# The model a still image is read with when the options name none: photos' default everywhere (REST,
# Annotate, ferstream.analyze, fer-annotate), so the window shows the answer they give.
STILL_MODEL = "accurate"
# A little over the 0.2 s period of gRPC Python's connectivity polling thread (grpc/_channel.py).
GRPC_CONNECTIVITY_POLL_S = 0.25
# The name-resolver schemes gRPC's core accepts in a target ("dns:///name:port", "unix:///path"...).
GRPC_SCHEMES = frozenset({"dns", "ipv4", "ipv6", "unix", "unix-abstract", "vsock", "xds", "google-c2p"})
_URL_SCHEME = re.compile(r"^\s*([A-Za-z][A-Za-z0-9+.-]*)://")


def target_problem(target: str) -> str | None:
    """Why `target` cannot be a fer-server address (one line for people), or None when it can be.

    Catches what users paste by mistake: an empty field, and URLs such as "http://host:50051" (fer-server
    speaks gRPC; gRPC would take "http" for a host name and keep failing to resolve it).
    """
    if not target.strip():
        return "no server address: give HOST:PORT, e.g. 127.0.0.1:50051"
    scheme = _URL_SCHEME.match(target)
    if scheme is None or scheme.group(1).lower() in GRPC_SCHEMES:
        return None
    prefix = target.strip()[: len(scheme.group(1)) + 3]
    if scheme.group(1).lower() in ("http", "https"):
        return f"{target.strip()}: fer-server speaks gRPC, not HTTP: drop '{prefix}' and give HOST:PORT"
    return f"{target.strip()}: '{prefix}' is not a gRPC address scheme: give HOST:PORT, e.g. 127.0.0.1:50051"


class ConnectionState(enum.Enum):
    """Where a StreamSession stands; the app shows it in its status bar."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    DISCONNECTED = "disconnected"


@dataclass(frozen=True)
class StreamOptions:
    """What the user can change while streaming; read afresh for every frame sent."""

    detector: str | None = None  # None: the server's default
    min_detection_score: float = 0.0  # 0: the detector's default threshold
    jpeg_quality: int = DEFAULT_JPEG_QUALITY
    paused: bool = False
    model: str = ""  # the emotion model by name; empty: the server's default for streams (fast)


@dataclass(frozen=True)
class Backoff:
    """Delays between reconnection attempts: initial, doubling up to maximum; reset by a good stream."""

    initial_s: float = RECONNECT_INITIAL_S
    maximum_s: float = RECONNECT_MAX_S

    def delays(self) -> Iterator[float]:
        """Seconds to wait before each attempt: initial_s, doubled each time, never above maximum_s."""
        delay = self.initial_s
        while True:
            yield delay
            delay = min(delay * 2, self.maximum_s)


@dataclass(frozen=True)
class Stats:
    """A stream's figures, as the status bar shows them."""

    client_fps: float = 0.0  # annotated frames received per second
    server_fps: float = 0.0  # frames per second the server's processing time allows (1000 / ms per frame)
    latency_ms: float = 0.0  # round trip: frame sent to its annotations received
    dropped_client: int = 0  # captured frames never sent because the window was full
    dropped_server: int = 0  # frames the server skipped for a newer one
    sent: int = 0
    received: int = 0

    @property
    def dropped(self) -> int:
        """Frames never answered: not sent because the window was full, or skipped by the server."""
        return self.dropped_client + self.dropped_server


@dataclass(frozen=True)
class StateChanged:
    """Event: the session's connection state changed; message says it for people."""

    state: ConnectionState
    message: str


@dataclass(frozen=True)
class Annotated:
    """Event: the server's answer for a frame sent, with the figures up to it."""

    frame: CapturedFrame
    response: emotion_pb2.StreamAnnotateResponse
    options: emotion_pb2.AnnotateOptions  # what the server was asked for this frame
    stats: Stats


Event = StateChanged | Annotated


@dataclass
class _Sent:
    frame: CapturedFrame
    options: emotion_pb2.AnnotateOptions
    sent_at: float


class _StatsWindow:
    """Rolling statistics over the last couple of seconds of responses."""

    def __init__(self, span_s: float = 2.0) -> None:
        self._span_s = span_s
        self._received_at: deque[float] = deque()
        self._latencies_ms: deque[float] = deque(maxlen=30)
        self._server_ms: deque[float] = deque(maxlen=30)
        self._lock = threading.Lock()  # the sender and the receiver are different threads
        self.totals = Stats()

    def count_sent(self, dropped_before: int) -> None:
        """Counts a frame sent, and the captured frames skipped since the last one sent."""
        with self._lock:
            self.totals = replace(
                self.totals, sent=self.totals.sent + 1, dropped_client=self.totals.dropped_client + dropped_before
            )

    def count_received(self, sent_at: float | None, response: emotion_pb2.StreamAnnotateResponse) -> Stats:
        """Counts an answer (sent_at: time.monotonic() when its frame went, None if unknown); the new figures."""
        with self._lock:
            return self._count_received(sent_at, response)

    def _count_received(self, sent_at: float | None, response: emotion_pb2.StreamAnnotateResponse) -> Stats:
        now = time.monotonic()
        self._received_at.append(now)
        while self._received_at and self._received_at[0] < now - self._span_s:
            self._received_at.popleft()
        if sent_at is not None:
            self._latencies_ms.append((now - sent_at) * 1000.0)
        processing_ms = response.timing.total_ms - response.timing.queue_ms
        if processing_ms > 0:
            self._server_ms.append(processing_ms)
        elapsed = now - self._received_at[0] if len(self._received_at) > 1 else 0.0
        self.totals = replace(
            self.totals,
            client_fps=(len(self._received_at) - 1) / elapsed if elapsed > 0 else 0.0,
            server_fps=1000.0 / _mean(self._server_ms) if self._server_ms else 0.0,
            latency_ms=_mean(self._latencies_ms),
            dropped_server=self.totals.dropped_server + len(response.skipped_frame_ids),
            received=self.totals.received + 1,
        )
        return self.totals


def _mean(values: deque[float]) -> float:
    return sum(values) / len(values) if values else 0.0


class StreamSession(threading.Thread):
    """One connection's worth of streaming, from connect() in the UI to stop().

    Sends the newest frame of `latest` whenever fewer than max_in_flight frames await an answer, reports
    through emit (called on this thread), and reconnects with `backoff` delays when the stream breaks.
    """

    def __init__(
        self,
        client: EmotionClient,
        latest: LatestFrame,
        emit: Callable[[Event], None],
        options: StreamOptions = StreamOptions(),
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        backoff: Backoff = Backoff(),
    ) -> None:
        super().__init__(name="fer-session", daemon=True)
        self._client = client
        self._latest = latest
        self._emit = emit
        self._options = options
        self._backoff = backoff
        self._stop_requested = threading.Event()
        # More than the default only adds latency in a live stream: the server skips frames it cannot start.
        self._window: InFlightWindow[_Sent] = InFlightWindow(max_in_flight)
        self._frame_ids = itertools.count()
        self._stats = _StatsWindow()
        self._call: grpc.Call | None = None

    @property
    def options(self) -> StreamOptions:
        """The options the next frame is sent with."""
        return self._options

    def set_options(self, **changes: object) -> None:
        """Changes StreamOptions fields from any thread; the next frame sent uses them."""
        # One attribute assignment: the sender sees either the old or the new options, never a mix.
        self._options = replace(self._options, **changes)

    def stop(self) -> None:
        """Asks the session to end (from any thread): the call is cancelled; join() waits for the end."""
        self._stop_requested.set()
        call = self._call
        if call is not None:
            call.cancel()
        self._window.close()

    def run(self) -> None:
        """The thread's body: connect, stream, reconnect, until stop(); ends with a DISCONNECTED event."""
        try:
            self._connect_loop()
        finally:
            self._client.close()
            self._emit(StateChanged(ConnectionState.DISCONNECTED, "disconnected"))

    def _connect_loop(self) -> None:
        delays = self._backoff.delays()
        while not self._stop_requested.is_set():
            self._emit(StateChanged(ConnectionState.CONNECTING, f"connecting to {self._client.target}"))
            if not self._wait_until_ready():
                return
            self._emit(StateChanged(ConnectionState.CONNECTED, f"connected to {self._client.target}"))
            received_before = self._stats.totals.received
            try:
                self._stream_once()
                reason = "the server ended the stream"
            except grpc.RpcError as error:
                if self._stop_requested.is_set():
                    return
                reason = f"lost the server ({error.code().name}: {error.details()})"
            if self._stop_requested.is_set():
                return
            if self._stats.totals.received > received_before:
                delays = self._backoff.delays()
            delay = next(delays)
            self._emit(StateChanged(ConnectionState.RECONNECTING, f"{reason}; reconnecting in {delay:.1f} s"))
            self._stop_requested.wait(delay)

    def _wait_until_ready(self) -> bool:
        """Waits for the channel (gRPC retries the connection with its own capped backoff).

        One connectivity subscription for the whole wait, dropped before returning: a ready-future per
        POLL_S (EmotionClient.wait_ready) would leave gRPC's polling thread asked to connect again when
        Disconnect closes the channel, and that thread then dies with "Channel closed!" on stderr.
        """
        ready = threading.Event()

        def watch(connectivity: grpc.ChannelConnectivity) -> None:
            if connectivity is grpc.ChannelConnectivity.READY:
                ready.set()

        channel = self._client.channel
        channel.subscribe(watch, try_to_connect=True)
        try:
            started = time.monotonic()
            announced = False
            while not self._stop_requested.is_set():
                if ready.wait(POLL_S):
                    return True
                if not announced and time.monotonic() - started > 1.0:
                    message = f"cannot reach the server at {self._client.target}; retrying"
                    self._emit(StateChanged(ConnectionState.RECONNECTING, message))
                    announced = True
            return False
        finally:
            channel.unsubscribe(watch)
            if self._stop_requested.is_set():
                # gRPC's connectivity polling thread only notices the unsubscribe at its next wake-up (every
                # 0.2 s); a channel closed before then kills it with "Channel closed!" (grpc/grpc#18995).
                time.sleep(GRPC_CONNECTIVITY_POLL_S)

    def _stream_once(self) -> None:
        self._window.clear()
        stream = self._client.stream(self._requests(), max_in_flight=self._window.limit)
        self._call = stream
        try:
            if self._stop_requested.is_set():  # stop() may have run before _call was set
                return
            for response in stream:
                self._handle(response)
        finally:
            self._call = None

    def _requests(self) -> Iterator[emotion_pb2.StreamAnnotateRequest]:
        """A new frame whenever one is captured; the last one again when the detector or score changed (a
        still image is captured once, so this is how it gets the new options). A still image goes as its
        file's bytes, read by the accurate model unless the options name one; other frames JPEG-encoded at
        the chosen quality, read by the server's stream default unless the options name a model."""
        last_seq: int | None = None
        last_options: emotion_pb2.AnnotateOptions | None = None
        while not self._stop_requested.is_set():
            if not self._window.wait_for_room(timeout=POLL_S):
                continue
            options = self._options
            if options.paused:
                last_seq = None  # frames not sent while paused are not "dropped"
                self._stop_requested.wait(POLL_S)
                continue
            asked = make_options(options.detector, options.min_detection_score, model=options.model)
            if last_seq is not None and asked != last_options:
                frame = self._latest.newest()
            else:
                frame = self._latest.wait_newer(last_seq or 0, timeout=POLL_S)
            if frame is None or self._stop_requested.is_set():
                continue
            dropped_before = max(0, frame.seq - last_seq - 1) if last_seq is not None else 0
            last_seq, last_options = frame.seq, asked
            if frame.encoded is not None:
                image = emotion_pb2.Image(encoded=frame.encoded)
                # A photo is read with the photos' default model wherever it is sent (REST, Annotate,
                # fer-annotate): the accurate one, unless the window names another.
                sent_options = make_options(options.detector, options.min_detection_score,
                                            model=options.model or STILL_MODEL)
            else:
                image, sent_options = encode_image(frame.image, options.jpeg_quality), asked
            request = emotion_pb2.StreamAnnotateRequest(frame_id=next(self._frame_ids), image=image,
                                                        options=sent_options)
            self._window.sent(request.frame_id, _Sent(frame, request.options, time.monotonic()))
            self._stats.count_sent(dropped_before)
            yield request

    def _handle(self, response: emotion_pb2.StreamAnnotateResponse) -> None:
        sent = self._window.answered(response.frame_id, response.skipped_frame_ids)
        stats = self._stats.count_received(sent.sent_at if sent else None, response)
        if response.error.code != 0:
            self._emit(StateChanged(ConnectionState.CONNECTED, f"frame not processed: {response.error.message}"))
            return
        if sent is not None:
            self._emit(Annotated(sent.frame, response, sent.options, stats))
