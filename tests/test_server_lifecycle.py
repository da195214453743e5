"""fer-server as a process: --help, --version, bad arguments, and SIGTERM draining open calls before exit 0."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from importlib import metadata
from pathlib import Path

import grpc
import pytest

from ferstream.server.config import build_parser
from ferstream.v1 import emotion_pb2 as pb
from ferstream.v1 import emotion_pb2_grpc as pb_grpc
from helpers import metrics_url

SERVER = [sys.executable, "-m", "ferstream.server.cli"]


def test_help_describes_every_option() -> None:
    result = subprocess.run([*SERVER, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for option in ("--host", "--port", "--models-dir", "--max-streams", "--max-batch", "--max-delay-ms",
                   "--max-pixels", "--classes", "--detect-workers", "--version"):
        assert option in result.stdout
    undescribed = [action.option_strings for action in build_parser()._actions if not action.help]
    assert undescribed == []


def test_version() -> None:
    result = subprocess.run([*SERVER, "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert result.stdout.startswith(f"fer-server {metadata.version('ferstream')} (ferstream, Python ")


def test_bad_arguments_exit_2() -> None:
    for arguments in (["--max-batch", "0"], ["--classes", "angry,bored"]):
        result = subprocess.run([*SERVER, *arguments], capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, arguments
        assert "error" in result.stderr and result.stdout == ""


@pytest.mark.parametrize("port", ["70000", "65536", "-5", "http"])
def test_port_outside_the_range_is_refused(port: str) -> None:
    """It used to wrap: --port 70000 served on 4464 and --port -5 on 65531."""
    result = subprocess.run([*SERVER, "--port", port], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("fer-server: error: argument --port: ") and "Traceback" not in result.stderr
    assert "1-65535" in last_line or "port number" in last_line


def test_unresolvable_host_gets_its_own_message() -> None:
    result = subprocess.run([*SERVER, "--host", "no-such-host.invalid", "--port", "0"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert "--host no-such-host.invalid: cannot resolve" in result.stderr
    assert "plaintext" not in result.stderr


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




def in_flight(url: str) -> float:
    with urllib.request.urlopen(url, timeout=10) as response:
        found = re.search(r"^ferstream_frames_in_flight (\S+)$", response.read().decode(), re.MULTILINE)
    return float(found.group(1))


@pytest.mark.slow
def test_sigterm_answers_the_frames_in_flight_before_exit(fer_server_factory, fer_models_dir: Path,
                                                          faces_dir: Path) -> None:
    """Frames the workers hold when SIGTERM comes are answered (unary calls and stream frames), then exit 0."""
    import cv2

    server = fer_server_factory("--models-dir", str(fer_models_dir), "--grace-s", "60", "--detect-workers", "1",
                                "--metrics-port", "0")
    url = metrics_url(server)
    # Large raw frames, so that the one detection worker is still busy when the signal comes.
    pixels = cv2.resize(cv2.imread(str(faces_dir / "2008_002506.jpg")), (3000, 3000)).tobytes()
    image = pb.Image(raw=pb.RawImage(width=3000, height=3000, format=pb.PIXEL_FORMAT_BGR8, data=pixels))
    answers: list = []
    failures: list = []

    def unary(stub) -> None:
        try:
            answers.append(len(stub.Annotate(pb.AnnotateRequest(image=image), timeout=120).faces))
        except grpc.RpcError as error:
            failures.append(error)

    def stream(stub) -> None:
        try:
            responses = list(stub.StreamAnnotate(iter([pb.StreamAnnotateRequest(frame_id=7, image=image)]),
                                                 timeout=120))
            answers.extend(len(response.faces) for response in responses if response.frame_id == 7)
        except grpc.RpcError as error:
            failures.append(error)

    with grpc.insecure_channel(server.address, options=[("grpc.max_send_message_length", 2**26)]) as channel:
        stub = pb_grpc.EmotionServiceStub(channel)
        calls = [threading.Thread(target=call, args=(stub,)) for call in (unary, unary, stream, stream)]
        for call in calls:
            call.start()
        give_up = time.monotonic() + 60
        while in_flight(url) < len(calls):
            assert time.monotonic() < give_up, "the frames never all reached the workers"
            time.sleep(0.01)
        server.process.send_signal(signal.SIGTERM)
        for call in calls:
            call.join(timeout=120)
        assert server.process.wait(timeout=60) == 0
    assert failures == [] and len(answers) == len(calls) and all(faces >= 3 for faces in answers), answers
    held = re.search(r"stopping: (\d+) frame\(s\) in flight", server.log())
    assert held and int(held.group(1)) >= 2, "the signal came while frames were in flight"
    assert "stopped" in server.log()


def test_a_second_server_on_a_busy_port_exits_1(fer_server_factory, fer_models_dir: Path) -> None:
    """gRPC would share the port (SO_REUSEPORT) and split the connections; a lone server refuses instead."""
    first = fer_server_factory("--models-dir", str(fer_models_dir))
    port = first.address.rsplit(":", 1)[1]
    second = subprocess.run([*SERVER, "--models-dir", str(fer_models_dir), "--port", port, "--threads", "1"],
                            capture_output=True, text=True, timeout=120)
    assert second.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in second.stderr
    # Refused before the models load (seconds): one line, no detector or model lines before it.
    assert len(second.stderr.strip().splitlines()) == 1, second.stderr
    assert first.process.poll() is None
