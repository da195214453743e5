"""The Prometheus endpoint of a real server counts what the server did."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from ferstream.v1 import emotion_pb2 as pb
from ferstream.v1 import emotion_pb2_grpc as pb_grpc
from helpers import metrics_url as logged_metrics_url
from helpers import scrape


@pytest.fixture(scope="module")
def server(fer_server_factory, tmp_path_factory):
    return fer_server_factory("--models-dir", str(tmp_path_factory.mktemp("no-models")), "--metrics-port", "0")


@pytest.fixture(scope="module")
def metrics_url(server) -> str:
    return logged_metrics_url(server)


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_frames_faces_streams_batches_and_stages(server, metrics_url: str, lockstep_stream,
                                                               faces_dir: Path) -> None:
    photo = (faces_dir / "2008_002506.jpg").read_bytes()  # three faces
    before = scrape(metrics_url)
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.EmotionServiceStub(channel)
        assert len(stub.Annotate(pb.AnnotateRequest(image=pb.Image(encoded=photo)), timeout=60).faces) == 3
        with pytest.raises(grpc.RpcError):
            stub.Annotate(pb.AnnotateRequest(image=pb.Image(encoded=b"not an image")), timeout=60)

        stream = lockstep_stream(stub)
        for frame_id in (1, 2):
            stream.send(pb.StreamAnnotateRequest(frame_id=frame_id, image=pb.Image(encoded=photo)))
        during = scrape(metrics_url)
        assert value(during, "ferstream_active_streams") == 1
        bad = stream.send(pb.StreamAnnotateRequest(frame_id=3, image=pb.Image(raw=pb.RawImage(width=2, height=2))))
        assert bad.HasField("error")
        assert stream.close() == []

    after = scrape(metrics_url)

    def grew(name: str, **labels) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("ferstream_frames_received_total") == 5
    assert grew("ferstream_frames_answered_total") == 3
    assert grew("ferstream_frames_failed_total", code="INVALID_ARGUMENT") == 2
    assert grew("ferstream_faces_total") == 9
    assert grew("ferstream_frames_skipped_total") == 0  # lockstep: nothing to skip
    assert value(after, "ferstream_active_streams") == 0
    assert grew("ferstream_batch_frames_count") == 3 and grew("ferstream_batch_faces_sum") == 9
    for stage in ("decode", "detect", "classify", "queue", "total"):
        assert grew("ferstream_stage_seconds_count", stage=stage) == 3, stage
    assert grew("ferstream_stage_seconds_sum", stage="total") > 0
    assert ("ferstream_queue_depth", ()) in after
