"""The Markdown pages (README.md, docs/*.md) render as written: every table row has as many cells as its
header, so no figure or command lands in the wrong column or drops out of the table. README's sample
JSON line is what today's model answers: with FER_WRITE_DOCS=1 (`make docs`) the test writes it there."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
WRITE_ENV = "FER_WRITE_DOCS"
# README's sample line: the first frame of a 640x480 video of this photo (one face), through fer-annotate.
SAMPLE_PHOTO = "Tom_Cruise_avp_2014_4.jpg"


def cells(row: str) -> list[str]:
    """A table row's cells: split at the pipes outside code spans and not escaped (\\|)."""
    body = row.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") and not body.endswith("\\|") else body
    found, current, in_code, previous = [], "", False, ""
    for character in body:
        if character == "`":
            in_code = not in_code
        if character == "|" and not in_code and previous != "\\":
            found.append(current.strip())
            current = ""
        else:
            current += character
        previous = character
    return [*found, current.strip()]


def tables(text: str) -> list[tuple[int, list[str]]]:
    """(line number of the header, [header, delimiter, rows...]) of every table outside fenced code."""
    found, lines, in_fence, index = [], text.splitlines(), False, 0
    while index < len(lines):
        line = lines[index]
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        elif (not in_fence and line.lstrip().startswith("|") and index + 1 < len(lines)
              and set(lines[index + 1].replace("|", "").replace(":", "").strip()) == {"-"}):
            start = index
            while index < len(lines) and lines[index].lstrip().startswith("|"):
                index += 1
            found.append((start + 1, lines[start:index]))
            continue
        index += 1
    return found


def test_a_malformed_row_is_found() -> None:
    [(line, rows)] = tables("text\n\n| a | b |\n|---|---|\n| 1 | `x|y` |\n| 2 |\n")
    assert line == 3 and [len(cells(row)) for row in rows] == [2, 2, 2, 1]


@pytest.mark.parametrize("page", PAGES, ids=lambda path: path.relative_to(REPO).as_posix())
def test_every_table_row_has_the_header_s_cells(page: Path) -> None:
    wrong = [f"{page.name}:{line + offset}: {len(cells(row))} cells, the header has {len(cells(rows[0]))}"
             for line, rows in tables(page.read_text(encoding="utf-8"))
             for offset, row in enumerate(rows) if len(cells(row)) != len(cells(rows[0]))]
    assert not wrong, "\n".join(wrong)


def shortened(record: dict) -> dict:
    """A JSON-lines record with its probabilities to two decimals, as README quotes it."""
    for face in record["faces"]:
        for key in ("probabilities", "track_probabilities"):
            face[key] = {name: round(value, 2) for name, value in face[key].items()}
    return record


def test_the_readme_sample_line_is_today_s_answer(faces_dir: Path, fer_models_dir: Path, tmp_path: Path) -> None:
    import cv2

    photo = cv2.resize(cv2.imread(str(faces_dir / SAMPLE_PHOTO)), (640, 480), interpolation=cv2.INTER_AREA)
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (640, 480))
    for _ in range(4):
        writer.write(photo)
    writer.release()
    done = subprocess.run([sys.executable, "-m", "ferstream.annotate_command", str(video), "--json", "--no-timeline",
                           "--out", str(tmp_path / "clip.annotated.mp4"), "--models-dir", str(fer_models_dir)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    today = shortened(json.loads(done.stdout.splitlines()[0]))
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```json\n(?P<line>.*)\n```", readme)
    if os.environ.get(WRITE_ENV) == "1":
        line = json.dumps(today)
        (REPO / "README.md").write_text(readme[:block.start("line")] + line + readme[block.end("line"):],
                                        encoding="utf-8")
        return
    quoted = json.loads(block["line"])
    assert quoted.keys() == today.keys() and len(quoted["faces"]) == len(today["faces"]) == 1
    [face], [expected] = quoted["faces"], today["faces"]
    assert face.keys() == expected.keys() and face["emotion"] == expected["emotion"]
    assert [face["box"][key] - expected["box"][key] for key in "x y width height".split()] == pytest.approx(
        [0] * 4, abs=2), f"README's sample line is not today's answer; FER_WRITE_DOCS=1 writes it: {expected}"
    for key in ("probabilities", "track_probabilities"):  # 2 decimals, and another CPU's last digits
        assert face[key] == pytest.approx(expected[key], abs=0.011), \
            f"README's sample line is not today's answer; FER_WRITE_DOCS=1 writes it: {expected}"
