"""fer-bench: every command run for a second or so with --json, checking the structure, not the speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ferstream.bench.cli import section_key
from ferstream.bench.detectors import count_matches, iou
from ferstream.bench.report import cpu_features, machine_description, machine_line

TEST_FACES = 43  # hand-boxed faces in testing.xml + training.xml


def bench(*arguments: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ferstream.bench.cli", *arguments], capture_output=True, text=True,
                          timeout=timeout)


def bench_json(*arguments: str) -> dict:
    result = bench(*arguments, "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["command"].startswith("fer-bench ")
    assert document["machine"]["logical_cores"] >= 1 and document["machine"]["torch"]
    return document["result"]


@pytest.fixture(scope="module")
def data_options(shared: Path, fer_models_dir: Path) -> tuple[str, ...]:
    return ("--data-dir", str(shared), "--models-dir", str(fer_models_dir))


def check_latency(latency: dict) -> None:
    assert 0 < latency["p50_ms"] <= latency["p95_ms"] <= latency["p99_ms"]


def check_stream_bench(result: dict, streams: int) -> None:
    assert len(result["streams"]) == streams
    assert result["answered"] == sum(stream["answered"] for stream in result["streams"]) > 0
    assert result["sent"] == sum(stream["sent"] for stream in result["streams"])
    assert result["dropped"] == sum(stream["dropped"] for stream in result["streams"])
    assert result["sent"] == result["answered"] + result["dropped"] + result["lost"]
    assert result["errors"] == 0 and result["lost"] == 0
    assert 0.0 <= result["drop_rate"] <= 1.0 and result["answered_fps"] > 0
    check_latency(result["latency"])
    for stream in result["streams"]:
        check_latency(stream["latency"])
        assert stream["faces"] > 0  # the photos have faces: the answers are real


def test_face_matching_pairs_each_true_box_once(face_boxes) -> None:
    truth = face_boxes["2008_002506.jpg"]
    assert count_matches(truth, truth) == len(truth)
    assert count_matches(truth + truth, truth) == len(truth)  # duplicates do not count twice
    shifted = [(x + w // 2, y, w, h) for x, y, w, h in truth]  # IoU 1/3: not a match
    assert all(iou(a, b) < 0.5 for a, b in zip(shifted, truth))
    assert count_matches(shifted, truth) == 0


@pytest.mark.slow
def test_stream_against_a_running_server(fer_server_factory, fer_models_dir: Path, data_options) -> None:
    server = fer_server_factory("--models-dir", str(fer_models_dir))
    result = bench_json("stream", "--server", server.address, "--streams", "2", "--fps", "8", "--seconds", "1.5",
                        "--detector", "yunet", "--model", "accurate", *data_options)
    check_stream_bench(result, streams=2)
    assert result["settings"] == {"streams": 2, "fps": 8.0, "seconds": 1.5, "detector": "yunet", "in_flight": 2,
                                  "model": "accurate"}
    assert result["server"] == server.address and not result["server_spawned"] and result["detector"] == "yunet"
    assert result["server_cpu_s"] is None  # not our child: its CPU time is not measured


@pytest.mark.slow
def test_reference_against_a_spawned_server(data_options) -> None:
    result = bench_json("reference", "--seconds", "1", "--threads", "1", "--detector", "ssd", *data_options)
    reference, served = result["reference"], result["served"]
    assert reference["frames"] == 9 and reference["faces_per_frame"] > 0 and reference["fps"] > 0
    check_stream_bench(served, streams=1)
    assert served["server_spawned"] and served["detector"] == "ssd"
    assert served["dropped"] == 0  # lockstep: a frame is sent only once the previous one is answered
    assert served["server_cpu_s"] > 0 and served["server_cpu_s_per_frame"] > 0
    # Proportions measured in the same run: CPU beside the stage times, served fps beside the yardstick.
    assert served["stages"]["detect_ms"] > 0 and served["cpu_over_stages"] > 0
    yardstick_fps = served["yardstick"]["fps"]
    assert yardstick_fps > 0 and served["vs_yardstick"] == served["answered_fps"] / yardstick_fps
    assert result["speedup"] == pytest.approx(served["answered_fps"] / reference["fps"])


def vgg_multiply_adds(channels) -> int:
    """Multiply-adds counted from the layer sizes: 3x3 convolutions in blocks of 2/3/4/4/4 at 48, 24, 12, 6, 3 px,
    then 7 outputs."""
    total, previous = 0, 1
    for block, (depth, width) in enumerate(zip((2, 3, 4, 4, 4), channels)):
        pixels = (48 >> block) ** 2
        total += pixels * 9 * (previous * width + (depth - 1) * width * width)
        previous = width
    return total + previous * 7


@pytest.mark.slow
def test_classifier_of_the_accurate_model(data_options) -> None:
    result = bench_json("classifier", "--model", "accurate", "--seconds", "0.1", "--batch-sizes", "1,2", "--threads",
                        "1", *data_options)
    labels = [model["label"] for model in result["models"]]
    assert labels == ["accurate", "zoo int8, openvino", "zoo int8, onnxruntime", "zoo f32, openvino",
                      "zoo f32, onnxruntime"]
    cells = {(timing["model"], timing["threads"], timing["batch"]) for timing in result["timings"]}
    assert cells == {(label, 1, batch) for label in labels for batch in (1, 2)}
    assert all(timing["faces_per_s"] > 0 and timing["cpu_ms_per_face"] > 0 for timing in result["timings"])


@pytest.mark.slow
def test_classifier(data_options) -> None:
    result = bench_json("classifier", "--seconds", "0.1", "--batch-sizes", "1,8", "--threads", "1", "--unfolded",
                        *data_options)
    models = {model["label"]: model for model in result["models"]}
    assert set(models) == {"shipped", "shipped f32, openvino", "shipped f32, onnxruntime", "vgg ×0.25, openvino",
                           "shipped, pytorch", "shipped, unfolded", "vgg ×0.25, pytorch", "reference"}
    # `shipped` is the form the server runs: the committed int8 IR in the default runtime.
    assert models["shipped"]["runtime"] == "openvino"
    assert models["shipped"]["source"].endswith("ferstream-emotion-int8.xml")
    assert models["shipped f32, onnxruntime"]["source"].endswith("ferstream-emotion.onnx")
    assert models["shipped, pytorch"]["source"].endswith("ferstream-emotion.pt")
    assert {model["runtime"] for label, model in models.items() if label.endswith("pytorch")} == {"pytorch"}
    assert set(result["runtime_versions"]) == {"openvino", "onnxruntime"}
    for label in ("shipped f32, openvino", "shipped f32, onnxruntime", "shipped, pytorch", "shipped, unfolded"):
        assert models[label]["parameters"] == models["shipped"]["parameters"]
        assert models[label]["multiply_adds"] == models["shipped"]["multiply_adds"]
    first = models["vgg ×0.25, pytorch"]
    assert first["channels"] == [16, 32, 64, 64, 128] and first["multiply_adds"] == vgg_multiply_adds(first["channels"])
    assert models["vgg ×0.25, openvino"]["multiply_adds"] == first["multiply_adds"]
    assert models["reference"]["width"] == 1.0 and round(models["reference"]["parameters"] / 1e6, 1) == 13.1
    assert models["shipped"]["parameters"] < models["reference"]["parameters"]
    assert models["reference"]["multiply_adds"] == vgg_multiply_adds((64, 128, 256, 256, 512))
    assert models["shipped"]["multiply_adds"] == vgg_multiply_adds(models["shipped"]["channels"])
    cells = {(timing["model"], timing["threads"], timing["batch"]) for timing in result["timings"]}
    assert cells == {(model, 1, batch) for model in models for batch in (1, 8)}
    for timing in result["timings"]:
        assert timing["calls"] >= 5 and timing["faces_per_s"] > 0 and timing["cpu_ms_per_face"] > 0
        assert timing["ms_per_face"] * timing["faces_per_s"] == pytest.approx(1000.0)
        assert timing["ms_per_batch"] == pytest.approx(timing["ms_per_face"] * timing["batch"])


@pytest.mark.slow
def test_detectors_table_and_chart(tmp_path: Path, data_options) -> None:
    chart = tmp_path / "detectors.png"
    result = bench_json("detectors", "--seconds", "0.2", "--threads", "1", "--chart", str(chart), *data_options)
    assert [score["detector"] for score in result["scores"]] == ["haar", "ssd", "yunet"]
    assert result["frame_size"] == [640, 480] and result["chart"] == str(chart)
    for score in result["scores"]:
        assert score["available"], score["detail"]
        assert score["frames"] == 9 and score["true_faces"] == TEST_FACES and score["ms_per_frame"] > 0
        assert score["matched"] <= min(score["detections"], score["true_faces"])
        assert score["recall"] == pytest.approx(score["matched"] / TEST_FACES)
        assert 0.0 < score["precision"] <= 1.0
    assert chart.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.slow
def test_markdown_output_and_errors(tmp_path: Path, data_options) -> None:
    result = bench("classifier", "--seconds", "0.05", "--batch-sizes", "2", "--threads", "1", *data_options)
    assert result.returncode == 0, result.stderr
    header = "| model | threads | batch | faces/s | ms/face | CPU ms/face | vs pytorch | vs pytorch, CPU |"
    assert header in result.stdout
    rows = [line.split(" | ") for line in result.stdout.splitlines() if line.startswith("| shipped | 1 | 2 |")]
    assert len(rows) == 1
    baseline = [line for line in result.stdout.splitlines() if line.startswith("| shipped, pytorch | 1 | 2 |")]
    assert len(baseline) == 1 and baseline[0].endswith("| 1.000 | 1.000 |")

    missing = bench("classifier", "--data-dir", str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and "fer-bench: error:" in missing.stderr and "nowhere" in missing.stderr

    usage = bench("stream", "--streams", "0")
    assert usage.returncode == 2 and "--streams" in usage.stderr


def sections(text: str, key: str) -> list[str]:
    """The bodies of every section of key in a --markdown-out file."""
    begin, end = f"<!-- fer-bench begin: {key} -->", f"<!-- fer-bench end: {key} -->"
    return [part.split(end, 1)[0] for part in text.split(begin)[1:]]


@pytest.mark.slow
def test_markdown_out_replaces_the_commands_own_section(tmp_path: Path, data_options) -> None:
    page = tmp_path / "docs" / "performance.md"
    page.parent.mkdir()
    page.write_text("# Performance\n\nWritten by hand, kept.\n", encoding="utf-8")
    command = ("tracking", "--seconds", "0.2", "--faces", "3")
    key = "fer-bench " + " ".join(command)

    first = bench(*command, "--markdown-out", str(page), *data_options)
    assert first.returncode == 0, first.stderr
    after_first = page.read_text(encoding="utf-8")
    [body] = sections(after_first, key + " " + " ".join(data_options))
    assert after_first.startswith("# Performance\n\nWritten by hand, kept.\n")
    # The command as typed (to run it again), the machine with its CPU features, the table, the time.
    assert f"`{key} --markdown-out {page}" in body
    features = ", ".join(cpu_features()) or "no AVX2"
    assert f"{os.cpu_count()} logical cores ({features})" in body
    assert "| faces | smoothing ms | tracker ms/frame |" in body and "\n| 3 | 300.0 |" in body
    assert "Measured 20" in body

    page.write_text(after_first + "\nA note under the section, kept.\n", encoding="utf-8")
    other = bench("tracking", "--seconds", "0.2", "--faces", "2", f"--markdown-out={page}", *data_options)
    again = bench(*command, "--markdown-out", str(page), *data_options)
    assert other.returncode == 0 and again.returncode == 0, other.stderr + again.stderr
    final = page.read_text(encoding="utf-8")
    [replaced] = sections(final, key + " " + " ".join(data_options))  # replaced, not appended a second time
    assert "\n| 3 | 300.0 |" in replaced
    assert len(sections(final, "fer-bench tracking --seconds 0.2 --faces 2 " + " ".join(data_options))) == 1
    assert final.startswith("# Performance\n\nWritten by hand, kept.\n")
    assert final.count("A note under the section, kept.") == 1
    assert final.index("--faces 3") < final.index("A note under") < final.index("--faces 2")


def test_markdown_out_refuses_a_section_left_open(tmp_path: Path, data_options) -> None:
    page = tmp_path / "performance.md"
    opened = f"<!-- fer-bench begin: fer-bench tracking --seconds 0.1 {' '.join(data_options)} -->\n| old |\n"
    page.write_text(opened, encoding="utf-8")
    result = bench("tracking", "--seconds", "0.1", *data_options, "--markdown-out", str(page))
    assert result.returncode == 1 and "has no closing line" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert page.read_text(encoding="utf-8") == opened  # nothing half written


def test_cpu_features_from_cpuinfo_flags() -> None:
    cpuinfo = ("processor\t: 0\nmodel name\t: Some CPU\n"
               "flags\t\t: fpu sse avx2 avx512f avx512_vnni avx512_bf16 amx_tile\n\nprocessor\t: 1\nflags\t: fpu\n")
    assert cpu_features(cpuinfo) == ["AVX2", "AVX-512", "AVX-512 VNNI", "AVX-512 BF16", "AMX"]
    assert cpu_features("flags\t: fpu sse4_2 avx avx2 avx_vnni\n") == ["AVX2", "AVX-VNNI"]
    assert cpu_features("model name\t: no flags line\n") == []


def test_a_report_names_the_kernel_caps_in_effect(monkeypatch: pytest.MonkeyPatch) -> None:
    """Figures measured with the libraries capped at AVX2 on a newer CPU say so beside the CPU's features."""
    for name in ("ONEDNN_MAX_CPU_ISA", "OPENCV_CPU_DISABLE", "ATEN_CPU_CAPABILITY"):
        monkeypatch.delenv(name, raising=False)
    assert "capped" not in machine_line(machine_description())
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.setenv("OPENCV_CPU_DISABLE", "AVX512F,AVX512-SKX")
    line = machine_line(machine_description())
    assert "; kernels capped by ONEDNN_MAX_CPU_ISA=AVX2 OPENCV_CPU_DISABLE=AVX512F,AVX512-SKX)" in line
    # The command line leads with them, to be run again as it reads, and a capped run has its own section.
    capped = "ONEDNN_MAX_CPU_ISA=AVX2 OPENCV_CPU_DISABLE=AVX512F,AVX512-SKX fer-bench tracking --faces 2"
    assert section_key(["tracking", "--faces", "2", "--markdown-out", "docs/performance.md"]) == capped
