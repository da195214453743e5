"""The client's side of the message limit: a request too large for the server is refused before it is sent.

gRPC ends the whole call when one message exceeds the server's receive limit, so a stream would lose every
frame after it. fer-server's limit follows from its pixel limit (pipeline/settings.py: message_limit): by default
50,397,184 bytes, which carries any raw frame of up to 4096 x 4096 pixels.
"""

from __future__ import annotations

from google.protobuf.message import Message

from ferstream.pipeline.settings import DEFAULT_MAX_MESSAGE_BYTES


class FrameTooLarge(ValueError):
    """This request is larger than the server accepts; nothing was sent."""


def check_request_size(request: Message, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
    """FrameTooLarge (one line naming both sizes and what to do) when request would exceed max_message_bytes.

    request: an AnnotateRequest or StreamAnnotateRequest; its serialised size is computed, not serialised.
    max_message_bytes: the server's --max-message-bytes (default: fer-server's default).
    """
    size = request.ByteSize()
    if size > max_message_bytes:
        raise FrameTooLarge(
            f"the frame's request is {size} bytes, more than the server's {max_message_bytes} "
            "(fer-server --max-message-bytes); send it JPEG-encoded or smaller")
