"""fer-server as a process: --help, bad arguments, and SIGTERM draining an open stream before exit 0."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import grpc

from ferstream.v1 import emotion_pb2 as pb
from ferstream.v1 import emotion_pb2_grpc as pb_grpc

SERVER = [sys.executable, "-m", "ferstream.server.cli"]


def test_help() -> None:
    result = subprocess.run([*SERVER, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for option in ("--host", "--port", "--models-dir", "--max-streams", "--max-batch", "--max-delay-ms",
                   "--max-pixels", "--classes"):
        assert option in result.stdout


def test_bad_arguments_exit_2() -> None:
    for arguments in (["--max-batch", "0"], ["--classes", "angry,bored"]):
        result = subprocess.run([*SERVER, *arguments], capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, arguments
        assert "error" in result.stderr and result.stdout == ""


def test_missing_model_file_exits_1(tmp_path: Path) -> None:
    missing = tmp_path / "absent.pt"
    result = subprocess.run([*SERVER, "--port", "0", "--model", str(missing)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1
    assert str(missing) in result.stderr


def test_sigterm_drains_the_open_stream_and_exits_0(fer_server_factory, lockstep_stream, fer_models_dir: Path,
                                                     faces_dir: Path) -> None:
    server = fer_server_factory("--models-dir", str(fer_models_dir), "--grace-s", "10")
    photo = (faces_dir / "2008_002506.jpg").read_bytes()
    with grpc.insecure_channel(server.address) as channel:
        stream = lockstep_stream(pb_grpc.EmotionServiceStub(channel))
        answered = stream.send(pb.StreamAnnotateRequest(frame_id=1, image=pb.Image(encoded=photo)))
        assert len(answered.faces) == 3
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=60) == 0
        assert stream.close() == []  # the stream ended cleanly (status OK), not with an error
    log = server.log()
    assert "stopping" in log and "stream 1 closed: 1 frames received, 1 answered" in log and "stopped" in log


def test_a_second_server_on_a_busy_port_exits_1(fer_server_factory, fer_models_dir: Path) -> None:
    """gRPC would share the port (SO_REUSEPORT) and split the connections; a lone server refuses instead."""
    first = fer_server_factory("--models-dir", str(fer_models_dir))
    port = first.address.rsplit(":", 1)[1]
    second = subprocess.run([*SERVER, "--models-dir", str(fer_models_dir), "--port", port, "--threads", "1"],
                            capture_output=True, text=True, timeout=120)
    assert second.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in second.stderr
    assert first.process.poll() is None
