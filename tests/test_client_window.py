"""The client's flow-control windows (client/window.py), on their own: what frees a place, waiting for
room across threads, close(), and live mode's newest frame replacing a waiting one. Their users are tested
with real servers: both stream modes in test_client_library.py, fer-web's live page in test_web.py, the
app's session in test_client_reconnect.py, fer-bench in test_bench.py."""

from __future__ import annotations

import threading
import time

import pytest

from ferstream.client.window import InFlightWindow, NewestFrameWindow


def test_a_full_window_waits_and_an_answer_frees_its_frame() -> None:
    window: InFlightWindow[str] = InFlightWindow(2)
    window.sent(1, "one")
    assert window.has_room()
    window.sent(2, "two")
    assert not window.has_room() and len(window) == 2
    assert window.wait_for_room(timeout=0.05) is False
    assert window.answered(1) == "one"
    assert window.has_room() and window.wait_for_room(timeout=0.05) is True


def test_skipped_and_older_frames_leave_the_window() -> None:
    """Skipped frames get no answer of their own, and an answer means every frame sent before it is done."""
    window: InFlightWindow[None] = InFlightWindow(4)
    for frame_id in (1, 2, 3, 4):
        window.sent(frame_id)
    window.answered(4, skipped=[])
    assert len(window) == 0
    for frame_id in (5, 6, 7):
        window.sent(frame_id)
    window.answered(99, skipped=[6])  # an id never sent frees only what is listed as skipped
    assert len(window) == 2


def test_a_re_sent_frame_goes_to_the_end_of_the_send_order() -> None:
    """File mode re-sends a skipped frame: an answer to a frame sent before the re-send must not free it."""
    window: InFlightWindow[None] = InFlightWindow(3)
    for frame_id in (1, 2, 3):
        window.sent(frame_id)
    window.answered(2, skipped=[1])
    window.sent(1)  # re-sent after 3
    window.answered(3)
    assert len(window) == 1  # frame 1 is still awaited


def test_an_answer_on_another_thread_wakes_the_sender() -> None:
    window: InFlightWindow[None] = InFlightWindow(1)
    window.sent(1)
    timer = threading.Timer(0.2, window.answered, args=(1,))
    started = time.monotonic()
    timer.start()
    assert window.wait_for_room(timeout=10.0) is True
    assert 0.15 < time.monotonic() - started < 5.0
    timer.join()


def test_close_wakes_a_waiting_sender_and_refuses_room_from_then_on() -> None:
    window: InFlightWindow[None] = InFlightWindow(1)
    window.sent(1)
    threading.Timer(0.2, window.close).start()
    assert window.wait_for_room(timeout=10.0) is False
    window.clear()
    assert window.has_room() and window.wait_for_room(timeout=0.01) is False


def test_a_window_needs_room_for_one_frame() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        InFlightWindow(0)


def test_the_newest_frame_replaces_a_waiting_one_and_goes_when_there_is_room() -> None:
    window: NewestFrameWindow[str] = NewestFrameWindow(1)
    assert window.put(1, "one") is None
    assert window.take() == (1, "one") and len(window) == 1
    assert window.put(2, "two") is None
    assert window.put(3, "three") == (2, "two")  # replaced while the window was full
    assert window.take(block=False) is None  # no room: it waits
    taken: list = []
    sender = threading.Thread(target=lambda: taken.append(window.take()))
    sender.start()
    sender.join(0.2)
    assert sender.is_alive() and not taken  # no room until frame 1 is answered
    assert window.answered(1) == "one"
    sender.join(5)
    assert taken == [(3, "three")]


def test_a_finished_window_sends_the_waiting_frame_then_ends() -> None:
    window: NewestFrameWindow[str] = NewestFrameWindow(2)
    window.put(1, "one")
    window.finish()
    assert window.put(2, "two") == (2, "two")  # after finish() a frame is dropped at once
    assert window.take() == (1, "one")
    assert window.take() is None


def test_close_drops_the_waiting_frame_and_wakes_the_sender() -> None:
    window: NewestFrameWindow[str] = NewestFrameWindow(1)
    window.put(1, "one")
    window.take()
    window.put(2, "two")
    taken: list = []
    sender = threading.Thread(target=lambda: taken.append(window.take()))
    sender.start()
    window.close()
    sender.join(5)
    assert taken == [None] and window.closed
