"""Image headers and decoding: sizes read before decoding, bad bytes refused with INVALID_ARGUMENT."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from ferstream.pipeline.decode import (EncodedImage, PixelFormat, RawImage, decode, decode_turbo_jpeg,
                                      encoded_dimensions)
from ferstream.pipeline.errors import BadInput, FrameError, TooLarge


def noise(width: int, height: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".bmp", ".webp"])
@pytest.mark.parametrize("width,height", [(37, 21), (640, 480)])
def test_header_dimensions_match_the_encoder(suffix: str, width: int, height: int) -> None:
    ok, data = cv2.imencode(suffix, noise(width, height))
    assert ok
    assert encoded_dimensions(data.tobytes()) == (width, height)


def test_lossless_webp_header() -> None:
    ok, data = cv2.imencode(".webp", noise(50, 30), [cv2.IMWRITE_WEBP_QUALITY, 101])
    assert ok and data.tobytes()[12:16] == b"VP8L"
    assert encoded_dimensions(data.tobytes()) == (50, 30)


def test_progressive_jpeg_header() -> None:
    ok, data = cv2.imencode(".jpg", noise(123, 45), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert ok
    assert encoded_dimensions(data.tobytes()) == (123, 45)


def with_orientation(jpeg: bytes, orientation: int) -> bytes:
    """jpeg with an EXIF APP1 segment right after its SOI marker holding one tag, Orientation (0x0112)."""
    entry = struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0)  # tag, SHORT, count 1, value, padding
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + entry + struct.pack("<I", 0)
    payload = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", 2 + len(payload)) + payload + jpeg[2:]


@pytest.mark.parametrize("params", [[], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1],
                                    [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]],
                         ids=["baseline 4:2:0", "progressive", "4:4:4"])
def test_jpeg_pixels_are_opencvs(params: list[int], photo: bytes) -> None:
    """The JPEG decoder the frame path uses gives exactly cv2.imdecode's pixels."""
    frame = cv2.imdecode(np.frombuffer(photo, np.uint8), cv2.IMREAD_COLOR)
    jpeg = cv2.imencode(".jpg", frame, params)[1].tobytes()
    expected = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert decode_turbo_jpeg(jpeg) is not None, "simplejpeg, not the cv2.imdecode fallback, decodes it"
    assert np.array_equal(decode(EncodedImage(jpeg), 1 << 24), expected)
    grey = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))[1].tobytes()
    assert decode_turbo_jpeg(grey) is not None
    assert np.array_equal(decode(EncodedImage(grey), 1 << 24),
                          cv2.imdecode(np.frombuffer(grey, np.uint8), cv2.IMREAD_COLOR))


def test_jpeg_exif_orientation_is_applied() -> None:
    """A phone photo stored sideways (EXIF orientation 6: turn 90 degrees clockwise) comes out upright."""
    stored = noise(64, 32)
    jpeg = cv2.imencode(".jpg", stored, [cv2.IMWRITE_JPEG_QUALITY, 100])[1].tobytes()
    plain = decode(EncodedImage(jpeg), 1 << 20)
    turned = decode(EncodedImage(with_orientation(jpeg, 6)), 1 << 20)
    assert plain.shape == (32, 64, 3) and turned.shape == (64, 32, 3)
    assert np.array_equal(turned, cv2.rotate(plain, cv2.ROTATE_90_CLOCKWISE))


def png_claiming(width: int, height: int) -> bytes:
    """A PNG signature and IHDR claiming width x height, followed by junk instead of pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + b"junk" * 10


def test_oversized_dimensions_are_refused_from_the_header() -> None:
    # The body is junk, so only the header check can produce this message.
    with pytest.raises(TooLarge, match="100000x100000"):
        decode(EncodedImage(png_claiming(100_000, 100_000)), max_pixels=4096 * 4096)


def test_real_image_over_the_limit_is_refused() -> None:
    ok, data = cv2.imencode(".jpg", noise(400, 300))
    with pytest.raises(FrameError, match="limit"):
        decode(EncodedImage(data.tobytes()), max_pixels=400 * 300 - 1)
    assert decode(EncodedImage(data.tobytes()), max_pixels=400 * 300).shape == (300, 400, 3)


@pytest.mark.parametrize("data", [b"", b"hello", b"\xff\xd8\xff\xe0garbage", png_claiming(10, 10)[:20]])
def test_bad_bytes_are_invalid_argument(data: bytes) -> None:
    with pytest.raises(BadInput):
        decode(EncodedImage(data), max_pixels=1 << 24)


def test_undecodable_body_after_a_valid_header() -> None:
    with pytest.raises(FrameError, match="could not decode"):
        decode(EncodedImage(png_claiming(10, 10)), max_pixels=1 << 24)


def test_raw_formats_decode_to_bgr() -> None:
    bgr = noise(8, 6)
    rgb = bgr[:, :, ::-1].copy()
    assert np.array_equal(decode(RawImage(8, 6, PixelFormat.BGR8, bgr.tobytes()), 1 << 20), bgr)
    assert np.array_equal(decode(RawImage(8, 6, PixelFormat.RGB8, rgb.tobytes()), 1 << 20), bgr)
    grey = decode(RawImage(8, 6, PixelFormat.GRAY8, bytes(range(48))), 1 << 20)
    assert grey.shape == (6, 8, 3) and grey[5, 7, 0] == 47


def test_raw_length_mismatch_is_refused() -> None:
    with pytest.raises(FrameError, match="needs 144 bytes, got 143"):
        decode(RawImage(8, 6, PixelFormat.BGR8, bytes(143)), 1 << 20)
