"""README's code blocks: each one is a file under examples/ that README includes verbatim, run here against a
real fer-server on loopback from a folder like a user's (photo.jpg, clip.mp4), or says why it is not run.

README marks every fenced block with an HTML comment on the line before it:
`<!-- example: examples/FILE -->` (the block must equal the file, and a test below runs the file) or
`<!-- not run: REASON -->`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from ferstream.annotate.records import read_jsonl
from ferstream.client import EmotionClient, emotion_name, face_to_dict

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
EXAMPLES = REPO / "examples"
FENCE = re.compile(r"^(?P<indent> *)```(?P<language>\S*)\s*$")
MARKER = re.compile(r"^\s*<!-- (?P<kind>example|not run): (?P<what>.+?) -->\s*$")


@dataclass(frozen=True)
class Block:
    """A fenced code block of README: where it starts (1-based line), its marker, its text (de-indented)."""

    line: int
    language: str
    kind: str | None  # "example", "not run", or None when unmarked
    what: str | None  # the example's path, or the reason it is not run
    text: str


def readme_blocks(text: str) -> list[Block]:
    """Every fenced code block of a Markdown text, with the marker on the line before it."""
    lines = text.splitlines()
    blocks = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent = len(opening["indent"])
        closing = next(end for end in range(index + 1, len(lines)) if lines[end].strip() == "```")
        body = "".join(line[indent:] + "\n" for line in lines[index + 1:closing])
        marker = MARKER.match(lines[index - 1]) if index > 0 else None
        blocks.append(Block(index + 1, opening["language"], marker and marker["kind"], marker and marker["what"],
                            body))
        index = closing + 1
    return blocks


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))
EXAMPLE_FILES = {block.what: block for block in BLOCKS if block.kind == "example"}


def test_every_readme_block_is_an_example_file_or_says_why_not() -> None:
    unmarked = [block.line for block in BLOCKS if block.kind is None]
    assert not unmarked, f"README.md lines {unmarked}: code blocks need <!-- example: FILE --> or <!-- not run: WHY -->"
    for path, block in EXAMPLE_FILES.items():
        assert (REPO / path).read_text(encoding="utf-8") == block.text, \
            f"README.md line {block.line} differs from {path}: README includes the file verbatim"


def test_every_example_file_is_in_the_readme_and_run_here() -> None:
    files = {f"examples/{path.name}" for path in EXAMPLES.iterdir() if path.suffix in (".py", ".sh")}
    assert files == set(EXAMPLE_FILES), "an example file that README does not show, or the reverse"
    assert files <= set(RUNS), "an example without a test below"


@pytest.fixture(scope="module")
def server(fer_server_factory, fer_models_dir: Path):
    """A fer-server on loopback with the shared detector weights."""
    return fer_server_factory("--models-dir", str(fer_models_dir))


def run_example(path: str, folder: Path, server, *args: str) -> subprocess.CompletedProcess:
    """Runs examples/FILE from folder as a user would (python FILE, or its lines in bash), with FER_SERVER
    naming the test's server; fails the test when it exits non-zero."""
    command = [sys.executable, str(REPO / path), *args] if path.endswith(".py") else \
        ["bash", "-euo", "pipefail", str(REPO / path), *args]
    # The fer-* scripts installed beside this Python come first, as in an activated virtual environment.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    environment = {**os.environ, "FER_SERVER": server.address, "PATH": path}
    done = subprocess.run(command, cwd=folder, env=environment, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{path} exited {done.returncode}:\n{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr
    return done


def test_annotate_photo_prints_each_face(example_folder: Path, server) -> None:
    done = run_example("examples/annotate_photo.py", example_folder, server)
    with EmotionClient(server.address) as client:
        reply = client.annotate(example_folder / "photo.jpg")
    assert len(reply.faces) == 3
    assert done.stdout.splitlines() == [str(face_to_dict(face)) for face in reply.faces]


def test_stream_file_answers_every_frame_in_order(example_folder: Path, server, client_faces_video) -> None:
    done = run_example("examples/stream_file.py", example_folder, server)
    lines = done.stdout.splitlines()
    assert [int(line.split(" ", 1)[0]) for line in lines] == list(range(client_faces_video.frame_count))
    assert all(line.split(" ", 1)[1] != "[]" for line in lines), "every frame of the clip shows faces"


def test_stream_live_answers_the_newest_frames(example_folder: Path, server, client_faces_video) -> None:
    done = run_example("examples/stream_live.py", example_folder, server, "clip.mp4")
    answered, skipped = [], []
    for line in done.stdout.splitlines():
        frame_id, rest = line.split(" ", 1)
        answered.append(int(frame_id))
        skipped += [int(number) for number in re.findall(r"\d+", rest.split("skipped:", 1)[1])]
    assert answered == sorted(answered) and answered[-1] == client_faces_video.frame_count - 1
    assert sorted(answered + skipped) == list(range(client_faces_video.frame_count))


def test_generated_stubs_print_the_faces(example_folder: Path, server) -> None:
    done = run_example("examples/generated_stubs.py", example_folder, server)
    with EmotionClient(server.address) as client:
        faces = client.annotate(example_folder / "photo.jpg").faces
    printed = [line.split() for line in done.stdout.splitlines()]
    assert [row[:4] for row in printed] == [[str(face.box.x), str(face.box.y), str(face.box.width),
                                             str(face.box.height)] for face in faces]
    assert [row[4] for row in printed] == [f"EMOTION_{emotion_name(face.emotion).upper()}" for face in faces]


def test_commands_write_annotated_copies_and_one_json_lines_format(example_folder: Path, server,
                                                                   client_faces_video) -> None:
    run_example("examples/commands.sh", example_folder, server)
    assert (example_folder / "photo.annotated.jpg").stat().st_size > 0
    assert (example_folder / "clip.annotated.mp4").stat().st_size > 0
    [photo] = read_jsonl(example_folder / "photo.annotated.jsonl")
    clip = read_jsonl(example_folder / "clip.jsonl")
    assert len(photo["faces"]) == 3 and len(clip) == client_faces_video.frame_count
    sample = next(block for block in BLOCKS if block.language == "json")
    [documented] = [json.loads(line) for line in sample.text.splitlines()]
    required = {"box", "detection_score", "emotion", "probabilities"}  # track fields only on a track
    for record in (photo, clip[0]):
        assert set(record) - {"time_ms"} == set(documented) - {"time_ms"}
        assert required <= set(record["faces"][0]) <= set(documented["faces"][0])
        assert set(record["faces"][0]["probabilities"]) == set(documented["faces"][0]["probabilities"])
    assert "time_ms" in clip[0] and "time_ms" in documented


def test_node_prints_one_json_line_per_face(example_folder: Path, server, node_and_npm) -> None:
    done = run_example("examples/node.sh", example_folder, server)
    printed = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]  # not npm's report
    with EmotionClient(server.address) as client:  # the Node client streams: the server's stream model, fast
        faces = client.annotate(example_folder / "photo.jpg", model="fast").faces
    assert len(printed) == 3
    assert [face["box"] for face in printed] == [face_to_dict(face)["box"] for face in faces]
    assert [face["emotion"] for face in printed] == [emotion_name(face.emotion) for face in faces]


# Which test runs each example file (checked above, so a new example needs a test).
RUNS = {
    "examples/annotate_photo.py": test_annotate_photo_prints_each_face,
    "examples/stream_file.py": test_stream_file_answers_every_frame_in_order,
    "examples/stream_live.py": test_stream_live_answers_the_newest_frames,
    "examples/generated_stubs.py": test_generated_stubs_print_the_faces,
    "examples/commands.sh": test_commands_write_annotated_copies_and_one_json_lines_format,
    "examples/node.sh": test_node_prints_one_json_line_per_face,
}
