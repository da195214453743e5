"""Images in, BGR numpy frames out, refusing anything over the pixel limit before decoding it.

The dimensions of an encoded image are read from its header (JPEG SOF, PNG IHDR, BMP info header,
WebP VP8/VP8L/VP8X), so a small file that claims to be huge never reaches the decoder.

JPEGs are decoded by simplejpeg (libjpeg-turbo's TurboJPEG API): the same pixels as cv2.imdecode, which
links the same library, in about two thirds of its time (docs/performance.md#design-measurements). cv2.imdecode
still decodes everything else: a JPEG with EXIF data (cv2.imdecode turns the image as its orientation tag
says), and any JPEG simplejpeg refuses (CMYK, or damage OpenCV may read past).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

import cv2
import numpy as np
import simplejpeg

from .errors import TooLarge, invalid


class PixelFormat(enum.Enum):
    """Raw pixel layouts; the same numbers as the proto's PixelFormat enum."""

    GRAY8 = 1
    BGR8 = 2
    RGB8 = 3

    @property
    def channels(self) -> int:
        """Bytes per pixel: 1 for GRAY8, 3 for BGR8 and RGB8."""
        return 1 if self is PixelFormat.GRAY8 else 3


@dataclass(frozen=True)
class EncodedImage:
    """A JPEG, PNG, BMP or WebP file's bytes."""

    data: bytes


@dataclass(frozen=True)
class RawImage:
    """Uncompressed row-major pixels without row padding."""

    width: int
    height: int
    format: PixelFormat
    data: bytes


ImageSource = EncodedImage | RawImage | np.ndarray

# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic...); C4, C8 and CC are not.
JPEG_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
# Markers that stand alone, without a length field.
JPEG_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD9)})
JPEG_SOI = b"\xff\xd8"
JPEG_APP1 = 0xE1
EXIF_SIGNATURE = b"Exif\x00\x00"


@dataclass(frozen=True)
class JpegHeader:
    """What a JPEG's markers before its frame header say: its size in pixels and whether it has EXIF data."""

    width: int
    height: int
    # An APP1 "Exif" segment, which may carry an orientation tag.
    exif: bool


def jpeg_header(data: bytes) -> JpegHeader:
    """The size from the first start-of-frame marker, and whether an EXIF segment precedes it; BadInput
    when no frame header is found."""
    position = 2
    exif = False
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            raise invalid("damaged JPEG: expected a marker")
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in JPEG_STANDALONE_MARKERS:
            position += 2
            continue
        (length,) = struct.unpack(">H", data[position + 2:position + 4])
        if marker in JPEG_SOF_MARKERS:
            if position + 9 > len(data):
                break
            height, width = struct.unpack(">HH", data[position + 5:position + 9])
            return JpegHeader(width, height, exif)
        if marker in (0xD9, 0xDA) or length < 2:  # end of image or scan data before any frame header
            break
        exif = exif or (marker == JPEG_APP1 and data[position + 4:position + 10] == EXIF_SIGNATURE)
        position += 2 + length
    raise invalid("damaged JPEG: no frame header")


def png_dimensions(data: bytes) -> tuple[int, int]:
    """(width, height) from the IHDR chunk; BadInput when it is missing."""
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise invalid("damaged PNG: no IHDR header")
    return struct.unpack(">II", data[16:24])


def bmp_dimensions(data: bytes) -> tuple[int, int]:
    """(width, height) from the info header (OS/2 or Windows); BadInput when too short."""
    if len(data) < 26:
        raise invalid("damaged BMP: header too short")
    (header_size,) = struct.unpack("<I", data[14:18])
    if header_size == 12:  # OS/2 BITMAPCOREHEADER
        return struct.unpack("<HH", data[18:22])
    width, height = struct.unpack("<ii", data[18:26])
    return abs(width), abs(height)  # a negative height means rows stored top-down


def webp_dimensions(data: bytes) -> tuple[int, int]:
    """(width, height) from the VP8X, VP8L or VP8 header; BadInput otherwise."""
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    raise invalid("damaged WebP: no VP8, VP8L or VP8X header")


def encoded_dimensions(data: bytes) -> tuple[int, int]:
    """(width, height) from the header; FrameError for anything that is not JPEG, PNG, BMP or WebP."""
    if data.startswith(JPEG_SOI):
        header = jpeg_header(data)
        return header.width, header.height
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return png_dimensions(data)
    if data.startswith(b"BM"):
        return bmp_dimensions(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return webp_dimensions(data)
    raise invalid("not a JPEG, PNG, BMP or WebP image")


def check_size(width: int, height: int, max_pixels: int) -> None:
    """BadInput for an empty image, TooLarge for more than max_pixels pixels."""
    if width <= 0 or height <= 0:
        raise invalid(f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise TooLarge(f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}")


def decode_turbo_jpeg(data: bytes) -> np.ndarray | None:
    """(H, W, 3) uint8 BGR pixels of a JPEG by simplejpeg, which ignores EXIF orientation; None for a file
    it refuses (CMYK, damage), which cv2.imdecode then decodes or refuses."""
    try:
        return simplejpeg.decode_jpeg(data, colorspace="BGR")
    except ValueError:
        return None


def decode_encoded(image: EncodedImage, max_pixels: int) -> np.ndarray:
    """A BGR uint8 frame from a JPEG/PNG/BMP/WebP file, its size checked from the header first."""
    if not image.data:
        raise invalid("empty image")
    jpeg = jpeg_header(image.data) if image.data.startswith(JPEG_SOI) else None
    width, height = (jpeg.width, jpeg.height) if jpeg else encoded_dimensions(image.data)
    check_size(width, height, max_pixels)
    # With EXIF data the orientation tag may turn the image, which only cv2.imdecode applies.
    frame = decode_turbo_jpeg(image.data) if jpeg and not jpeg.exif else None
    if frame is None:
        frame = cv2.imdecode(np.frombuffer(image.data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if frame is None:
        raise invalid(f"could not decode the {width}x{height} image")
    return frame


def decode_raw(image: RawImage, max_pixels: int) -> np.ndarray:
    """A BGR uint8 frame from raw pixels (a view of the bytes for BGR8, a converted copy otherwise)."""
    check_size(image.width, image.height, max_pixels)
    expected = image.width * image.height * image.format.channels
    if len(image.data) != expected:
        raise invalid(f"raw {image.format.name} {image.width}x{image.height} needs {expected} bytes, "
                      f"got {len(image.data)}")
    pixels = np.frombuffer(image.data, dtype=np.uint8)
    if image.format is PixelFormat.GRAY8:
        return cv2.cvtColor(pixels.reshape(image.height, image.width), cv2.COLOR_GRAY2BGR)
    pixels = pixels.reshape(image.height, image.width, 3)
    return cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR) if image.format is PixelFormat.RGB8 else pixels


def decode(source: ImageSource, max_pixels: int) -> np.ndarray:
    """A BGR uint8 frame; BadInput for bad, empty or oversized input."""
    if isinstance(source, EncodedImage):
        return decode_encoded(source, max_pixels)
    if isinstance(source, RawImage):
        return decode_raw(source, max_pixels)
    check_size(source.shape[1], source.shape[0], max_pixels)
    return source
