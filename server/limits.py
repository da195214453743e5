"""Request size limits that agree: the gRPC message limit follows from the pixel limit.

gRPC refuses a message over its receive limit by ending the whole call (RESOURCE_EXHAUSTED), so a stream
would lose every frame after one that is too large. The message limit is therefore set so that every
frame the pixel limit admits fits, raw frames included:

    message limit = max_pixels x 3 bytes (BGR8/RGB8, the largest raw format) + 64 KiB

With the default --max-pixels of 4096² that is 50,331,648 + 65,536 = 50,397,184 bytes (48.1 MiB).
Encoded images are smaller than their raw pixels except in exotic forms (16-bit or alpha PNG, 32-bit
BMP); such a file over the limit still ends its call, and clients check the size before sending
(ferstream.client.limits). The arithmetic and the defaults (message_limit, DEFAULT_MAX_MESSAGE_BYTES) live
in pipeline/settings.py, which the client and the gateway import too; this module adds the server's check
that its two flags agree.
"""

from __future__ import annotations

from ferstream.pipeline.settings import MESSAGE_OVERHEAD_BYTES, RAW_BYTES_PER_PIXEL, message_limit


def largest_raw_pixels(max_message_bytes: int) -> int:
    """The most pixels a raw BGR/RGB frame may have to fit a message of max_message_bytes (0 if none fits)."""
    return max(0, (max_message_bytes - MESSAGE_OVERHEAD_BYTES) // RAW_BYTES_PER_PIXEL)


def check_limits_agree(max_pixels: int, max_message_bytes: int) -> None:
    """ValueError (naming both flags and the arithmetic) when a raw frame within max_pixels would not fit."""
    needed = message_limit(max_pixels)
    if max_message_bytes < needed:
        raise ValueError(
            f"--max-message-bytes {max_message_bytes} cannot carry a raw frame of --max-pixels {max_pixels} "
            f"({max_pixels} x {RAW_BYTES_PER_PIXEL} bytes + {MESSAGE_OVERHEAD_BYTES} = {needed}); such a frame "
            f"would end its whole stream. Raise --max-message-bytes to {needed} or more, or lower --max-pixels "
            f"to {largest_raw_pixels(max_message_bytes)} or less")
