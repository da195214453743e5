"""Streams of frames through StreamAnnotate: the frame sources, the flow control of each mode, and the
stream of responses a caller iterates (EmotionClient.stream opens them).

Streams come in two modes, chosen per call:

- ``mode="live"`` (a camera): at most ``max_in_flight`` frames are sent and unanswered, and at most one
  waits to go: a newer frame replaces it (the newest frame wins, as at the server). So a producer faster
  than the server loses stale frames (listed in ``skipped_frame_ids``), never gains latency. The frames
  are read on gRPC's sending thread as fast as the iterable yields them; a caller that has frames pushed
  to it (a socket, a callback) can put() them into a LiveStream instead.
- ``mode="file"`` (a recording): every frame is answered, in order, one response per frame. At most
  ``max_in_flight`` frames are sent and unanswered at any time, so nothing waits long enough at the server
  to be replaced; should the server skip one all the same, it is sent again and its answer still comes out
  in its place.
"""

from __future__ import annotations

import collections
import itertools
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Literal

import cv2
import grpc
import numpy as np

from ferstream.client.messages import ImageInput, encode_image
from ferstream.client.window import InFlightWindow, NewestFrameWindow
from ferstream.v1 import emotion_pb2, emotion_pb2_grpc

FrameInput = ImageInput | emotion_pb2.StreamAnnotateRequest
StreamMode = Literal["live", "file"]


def video_frames(source: str | os.PathLike | int) -> Iterator[np.ndarray]:
    """Every frame of a video file (or camera index) as BGR arrays, until the source ends.

    Raises ValueError when the source cannot be opened. The capture is released when the iterator ends
    or is closed.
    """
    capture = cv2.VideoCapture(source if isinstance(source, int) else str(source))
    try:
        if not capture.isOpened():
            raise ValueError(f"{source}: cannot open it as a video or camera")
        while True:
            grabbed, frame = capture.read()
            if not grabbed:
                return
            yield frame
    finally:
        capture.release()


class IncompleteStream(Exception):
    """A file-mode stream ended (by the server, e.g. while it shut down) before every frame was answered."""


class _FrameRequests:
    """The caller's frames as StreamAnnotateRequests: ids 0, 1, 2... and the stream's options for arrays,
    bytes and paths; a StreamAnnotateRequest passes as it is (its own id and options).

    An exception from the frames (a bad array, a failing reader) is kept for the caller, who sees it raised
    after the responses to the frames before it, instead of gRPC's bare UNKNOWN "Exception iterating
    requests!".
    """

    def __init__(self, frames: Iterable[FrameInput], options: emotion_pb2.AnnotateOptions,
                 jpeg_quality: int | None) -> None:
        self._frames = iter(frames)
        self._options = options
        self._jpeg_quality = jpeg_quality
        self._ids = itertools.count()  # 0-based: the frame's index, as the JSON lines' `frame`
        self.error: Exception | None = None
        self.sender: threading.Thread | None = None  # gRPC's thread that sends the requests

    def frame_id(self, frame: FrameInput) -> int:
        """The caller's id of frame: a request's own, else the next index."""
        return frame.frame_id if isinstance(frame, emotion_pb2.StreamAnnotateRequest) else next(self._ids)

    def request(self, frame_id: int, frame: FrameInput) -> emotion_pb2.StreamAnnotateRequest:
        """frame as a request under frame_id (a request is returned as it is); raises what encoding raises."""
        if isinstance(frame, emotion_pb2.StreamAnnotateRequest):
            return frame
        return emotion_pb2.StreamAnnotateRequest(frame_id=frame_id, image=encode_image(frame, self._jpeg_quality),
                                                 options=self._options)

    def next_frame(self) -> tuple[int, FrameInput] | None:
        """The next frame with its id, not yet encoded; None when the frames end or fail."""
        self.sender = threading.current_thread()
        if self.error is not None:
            return None
        try:
            frame = next(self._frames)
        except StopIteration:
            return None
        except Exception as error:  # handed to the caller's thread by raise_error()
            self.error = error
            return None
        return self.frame_id(frame), frame

    def next_request(self) -> emotion_pb2.StreamAnnotateRequest | None:
        """The next request; None when the frames end or fail."""
        if (pulled := self.next_frame()) is None:
            return None
        try:
            return self.request(*pulled)
        except Exception as error:  # handed to the caller's thread by raise_error()
            self.error = error
            return None

    def close(self) -> None:
        """Closes the frames iterable when it is a generator (releasing a camera or a file it holds), unless
        the thread reading it is still inside it."""
        close = getattr(self._frames, "close", None)
        if close is not None and (self.sender is None or not self.sender.is_alive()):
            try:
                close()
            except ValueError:  # "generator already executing": the sender is in it after all
                pass

    def raise_error(self) -> None:
        """Re-raises, on the caller's thread, what the frames raised."""
        if self.error is not None:
            raise self.error


class _LiveWindow:
    """Live mode's flow control for one stream, a NewestFrameWindow.

    Frames are put as they come (read from the caller's frames on gRPC's sending thread, or pushed by
    LiveStream.put); the sending side (gRPC's thread) encodes and sends the waiting frame whenever fewer
    than max_in_flight are unanswered, and a frame put while another waits replaces it. The receiving side
    (the caller's thread) gives each answer the caller's frame id and lists in its skipped_frame_ids the
    frames that will get no answer: those the server skipped, and those replaced here since the previous
    answer. Frames travel under ids of their own (1, 2, 3... in put order), so a caller's repeated ids
    cannot mix answers up.
    """

    def __init__(self, source: _FrameRequests, max_in_flight: int) -> None:
        self._source = source
        self._window: NewestFrameWindow[tuple[int, FrameInput]] = NewestFrameWindow(max_in_flight)
        self._changed = self._window.changed  # one lock for the window and the ids kept here
        self._wire_ids = itertools.count(1)
        self._sent: dict[int, int] = {}  # wire id -> the caller's frame id, of frames unanswered, in send order
        self._replaced: list[int] = []  # the caller's ids of frames replaced since the previous answer

    def put(self, frame: FrameInput) -> int | None:
        """Queues frame (see LiveStream.put); the caller's id of the frame it replaced, or None."""
        with self._changed:
            return self._put(self._source.frame_id(frame), frame)

    def _put(self, caller_id: int, frame: FrameInput) -> int | None:
        with self._changed:
            replaced = self._window.put(next(self._wire_ids), (caller_id, frame))
            if replaced is None:
                return None
            _, (replaced_id, _) = replaced
            self._replaced.append(replaced_id)
            return replaced_id

    def finish(self) -> None:
        """No more frames: the requests end once the waiting frame is sent."""
        self._window.finish()

    def requests(self) -> Iterator[emotion_pb2.StreamAnnotateRequest]:
        """What gRPC sends for frames put: the waiting frame, whenever fewer than max_in_flight frames are
        unanswered; ends after finish() once nothing waits."""
        while (taken := self._window.take()) is not None:
            if (request := self._wire(taken)) is None:
                return
            yield request

    def read_requests(self) -> Iterator[emotion_pb2.StreamAnnotateRequest]:
        """What gRPC sends for the caller's frames, read on its sending thread as fast as they come: each
        frame read is put, and goes at once when there is room; once they end, the frame still waiting goes
        as soon as there is room."""
        while not self._window.closed and (pulled := self._source.next_frame()) is not None:
            self._put(*pulled)
            if (taken := self._window.take(block=False)) is not None:
                if (request := self._wire(taken)) is None:
                    return
                yield request
        self._window.finish()
        yield from self.requests()

    def _wire(self, taken: tuple[int, tuple[int, FrameInput]]) -> emotion_pb2.StreamAnnotateRequest | None:
        """The frame taken from the window as a request under its wire id; None (the error kept for the
        caller, the sending side stopped) when it cannot be encoded."""
        wire_id, (caller_id, frame) = taken
        try:
            request = self._source.request(caller_id, frame)  # outside the lock: encoding takes time
        except Exception as error:  # handed to the caller's thread by raise_error()
            self._source.error = error
            self.close()
            return None
        wire = emotion_pb2.StreamAnnotateRequest()
        wire.CopyFrom(request)  # every field the caller set (capture_time_ms too), under the wire id
        wire.frame_id = wire_id
        with self._changed:
            self._sent[wire_id] = caller_id
        return wire

    def responses(self, call: Iterator[emotion_pb2.StreamAnnotateResponse]
                  ) -> Iterator[emotion_pb2.StreamAnnotateResponse]:
        """The answers, under the caller's frame ids; then what the frames raised, if anything."""
        try:
            for response in call:
                yield self._receive(response)
        finally:
            self.close()
        self._source.raise_error()

    def _receive(self, response: emotion_pb2.StreamAnnotateResponse) -> emotion_pb2.StreamAnnotateResponse:
        with self._changed:
            wire_id = response.frame_id
            skipped = [self._sent.pop(skipped_id) for skipped_id in response.skipped_frame_ids
                       if skipped_id in self._sent]
            if wire_id in self._sent:
                # fer-server answers a stream's frames in the order they were sent: an older frame still
                # unanswered will get no answer of its own.
                for older in list(self._sent):
                    if older == wire_id:
                        break
                    skipped.append(self._sent.pop(older))
                response.frame_id = self._sent.pop(wire_id)
            self._window.answered(wire_id, response.skipped_frame_ids)
            skipped.extend(self._replaced)
            self._replaced.clear()
            del response.skipped_frame_ids[:]
            response.skipped_frame_ids.extend(skipped)
            return response

    def close(self) -> None:
        """Stops the sending side and the reading of frames (on cancel, or when the call ended)."""
        self._window.close()


class _InOrderWindow:
    """File mode's flow control for one stream.

    The sending side (gRPC's thread) sends a frame only while the window (InFlightWindow) has room, and
    re-sends any frame the server reported skipped before it sends a new one. The receiving side (the
    caller's thread) hands answers out in the order the frames were first sent, with the caller's frame ids.
    Frames travel under ids of their own (1, 2, 3... in first-send order), so a caller's repeated ids cannot
    mix answers up.
    """

    def __init__(self, source: _FrameRequests, max_in_flight: int) -> None:
        self._source = source
        self._window: InFlightWindow[None] = InFlightWindow(max_in_flight)
        self._changed = self._window.changed  # one lock for the window and the order kept here
        self._wire_ids = itertools.count(1)
        self._unanswered: dict[int, emotion_pb2.StreamAnnotateRequest] = {}  # wire id -> request
        self._caller_ids: dict[int, int] = {}  # wire id -> the caller's frame id
        self._order: collections.deque[int] = collections.deque()  # wire ids not yet handed out, in send order
        self._answers: dict[int, emotion_pb2.StreamAnnotateResponse] = {}
        self._resend: collections.deque[int] = collections.deque()
        self._exhausted = False
        self._closed = False

    def _can_act(self) -> bool:
        room = self._window.has_room() and (bool(self._resend) or not self._exhausted)
        done = self._exhausted and not self._unanswered
        return self._closed or room or done

    def requests(self) -> Iterator[emotion_pb2.StreamAnnotateRequest]:
        """What gRPC sends; ends (half-closing the stream) once every frame is answered."""
        while True:
            with self._changed:
                self._changed.wait_for(self._can_act)
                if self._closed:
                    return
                if self._resend:
                    request = self._unanswered.get(self._resend.popleft())
                    if request is None:
                        continue  # answered after all
                    self._window.sent(request.frame_id)
                elif self._exhausted:
                    return  # nothing left to send, nothing unanswered
                else:
                    request = None  # room in the window for a new frame
            if request is None and (request := self._pull()) is None:
                continue
            yield request

    def _pull(self) -> emotion_pb2.StreamAnnotateRequest | None:
        """The caller's next frame under its wire id; None when the frames are exhausted."""
        request = self._source.next_request()  # outside the lock: reading and encoding take time
        with self._changed:
            if request is None:
                self._exhausted = True
                self._changed.notify_all()
                return None
            wire_id = next(self._wire_ids)
            wire = emotion_pb2.StreamAnnotateRequest()
            wire.CopyFrom(request)  # every field the caller set (capture_time_ms too), under the wire id
            wire.frame_id = wire_id
            self._unanswered[wire_id] = wire
            self._window.sent(wire_id)
            self._caller_ids[wire_id] = request.frame_id
            self._order.append(wire_id)
            return wire

    def responses(self, call: Iterator[emotion_pb2.StreamAnnotateResponse]
                  ) -> Iterator[emotion_pb2.StreamAnnotateResponse]:
        """One response per frame, in order; IncompleteStream when the call ends with frames unanswered."""
        try:
            for response in call:
                yield from self._receive(response)
        finally:
            self.close()
        self._source.raise_error()
        if self._order:
            raise IncompleteStream(f"the server ended the stream with {len(self._order)} frame(s) unanswered, "
                                   f"the first being frame {self._caller_ids.get(self._order[0], '?')}")

    def _receive(self, response: emotion_pb2.StreamAnnotateResponse) -> list[emotion_pb2.StreamAnnotateResponse]:
        with self._changed:
            self._resend.extend(wire_id for wire_id in response.skipped_frame_ids if wire_id in self._unanswered)
            self._window.answered(response.frame_id, response.skipped_frame_ids)
            wire_id = response.frame_id
            if self._unanswered.pop(wire_id, None) is not None:
                response.frame_id = self._caller_ids.pop(wire_id)
                del response.skipped_frame_ids[:]  # re-sent, so not skipped for the caller
                self._answers[wire_id] = response
            ready = []
            while self._order and self._order[0] in self._answers:
                ready.append(self._answers.pop(self._order.popleft()))
            self._changed.notify_all()
            return ready

    def close(self) -> None:
        """Stops the sending side (on cancel, or when the call ended)."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()


class ResponseStream:
    """The responses of one StreamAnnotate call: iterate it; cancel() ends it from any thread.

    Iterating raises grpc.RpcError when the call fails (CANCELLED after cancel()), re-raises what the
    frames iterable raised once the frames before it are answered, and in file mode raises IncompleteStream
    when the server ended the call before answering every frame.
    """

    def __init__(self, call: grpc.Call, responses: Iterator[emotion_pb2.StreamAnnotateResponse],
                 source: _FrameRequests, on_cancel: Callable[[], None] = lambda: None) -> None:
        self._call = call
        self._responses = responses
        self._source = source
        self._on_cancel = on_cancel

    def __iter__(self) -> Iterator[emotion_pb2.StreamAnnotateResponse]:
        return self

    def __next__(self) -> emotion_pb2.StreamAnnotateResponse:
        return next(self._responses)

    def cancel(self) -> None:
        """Ends the call; safe from any thread and more than once."""
        self._on_cancel()
        self._call.cancel()

    def add_done_callback(self, callback: Callable[[], None]) -> None:
        """Calls callback (on any thread) once the call has ended, however it ended."""
        self._call.add_done_callback(lambda _: callback())

    def wait_sender(self, timeout: float) -> None:
        """Waits up to timeout seconds for gRPC's sending thread to leave the frames (after cancel())."""
        sender = self._source.sender
        if sender is not None and sender is not threading.current_thread():
            sender.join(timeout)
        self._source.close()

    def __enter__(self) -> ResponseStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()



class LiveStream(ResponseStream):
    """A live-mode stream fed by its caller: put() each frame as it comes (from any thread), finish() when
    there are no more, and iterate the responses as for any ResponseStream (EmotionClient.live_stream)."""

    def __init__(self, call: grpc.Call, window: _LiveWindow, source: _FrameRequests) -> None:
        super().__init__(call, window.responses(call), source, on_cancel=window.close)
        self._window = window

    def put(self, frame: FrameInput) -> int | None:
        """Sends frame as soon as fewer than max_in_flight frames are unanswered; until then it waits, and a
        frame put while it waits replaces it. Returns the id of the frame this one replaced (listed in the
        next response's skipped_frame_ids), None when none waited. Arrays, bytes and paths get ids 0, 1, 2...
        in the order put; a StreamAnnotateRequest keeps its own. A frame put after finish(), cancel() or the
        call's end is dropped at once and its own id returned."""
        return self._window.put(frame)

    def finish(self) -> None:
        """No more frames: the stream half-closes once the waiting frame is sent, and the server ends the
        call after answering what it holds."""
        self._window.finish()


def open_live_stream(
    stub: emotion_pb2_grpc.EmotionServiceStub,
    *,
    max_in_flight: int,
    options: emotion_pb2.AnnotateOptions,
    jpeg_quality: int | None,
    metadata: Sequence[tuple[str, str]],
    frames: Iterable[FrameInput] | None = None,
) -> LiveStream:
    """One live-mode StreamAnnotate call on stub (see EmotionClient.live_stream, which checks the
    arguments): arrays, bytes and paths go with options, encoded at jpeg_quality; metadata goes with the
    call. frames, when given, are read on gRPC's sending thread as fast as they come, and finish() follows
    their end."""
    source = _FrameRequests(() if frames is None else frames, options, jpeg_quality)
    window = _LiveWindow(source, max_in_flight)
    requests = window.requests() if frames is None else window.read_requests()
    call = stub.StreamAnnotate(requests, metadata=metadata)
    return LiveStream(call, window, source)


def open_stream(
    stub: emotion_pb2_grpc.EmotionServiceStub,
    frames: Iterable[FrameInput],
    *,
    mode: StreamMode,
    max_in_flight: int,
    options: emotion_pb2.AnnotateOptions,
    jpeg_quality: int | None,
    metadata: Sequence[tuple[str, str]],
) -> ResponseStream:
    """One StreamAnnotate call on stub for frames, in mode (see EmotionClient.stream, which checks the
    arguments): arrays, bytes and paths go with options, encoded at jpeg_quality; metadata goes with the call.
    """
    if mode == "live":
        return open_live_stream(stub, max_in_flight=max_in_flight, options=options, jpeg_quality=jpeg_quality,
                                metadata=metadata, frames=frames)
    source = _FrameRequests(frames, options, jpeg_quality)
    window = _InOrderWindow(source, max_in_flight)
    call = stub.StreamAnnotate(window.requests(), metadata=metadata)
    return ResponseStream(call, window.responses(call), source, on_cancel=window.close)
