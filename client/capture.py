"""Frame sources (camera, video file, still image) and the capture thread that keeps only the newest frame.

A slow consumer never makes frames pile up: the capture thread overwrites the single slot in
LatestFrame, and the consumer counts the sequence numbers it never saw as dropped. A still image is put
there once, with its file's bytes, so that it is sent as it is on disk and only when something changes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np

# Files that do not record a frame rate are played at this one.
FALLBACK_FPS = 25.0


class SourceError(Exception):
    """The source cannot be opened or read; the message is meant for people."""


class FrameSource:
    """Frames from a camera, a video file or a still image; read() returns None at the end."""

    description: str
    fps: float
    is_live: bool  # a camera paces itself; files are paced by the reader
    # Time of the frame read() returned last, in ms, as the container records it; None for a still image.
    time_ms: float | None = None
    # A still image's file, byte for byte (sent as it is, so that it gets the answer it gets everywhere
    # else); None for a camera or a video, whose frames are sent JPEG-encoded.
    encoded: bytes | None = None

    def read(self) -> np.ndarray | None:
        raise NotImplementedError

    def rewind(self) -> bool:
        """Starts over; False when the source cannot (a camera)."""
        return False

    def close(self) -> None:
        pass


class _CaptureSource(FrameSource):
    def __init__(self, capture: cv2.VideoCapture, description: str, fps: float, is_live: bool,
                 stream: BinaryIO | None = None) -> None:
        self._capture = capture
        self._stream = stream  # the open file capture reads, when it reads one (kept alive until close)
        self.description = description
        self.fps = fps
        self.is_live = is_live
        self.frame_count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if not is_live else 0

    def read(self) -> np.ndarray | None:
        ok, frame = self._capture.read()
        self.time_ms = self._capture.get(cv2.CAP_PROP_POS_MSEC) if ok else None
        return frame if ok else None

    def rewind(self) -> bool:
        return not self.is_live and self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)

    def close(self) -> None:
        self._capture.release()
        if self._stream is not None:
            self._stream.close()


class _StillImageSource(FrameSource):
    def __init__(self, image: np.ndarray, encoded: bytes, description: str) -> None:
        self._image = image
        self._delivered = False
        self.description = description
        self.encoded = encoded
        self.fps = FALLBACK_FPS
        self.is_live = False
        self.frame_count = 1

    def read(self) -> np.ndarray | None:
        if self._delivered:
            return None
        self._delivered = True
        return self._image

    def rewind(self) -> bool:
        self._delivered = False
        return True


def open_source(spec: str) -> FrameSource:
    """'0' (or any integer) opens that camera; otherwise spec is an image or video file path."""
    if spec.strip().isdigit():
        return _open_camera(int(spec))
    from ferstream.annotate.media import capture_from_file, is_still_image, opencv_can_name

    path = Path(spec).expanduser()
    if not path.is_file():
        raise SourceError(f"{spec}: no such file")
    # OpenCV crashes on a name that is not UTF-8 (Latin-1 bytes from a camera card): such a file is read
    # by Python and handed to OpenCV as bytes or an open file.
    named = opencv_can_name(path)
    try:
        with open(path, "rb") as file:
            head = file.read(16)
        still = cv2.haveImageReader(str(path)) if named else is_still_image(head)
        if still:
            data = path.read_bytes()
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                raise SourceError(f"{spec}: not a readable image")
            return _StillImageSource(image, data, path.name)
        stream = None if named else open(path, "rb")
    except OSError as error:
        raise SourceError(f"{spec}: cannot read it ({error.strerror})") from None
    capture = cv2.VideoCapture(str(path)) if stream is None else capture_from_file(stream)
    first_frame_readable = capture.isOpened() and capture.read()[0]
    if not first_frame_readable:
        capture.release()
        if stream is not None:
            stream.close()
        raise SourceError(f"{spec}: not a readable video or image")
    capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
    fps = capture.get(cv2.CAP_PROP_FPS)
    return _CaptureSource(capture, path.name, fps if 0 < fps < 1000 else FALLBACK_FPS, is_live=False,
                          stream=stream)


def _open_camera(index: int) -> FrameSource:
    capture = cv2.VideoCapture(index)
    if not capture.isOpened() or not capture.read()[0]:
        capture.release()
        raise SourceError(f"camera {index}: cannot open it (no such device, busy, or no permission)")
    fps = capture.get(cv2.CAP_PROP_FPS)
    return _CaptureSource(capture, f"camera {index}", fps if 0 < fps < 1000 else 30.0, is_live=True)


def frames(source: FrameSource) -> Iterator[np.ndarray]:
    """Every frame of the source once, as fast as it can be read (for offline processing)."""
    while (frame := source.read()) is not None:
        yield frame


@dataclass(frozen=True)
class CapturedFrame:
    seq: int  # 1, 2, 3... in capture order; gaps seen by a consumer are frames it dropped
    image: np.ndarray
    captured_at: float  # time.monotonic()
    encoded: bytes | None = None  # a still image's file bytes (FrameSource.encoded), None for other frames


class LatestFrame:
    """A one-frame mailbox: put() replaces, wait_newer() blocks until something newer than a seq arrives."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._newest: CapturedFrame | None = None
        self._seq = 0

    def put(self, image: np.ndarray, encoded: bytes | None = None) -> None:
        """Makes image (with a still image's file bytes, if given) the newest frame."""
        with self._changed:
            self._seq += 1
            self._newest = CapturedFrame(self._seq, image, time.monotonic(), encoded)
            self._changed.notify_all()

    def newest(self) -> CapturedFrame | None:
        with self._changed:
            return self._newest

    def wait_newer(self, seq: int, timeout: float) -> CapturedFrame | None:
        with self._changed:
            self._changed.wait_for(lambda: self._seq > seq, timeout=timeout)
            return self._newest if self._seq > seq else None


class CaptureThread(threading.Thread):
    """Reads the source into a LatestFrame, at the file's own frame rate, looping videos forever; a still
    image goes in once (the session sends it again only when the options or the connection change)."""

    def __init__(
        self, source: FrameSource, latest: LatestFrame, on_error: Callable[[str], None] = lambda message: None
    ) -> None:
        super().__init__(name="fer-capture", daemon=True)
        self._source = source
        self._latest = latest
        self._on_error = on_error
        self._stop_requested = threading.Event()

    def stop(self) -> None:
        self._stop_requested.set()

    def run(self) -> None:
        period = 1.0 / self._source.fps
        next_due = time.monotonic()
        try:
            while not self._stop_requested.is_set():
                frame = self._source.read()
                if frame is None and self._source.rewind():
                    frame = self._source.read()
                if frame is None:
                    self._on_error(f"{self._source.description}: no more frames")
                    return
                self._latest.put(frame, self._source.encoded)
                if self._source.encoded is not None:
                    self._stop_requested.wait()
                    return
                if not self._source.is_live:
                    next_due = max(next_due + period, time.monotonic() - period)
                    self._stop_requested.wait(max(0.0, next_due - time.monotonic()))
        finally:
            self._source.close()
