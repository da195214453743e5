"""More than one server: two fer-servers behind one round-robin target, and fer-server --replicas 2 on one port."""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from ferstream.client.capture import LatestFrame
from ferstream.client.library import EmotionClient
from ferstream.client.session import Annotated, StreamOptions, StreamSession
from ferstream.v1 import emotion_pb2_grpc as pb_grpc

PHOTO = "2008_002506.jpg"  # three large faces


def streams_opened(log: str) -> int:
    return sum(" opened by " in line for line in log.splitlines())


def wait_for(condition, timeout: float, what: str) -> None:
    give_up = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > give_up:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def two_servers(fer_server_factory, fer_models_dir: Path):
    return [fer_server_factory("--models-dir", str(fer_models_dir)) for _ in range(2)]


@pytest.fixture(scope="module")
def round_robin_target(two_servers) -> str:
    return "ipv4:" + ",".join(server.address for server in two_servers)


def test_streams_land_on_both_servers(two_servers, round_robin_target: str, faces_dir: Path) -> None:
    photo = (faces_dir / PHOTO).read_bytes()
    with EmotionClient(round_robin_target) as client:
        assert client.wait_ready(30.0)
        # The second server may still be connecting when the first is ready: keep opening streams until
        # both have had one (round robin alternates between the connected ones).
        for _ in range(20):
            responses = list(client.stream([photo], detector="haar"))
            assert len(responses) == 1 and responses[0].faces
            if all(streams_opened(server.log()) for server in two_servers):
                break
            time.sleep(0.2)
    assert [streams_opened(server.log()) > 0 for server in two_servers] == [True, True]


def test_a_stream_survives_its_server_stopping(two_servers, round_robin_target: str, faces_dir: Path) -> None:
    """A rolling update: the server carrying the stream is stopped; the session reconnects to the other."""
    import cv2

    photo = cv2.imread(str(faces_dir / PHOTO))
    latest = LatestFrame()
    annotated: list[Annotated] = []

    def keep_annotated(event) -> None:
        if isinstance(event, Annotated):
            annotated.append(event)

    session = StreamSession(EmotionClient(round_robin_target), latest, keep_annotated, StreamOptions(detector="haar"))
    feeding = threading.Event()

    def feed() -> None:  # a 10 fps camera showing the photo
        while not feeding.is_set():
            latest.put(photo)
            feeding.wait(0.1)

    opened_before = [streams_opened(server.log()) for server in two_servers]
    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    session.start()
    try:
        wait_for(lambda: len(annotated) >= 2, 60, "the first annotated frames")
        carrying = [streams_opened(server.log()) > before for server, before in zip(two_servers, opened_before)]
        assert carrying.count(True) == 1, "one stream, on one server"
        stopped, other = (two_servers[0], two_servers[1]) if carrying[0] else (two_servers[1], two_servers[0])
        other_opened = streams_opened(other.log())

        stopped.process.send_signal(signal.SIGTERM)
        assert stopped.process.wait(timeout=60) == 0
        received = len(annotated)
        wait_for(lambda: len(annotated) >= received + 2, 60, "frames answered after the server stopped")
    finally:
        session.stop()
        session.join(timeout=30)
        feeding.set()
    assert streams_opened(other.log()) > other_opened, "the session went on on the other server"
    face_counts = {len(event.response.faces) for event in annotated}
    assert len(face_counts) == 1 and face_counts != {0}, "both servers find the same faces in the same photo"


@pytest.mark.slow
def test_replicas_share_one_port(fer_server_factory, fer_models_dir: Path) -> None:
    server = fer_server_factory("--models-dir", str(fer_models_dir), "--replicas", "2")
    try:
        log = server.log()
        for number in (1, 2):
            assert f"[replica {number}]: listening on {server.address}" in log
        assert log.count("serving on ") == 1, "only the parent announces the address, once all replicas listen"

        def opened_by_replica(number: int) -> int:
            return sum(f"[replica {number}]: stream" in line and " opened by " in line
                       for line in server.log().splitlines())

        # The kernel hashes each new connection to a replica: a few connections reach both.
        for _ in range(24):
            with grpc.insecure_channel(server.address, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
                assert list(pb_grpc.EmotionServiceStub(channel).StreamAnnotate(iter([]), timeout=30)) == []
            if opened_by_replica(1) and opened_by_replica(2):
                break
        assert opened_by_replica(1) > 0 and opened_by_replica(2) > 0
    finally:
        server.process.send_signal(signal.SIGTERM)
        code = server.process.wait(timeout=60)
    assert code == 0
    log = server.log()
    assert "[replica 1]: stopped" in log and "[replica 2]: stopped" in log and "all replicas stopped" in log


def test_a_replica_that_cannot_start_fails_the_server(tmp_path: Path) -> None:
    import subprocess
    import sys

    missing = tmp_path / "absent.pt"
    result = subprocess.run([sys.executable, "-m", "ferstream.server.cli", "--port", "0", "--replicas", "2",
                             "--threads", "1", "--model", str(missing)], capture_output=True, text=True, timeout=180)
    assert result.returncode == 1
    assert str(missing) in result.stderr and "serving on" not in result.stderr


def test_replicas_split_the_cores_and_get_their_own_metrics_ports() -> None:
    from ferstream.server.config import ServerConfig, build_parser, config_from_args
    from ferstream.server.replicas import replica_config

    config = ServerConfig(port=0, threads=4, replicas=4, metrics_port=9100)
    replicas = [replica_config(config, 50051, number, cores=8) for number in (1, 2, 3, 4)]
    assert {(r.port, r.threads, r.replicas, r.detect_workers) for r in replicas} == {(50051, 2, 1, 2)}
    # An explicit --detect-workers is kept within the replica's share of the cores.
    assert replica_config(replace(config, detect_workers=1), 50051, 1, cores=8).detect_workers == 1
    assert replica_config(replace(config, detect_workers=6), 50051, 1, cores=8).detect_workers == 2
    assert [r.metrics_port for r in replicas] == [9100, 9101, 9102, 9103]
    assert replica_config(replace(config, metrics_port=None), 50051, 2, cores=2).metrics_port is None
    assert replica_config(config, 50051, 1, cores=2).threads == 1, "never fewer than one thread"
    assert config_from_args(build_parser().parse_args(["--replicas", "3"])).replicas == 3
    # --workers, an old name of --replicas, is gone: one name per setting.
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--workers", "3"])
