"""The parallel frame path of a real server: detection workers, cross-stream batches, deadlines, order.

- two streams' crops share ONE classifier call (each answer's batch_faces and the batch histograms say so);
- the server itself drops a job whose caller stopped waiting, before decoding it;
- under a pool of detection workers each stream's answers keep their order, every frame sent is
  answered or reported skipped exactly once, and skipped ids come with the frame that replaced them.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from pathlib import Path

import grpc
import pytest

from ferstream.pipeline.detectors import load_detectors
from ferstream.pipeline.framepath import load_frame_path
from ferstream.server.metrics import ServerMetrics
from ferstream.server.status import CallError
from ferstream.server.workers import FrameWorkers
from ferstream.v1 import emotion_pb2 as pb
from ferstream.v1 import emotion_pb2_grpc as pb_grpc
from helpers import metrics_url, scrape, stream_frame

THREE_FACES = "2008_002506.jpg"
TWO_FACES = "2008_001009.jpg"
# Long enough that a batch surely waits for the other stream's frame, which is being detected at the same time.
BATCH_WAIT_MS = 3000






@pytest.fixture(scope="module")
def batching_server(fer_server_factory, fer_models_dir: Path):
    return fer_server_factory("--models-dir", str(fer_models_dir), "--detect-workers", "2", "--max-delay-ms",
                              str(BATCH_WAIT_MS), "--metrics-port", "0")


def test_two_streams_share_one_classifier_call(batching_server, lockstep_stream, faces_dir: Path) -> None:
    photos = [(faces_dir / name).read_bytes() for name in (THREE_FACES, TWO_FACES)]
    url = metrics_url(batching_server)
    with grpc.insecure_channel(batching_server.address) as channel:
        stub = pb_grpc.EmotionServiceStub(channel)
        streams = [lockstep_stream(stub) for _ in photos]
        # First frames one after the other: both streams are open and their detectors warm.
        face_counts = [len(stream.send(stream_frame(1, photo)).faces) for stream, photo in zip(streams, photos)]
        assert face_counts == [3, 2]
        # A batch waits only for frames already submitted, so the two frames must reach the server while
        # the other is still being detected; on a loaded machine one round can miss that, so a few rounds
        # are allowed and one of them must share its call.
        for frame_id in range(2, 7):
            before = scrape(url)
            answers = send_together(streams, frame_id, photos)
            after = scrape(url)
            assert [len(answers[number].faces) for number in (0, 1)] == [3, 2]
            if [answers[number].timing.batch_faces for number in (0, 1)] == [5, 5]:
                break
        for stream in streams:
            assert stream.close() == []

    # Each answer says its frame was classified in a call of 3 + 2 crops: the other stream's were in it.
    assert [answers[number].timing.batch_faces for number in (0, 1)] == [5, 5]

    def grew(name: str) -> float:
        return after.get((name, ()), 0.0) - before.get((name, ()), 0.0)

    assert grew("ferstream_batch_frames_count") == 1 and grew("ferstream_batch_frames_sum") == 2
    assert grew("ferstream_batch_faces_sum") == 5


def test_a_batch_classifies_each_model_s_frames_in_their_own_call(batching_server, lockstep_stream,
                                                                    faces_dir: Path) -> None:
    """Two streams, one on each model, their frames gathered in one batch: each model classifies its own
    stream's crops (batch_faces 3 and 2, not 5), each answer names its model, the metrics count by model."""
    photos = [(faces_dir / name).read_bytes() for name in (THREE_FACES, TWO_FACES)]
    models = ["fast", "accurate"]
    url = metrics_url(batching_server)
    with grpc.insecure_channel(batching_server.address) as channel:
        stub = pb_grpc.EmotionServiceStub(channel)
        streams = [lockstep_stream(stub) for _ in photos]
        for stream, photo, model in zip(streams, photos, models):
            assert stream.send(stream_frame(1, photo, model=model)).model == model
        for frame_id in range(2, 7):
            before = scrape(url)
            answers = send_together(streams, frame_id, photos, models)
            after = scrape(url)
            assert [answers[number].model for number in (0, 1)] == models
            added = {name: after.get((name, ()), 0.0) - before.get((name, ()), 0.0)
                     for name in ("ferstream_batch_frames_sum", "ferstream_batch_frames_count")}
            if added["ferstream_batch_frames_sum"] == 2 and added["ferstream_batch_frames_count"] == 1:
                break
        for stream in streams:
            assert stream.close() == []
    # Both frames were in one batch, and each model's call held its own frame's crops only.
    assert [answers[number].timing.batch_faces for number in (0, 1)] == [3, 2]

    def grew(name: str, model: str) -> float:
        labels = (("model", model),)
        return after.get((name, labels), 0.0) - before.get((name, labels), 0.0)

    assert grew("ferstream_model_faces_total", "fast") == 3 and grew("ferstream_model_faces_total", "accurate") == 2
    assert grew("ferstream_model_frames_total", "accurate") == 1


def send_together(streams: list, frame_id: int, photos: list[bytes],
                  models: list[str] | None = None) -> dict[int, pb.StreamAnnotateResponse]:
    """Each stream sends one frame at the same moment (threads behind a barrier); their answers by stream.
    models: each stream's AnnotateOptions.model (default: none named)."""
    start = threading.Barrier(len(streams))
    answers: dict[int, pb.StreamAnnotateResponse] = {}

    def send(number: int) -> None:
        start.wait()
        options = {"model": models[number]} if models else {}
        answers[number] = streams[number].send(stream_frame(frame_id, photos[number], **options))

    threads = [threading.Thread(target=send, args=(number,)) for number in range(len(streams))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return answers


def test_the_server_drops_a_job_whose_deadline_passed_before_any_work(fer_models_dir: Path) -> None:
    """The workers' own check, not the client's deadline: a past-deadline job is never decoded."""
    frame_path = load_frame_path(fer_models_dir, None, tuple(range(7)), 4096 * 4096, 32)
    metrics = ServerMetrics()
    workers = FrameWorkers(frame_path, lambda: load_detectors(fer_models_dir), 1, 32, 5.0, metrics)
    workers.start()
    # Not an image: decoding it would fail with INVALID_ARGUMENT, so the outcome shows whether any work was done.
    garbage = pb.Image(encoded=b"\xff\xd8 not a JPEG at all")

    async def submit_both():
        late = workers.submit(garbage, pb.AnnotateOptions(), time.monotonic() - 1.0, "late", time.perf_counter())
        on_time = workers.submit(garbage, pb.AnnotateOptions(), time.monotonic() + 60.0, "on time",
                                 time.perf_counter())
        return await late.answered, await on_time.answered

    try:
        late, on_time = asyncio.run(submit_both())
    finally:
        workers.stop()
    assert isinstance(late, CallError) and late.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert on_time.message.startswith("damaged JPEG")
    assert metrics.registry.get_sample_value("ferstream_frames_expired_total") == 1
    assert metrics.registry.get_sample_value("ferstream_frames_failed_total", {"code": "INVALID_ARGUMENT"}) == 1
    assert workers.in_flight == 0


@pytest.mark.slow
def test_the_server_drops_a_queued_call_whose_deadline_passes(fer_server_factory, fer_models_dir: Path,
                                                              faces_dir: Path) -> None:
    """A real server with one detection worker, busy with a large frame: a call queued behind it with a
    short deadline is dropped by the server before any work (counted as expired, never decoded)."""
    import cv2

    server = fer_server_factory("--models-dir", str(fer_models_dir), "--detect-workers", "1", "--metrics-port", "0")
    url = metrics_url(server)
    photo = cv2.imread(str(faces_dir / THREE_FACES))
    large = cv2.resize(photo, (4096, 4096)).tobytes()
    # min_face_px 20 searches the frame at its own resolution too (16 tiles of 1024 px): about 0.7 s of
    # detection, well above the 0.25 s a 48 MiB message takes to arrive, so frames pile up at the worker.
    slow = pb.AnnotateRequest(image=pb.Image(raw=pb.RawImage(width=4096, height=4096, format=pb.PIXEL_FORMAT_BGR8,
                                                             data=large)),
                              options=pb.AnnotateOptions(min_face_px=20))
    options = [("grpc.max_send_message_length", 64 * 1024 * 1024)]
    with grpc.insecure_channel(server.address, options=options) as channel:
        stub = pb_grpc.EmotionServiceStub(channel)
        stub.Annotate(slow, timeout=120)  # warm up
        before = scrape(url)
        results: queue.Queue = queue.Queue()
        # Four large frames queue on the one worker: seconds of work ahead, so the short deadline below
        # passes while its call waits at the server, even on a loaded machine.
        for _ in range(4):
            threading.Thread(target=lambda: results.put(stub.Annotate(slow, timeout=120))).start()
        give_up = time.monotonic() + 30
        while scrape(url).get(("ferstream_frames_in_flight", ()), 0) < 3:  # all three have reached the workers
            assert time.monotonic() < give_up
        with pytest.raises(grpc.RpcError) as raised:
            stub.Annotate(pb.AnnotateRequest(image=pb.Image(encoded=b"\xff\xd8 not a JPEG")), timeout=0.5)
        assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert all(len(results.get(timeout=120).faces) >= 3 for _ in range(4))
        after = scrape(url)

    def grew(name: str, **labels) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert grew("ferstream_frames_expired_total") == 1
    assert grew("ferstream_frames_failed_total", code="INVALID_ARGUMENT") == 0, "the garbage was never decoded"


@pytest.fixture(scope="module")
def pool_server(fer_server_factory, fer_models_dir: Path):
    return fer_server_factory("--models-dir", str(fer_models_dir), "--detect-workers", "3", "--max-streams", "4")


def check_order_and_skips(sent: list[int], responses: list[pb.StreamAnnotateResponse]) -> None:
    answered = [response.frame_id for response in responses]
    assert answered == sorted(answered) and len(set(answered)) == len(answered), answered
    previous = 0
    accounted: list[int] = []
    for response in responses:
        skipped = list(response.skipped_frame_ids)
        # A frame is skipped only in favour of a newer one: its id lies between the two answers around it.
        assert all(previous < frame_id < response.frame_id for frame_id in skipped), (previous, response.frame_id,
                                                                                      skipped)
        accounted += [*skipped, response.frame_id]
        previous = response.frame_id
    assert sorted(accounted) == sent, "every frame answered or skipped, exactly once"


def test_order_and_skipped_ids_under_a_pool_of_workers(pool_server, faces_dir: Path) -> None:
    photos = [(faces_dir / name).read_bytes() for name in (THREE_FACES, TWO_FACES, "2008_002470.jpg")]
    frames = 80
    results: dict[int, list[pb.StreamAnnotateResponse]] = {}

    def flood(number: int) -> None:
        # Frames as fast as gRPC takes them, every fifth one broken: far more than the server can answer.
        requests = [stream_frame(frame_id, photos[frame_id % 3] if frame_id % 5 else b"broken")
                    for frame_id in range(1, frames + 1)]
        with grpc.insecure_channel(pool_server.address) as channel:
            results[number] = list(pb_grpc.EmotionServiceStub(channel).StreamAnnotate(iter(requests), timeout=120))

    threads = [threading.Thread(target=flood, args=(number,)) for number in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    for number in range(3):
        responses = results[number]
        check_order_and_skips(list(range(1, frames + 1)), responses)
        assert responses[-1].frame_id == frames, "the last frame sent is always answered"
        for response in responses:
            if response.frame_id % 5:
                assert not response.HasField("error") and response.faces, response.frame_id
            else:
                assert response.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]


def test_lockstep_frames_with_two_in_flight_are_all_answered_in_order(pool_server, faces_dir: Path) -> None:
    """A client keeping two frames in flight: nothing is skipped (the server holds two per stream), in order."""
    photo = (faces_dir / THREE_FACES).read_bytes()
    frames = 30
    window = threading.Semaphore(2)
    sent: list[int] = []

    def requests():
        for frame_id in range(1, frames + 1):
            window.acquire()
            sent.append(frame_id)
            yield stream_frame(frame_id, photo)

    responses = []
    with grpc.insecure_channel(pool_server.address) as channel:
        for response in pb_grpc.EmotionServiceStub(channel).StreamAnnotate(requests(), timeout=120):
            responses.append(response)
            window.release()
    check_order_and_skips(sent, responses)
    assert [response.frame_id for response in responses] == list(range(1, frames + 1))
    assert all(len(response.faces) == 3 for response in responses)
