"""Reading image and video files frame by frame, and writing annotated copies, for the offline tools.

The input kind is decided by content, never by the file name: a file that starts like a JPEG, PNG, BMP
or WebP is a still image and goes through the server's own decoder (`decode.py`: header size check, a
damaged or truncated file is refused); anything else is opened as a video (or an animated image such as
a GIF) by OpenCV's FFmpeg backend. Video frames carry the time the container gives them
(CAP_PROP_POS_MSEC), so variable-frame-rate files keep their timing.

OpenCV writes video only, so an annotated copy gets the source's audio afterwards (add_audio): PyAV, with
the FFmpeg of its wheel, copies the audio packets into the written file without re-encoding the video.

File names are any bytes the system allows, not only UTF-8 (Latin-1 names from old zips and camera
cards): OpenCV cannot take such a name (it crashes on one), so it is never given a path. Images are read
and written by Python (cv2.imdecode, cv2.imencode), videos read from an open Python file object
(capture_from_file) and written under a temporary UTF-8 name beside the output, renamed when complete
(VideoOutput). PyAV takes any name.
"""

from __future__ import annotations

import heapq
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import cv2
import numpy as np

if TYPE_CHECKING:  # PyAV loads FFmpeg: only add_audio imports it
    import av

from ferstream.pipeline.decode import EncodedImage, check_size, decode

# The formats decode.py reads, by their first bytes (JPEG SOI, the PNG signature, BMP "BM", RIFF....WEBP).
_IMAGE_SIGNATURES = (b"\xff\xd8", b"\x89PNG\r\n\x1a\n", b"BM")
# Video containers the annotated copy may be written as, with the codec for each. MP4 and QuickTime files
# are H.264, written by PyAV (libx264 in its wheel's FFmpeg): what browsers, phones and players play;
# OpenCV's bundled FFmpeg would write them only as MPEG-4 Part 2 ("mp4v"), which browsers refuse.
VIDEO_CODECS = {".avi": "MJPG", ".mkv": "MJPG", ".mp4": "h264", ".m4v": "h264", ".mov": "h264"}
# H.264 quality: x264's constant rate factor (0-51, lower is better; 18-23 looks like the source).
H264_CRF = 20
IMAGE_WRITE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# Files that record no frame rate are written at this one.
FALLBACK_FPS = 25.0


class MediaError(Exception):
    """A file cannot be read or written; the message is one line for people and names the file."""


@dataclass(frozen=True)
class Frame:
    """One frame of an input: its 0-based index, BGR uint8 pixels (H, W, 3), its time in the source in
    milliseconds (None for a still image), and a still image's file bytes (None for a video frame), which
    a server is sent as they are."""

    index: int
    image: np.ndarray
    time_ms: float | None
    encoded: bytes | None = None


@dataclass(frozen=True)
class Media:
    """An opened input: whether it is a still image, and its frame rate (FALLBACK_FPS when unknown)."""

    path: Path
    still: bool
    fps: float


def quiet_opencv_logs() -> None:
    """Silences OpenCV's and FFmpeg's own log lines (a broken file gets several), so that a command says
    what went wrong once, in its own words. Call before the first video is opened."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET; read when FFmpeg first opens
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_FATAL)


def is_still_image(head: bytes) -> bool:
    """True when the bytes start like a JPEG, PNG, BMP or WebP file: the formats the server decodes."""
    return head.startswith(_IMAGE_SIGNATURES) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def check_input(path: Path) -> None:
    """MediaError unless path is a readable file: a missing path, a folder and an unreadable file each
    get their own message."""
    if path.is_dir():
        raise MediaError(f"{path}: is a folder; give one image or video file")
    if not path.exists():
        raise MediaError(f"{path}: no such file")
    if not os.access(path, os.R_OK):
        raise MediaError(f"{path}: cannot read it (permission denied)")


def output_clash(inputs: Sequence[Path], outputs: Mapping[str, Path | str | None]) -> str | None:
    """Why outputs ({option: path}; None and "-" for stdout left out) cannot be written (one line): one
    names an input, which it would replace, or two name the same file, which would mix them. None when
    every output is a file of its own. Paths are compared resolved (links followed)."""
    taken: dict[Path, str] = {path.resolve(): "an input" for path in inputs}
    for option, path in outputs.items():
        if path is None or str(path) == "-":
            continue
        real = Path(path).resolve()
        if (owner := taken.get(real)) == "an input":
            return f"{option} {path} is an input file: it would be overwritten; choose another path"
        if owner is not None:
            return f"{owner} and {option} both name {path}: give each its own file"
        taken[real] = option
    return None


def probe(path: Path) -> Media:
    """What the input is, by content; MediaError when it is neither a readable image nor a video."""
    check_input(path)
    with open(path, "rb") as stream:
        head = stream.read(16)
    if is_still_image(head):
        return Media(path, True, FALLBACK_FPS)
    with open_capture(path) as capture:
        if not capture.isOpened() or not capture.grab():
            raise MediaError(f"{path}: not a readable image or video")
        fps = capture.get(cv2.CAP_PROP_FPS)
    return Media(path, False, fps if 0 < fps < 1000 else FALLBACK_FPS)


def capture_from_file(stream: BinaryIO) -> cv2.VideoCapture:
    """An OpenCV capture (FFmpeg's, not OpenCV's own AVI reader, which prints to stderr) reading the video or
    animated image in stream, a file opened "rb": any file name works. OpenCV does not keep stream alive:
    the caller holds it open until the capture is released (it crashes otherwise). Check isOpened(): False
    for a file FFmpeg cannot read."""
    try:
        return cv2.VideoCapture(stream, cv2.CAP_FFMPEG, [])
    except cv2.error:  # no demuxer takes the stream
        return cv2.VideoCapture()


@contextmanager
def open_capture(path: Path) -> Iterator[cv2.VideoCapture]:
    """capture_from_file of the file at path, released and closed at the end of the block. OSError when
    the file cannot be opened."""
    with open(path, "rb") as stream:
        capture = capture_from_file(stream)
        try:
            yield capture
        finally:
            capture.release()


def read_frames(media: Media, max_pixels: int) -> Iterator[Frame]:
    """Every frame of the input, in order.

    A still image is one frame decoded exactly as the server decodes it: FrameError (BadInput, TooLarge)
    for a damaged, truncated or oversized file. Video frames over max_pixels raise TooLarge.
    """
    if media.still:
        data = media.path.read_bytes()
        yield Frame(0, decode(EncodedImage(data), max_pixels), None, data)
        return
    with open_capture(media.path) as capture:
        index = 0
        while True:
            grabbed, image = capture.read()
            if not grabbed:
                return
            check_size(image.shape[1], image.shape[0], max_pixels)
            # After read(), the position is the time stamp of the frame just decoded.
            yield Frame(index, image, capture.get(cv2.CAP_PROP_POS_MSEC))
            index += 1


def default_output(media: Media) -> Path:
    """Where the annotated copy goes when no --out is given: beside the input, ".annotated" before the suffix.

    photo.jpg -> photo.annotated.jpg, clip.mp4 -> clip.annotated.mp4. An input whose suffix cannot be
    written (clip.gif, a JPEG named "photo") keeps its whole name: clip.gif.annotated.avi,
    photo.annotated.jpg. So clip.gif and clip.avi, or photo.png and photo.jpg, never share an output.
    """
    suffix = media.path.suffix.lower()
    writable = IMAGE_WRITE_SUFFIXES if media.still else tuple(VIDEO_CODECS)
    if suffix in writable:
        return media.path.with_name(f"{media.path.stem}.annotated{media.path.suffix}")
    return media.path.with_name(f"{media.path.name}.annotated{'.jpg' if media.still else '.avi'}")


def write_image(path: Path, image: np.ndarray) -> None:
    """Writes a BGR image; the format follows path's suffix. MediaError when it cannot be written."""
    if path.suffix.lower() not in IMAGE_WRITE_SUFFIXES:
        raise MediaError(f"{path}: an image must be saved as one of {', '.join(IMAGE_WRITE_SUFFIXES)}")
    try:
        encoded, data = cv2.imencode(path.suffix.lower(), image)
    except cv2.error:
        encoded = False
    if not encoded:
        raise MediaError(f"{path}: cannot encode the image as {path.suffix}")
    try:
        path.write_bytes(data.tobytes())
    except OSError as error:
        raise MediaError(f"{path}: cannot write an image there ({error.strerror})") from None


class H264Writer:
    """cv2.VideoWriter's write() and release() for BGR frames of one size, written as H.264 (yuv420p, which
    every player decodes; an odd width or height gets one black column or row, as yuv420p needs even ones)
    at a constant fps, by PyAV. MediaError when the file cannot be written."""

    def __init__(self, path: Path, size: tuple[int, int], fps: float) -> None:
        import av
        from fractions import Fraction

        self._path = path
        width, height = size
        self._padding = ((0, height % 2), (0, width % 2), (0, 0))
        try:
            self._container = av.open(str(path), "w", options={"movflags": "+faststart"})
            self._stream = self._container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            self._stream.width, self._stream.height = width + width % 2, height + height % 2
            self._stream.pix_fmt = "yuv420p"
            self._stream.options = {"crf": str(H264_CRF)}
        except (av.FFmpegError, OSError, ValueError) as error:
            raise MediaError(f"{path}: cannot write an H.264 video there ({' '.join(str(error).split())})") from None
        self._closed = False

    def write(self, image: np.ndarray) -> None:
        """Appends one (height, width, 3) BGR uint8 frame."""
        import av

        frame = av.VideoFrame.from_ndarray(np.pad(image, self._padding) if any(self._padding[0] + self._padding[1])
                                           else image, format="bgr24")
        try:
            self._container.mux(self._stream.encode(frame))
        except (av.FFmpegError, OSError) as error:
            raise MediaError(f"{self._path}: cannot write the video ({' '.join(str(error).split())})") from None

    def release(self) -> None:
        """Writes the frames still in the encoder and closes the file; again, does nothing."""
        if self._closed:
            return
        self._closed = True
        try:
            self._container.mux(self._stream.encode(None))
        finally:
            self._container.close()


def opencv_can_name(path: Path) -> bool:
    """True when OpenCV can take path as a string: it is valid UTF-8 (no undecodable bytes)."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class VideoOutput:
    """A video file being written frame by frame; the codec follows path's suffix (VIDEO_CODECS): H.264 by
    PyAV (H264Writer), MJPG by OpenCV.

    The file is written under a temporary name in path's folder (one OpenCV can take whatever path's own
    name is); close() finishes the file and gives it path's name, discard() removes it. MediaError for an
    unknown suffix or a place that cannot be written.
    """

    def __init__(self, path: Path, size: tuple[int, int], fps: float) -> None:
        codec = VIDEO_CODECS.get(path.suffix.lower())
        if codec is None:
            raise MediaError(f"{path}: a video must be saved as one of {', '.join(VIDEO_CODECS)}")
        self.path = path
        folder = path.parent if opencv_can_name(path.parent.resolve()) else None  # None: the system's
        try:
            handle, name = tempfile.mkstemp(suffix=path.suffix.lower(), prefix=".fer-annotate-", dir=folder)
        except OSError as error:
            raise MediaError(f"{path}: cannot write a video there ({error.strerror})") from None
        os.close(handle)
        # mkstemp makes the file private (0600): give it the mode a new file gets here, as OpenCV would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(name, 0o666 & ~umask)
        self._temporary = Path(name)
        if codec == "h264":
            try:
                self._writer: cv2.VideoWriter | H264Writer = H264Writer(self._temporary, size, fps)
            except MediaError:
                self._temporary.unlink(missing_ok=True)
                raise MediaError(f"{path}: cannot write an H.264 video there") from None
            return
        self._writer = cv2.VideoWriter(name, cv2.VideoWriter_fourcc(*codec), fps, size)
        if not self._writer.isOpened():
            self.discard()
            raise MediaError(f"{path}: cannot write a {codec} video there")

    def write(self, image: np.ndarray) -> None:
        """Appends one BGR frame of the size given."""
        self._writer.write(image)

    def close(self) -> None:
        """Finishes the file and moves it to path (replacing what is there)."""
        self._writer.release()
        shutil.move(self._temporary, self.path)

    def discard(self) -> None:
        """Stops writing and removes the unfinished file."""
        self._writer.release()
        self._temporary.unlink(missing_ok=True)


def add_audio(source: Path, video: Path) -> bool:
    """Puts source's first audio stream into video (a file OpenCV wrote, video only), in place: both
    streams' packets are copied as they are, interleaved by time, into a new file that then replaces video.
    An audio codec that video's container cannot hold as it is (Opus in AVI) is re-encoded to AAC.

    Returns False, changing nothing, when source has no audio. MediaError (naming both files) when the
    audio cannot be read or written.
    """
    import av  # PyAV: loaded only when a video is written

    muxed = video.with_name(f"{video.stem}.audio{video.suffix}")
    try:
        with av.open(str(source)) as inputs:
            if not inputs.streams.audio:
                return False
        try:
            _mux(source, video, muxed, transcode=False)
        except (av.FFmpegError, ValueError):  # the container refuses the codec as it is
            _mux(source, video, muxed, transcode=True)
        os.replace(muxed, video)
    except (av.FFmpegError, ValueError, OSError) as error:
        reason = " ".join(str(error).split())
        raise MediaError(f"{video}: cannot add the audio of {source} ({reason})") from None
    finally:
        muxed.unlink(missing_ok=True)
    return True


def _mux(source: Path, video: Path, muxed: Path, transcode: bool) -> None:
    """Writes video's video stream and source's first audio stream into muxed, packets in time order; the
    audio is copied, or decoded and encoded to AAC when transcode."""
    import av

    with av.open(str(source)) as inputs, av.open(str(video)) as drawn, av.open(str(muxed), "w") as output:
        audio_in, video_in = inputs.streams.audio[0], drawn.streams.video[0]
        video_out = output.add_stream_from_template(video_in)
        if transcode:
            audio_out = output.add_stream("aac", rate=audio_in.codec_context.sample_rate,
                                          layout=audio_in.codec_context.layout)
        else:
            audio_out = output.add_stream_from_template(audio_in)
        packets = heapq.merge(_timed(drawn.demux(video_in)), _timed(inputs.demux(audio_in)),
                              key=lambda timed: timed[0])
        for _, packet in packets:
            if packet.stream is video_in:
                packet.stream = video_out
                output.mux(packet)
            elif transcode:
                for frame in packet.decode():
                    frame.pts = None  # the encoder numbers its own samples
                    output.mux(audio_out.encode(frame))
            else:
                packet.stream = audio_out
                output.mux(packet)
        if transcode:
            output.mux(audio_out.encode(None))


def _timed(packets: Iterator[av.Packet]) -> Iterator[tuple[float, av.Packet]]:
    """(decoding time in seconds, packet) of each packet that has one (not the demuxer's closing one)."""
    for packet in packets:
        if packet.dts is not None:
            yield float(packet.dts * packet.time_base), packet
