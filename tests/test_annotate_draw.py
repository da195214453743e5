"""The one renderer (ferstream.annotate.draw): what it promises on plain values, and that fer-annotate's
results and the client's replies draw the same."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ferstream.annotate.draw import (
    CHART_DIMMING,
    EMOTION_COLOURS,
    WHITE,
    FaceAnnotation,
    Style,
    colour_of,
    contrast_ratio,
    draw_annotations,
    layout,
    overlaps,
    render,
    text_colour_on,
)
from ferstream.client.render import draw_annotations as draw_reply
from ferstream.model.labels import EMOTIONS
from ferstream.pipeline.detectors import Detection
from ferstream.pipeline.framepath import AnnotatedFrame, FaceResult
from ferstream.v1 import emotion_pb2

# WCAG 2 AA for normal text.
MIN_TEXT_CONTRAST = 4.5


def face(box, emotion="happy", number=1, probabilities=None) -> FaceAnnotation:
    probabilities = probabilities or tuple(0.7 if name == emotion else 0.05 for name in EMOTIONS)
    return FaceAnnotation(box, emotion, probabilities, number)


def test_every_label_and_chart_text_reads_at_4_5_to_1():
    for emotion, colour in EMOTION_COLOURS.items():
        ratio = contrast_ratio(text_colour_on(colour), colour)
        assert ratio >= MIN_TEXT_CONTRAST, f"{emotion}: {ratio:.2f}:1"
    # Chart names are white on the picture darkened to CHART_DIMMING: a white picture is the worst case.
    darkest_white = (round(255 * CHART_DIMMING),) * 3
    assert contrast_ratio(WHITE, darkest_white) >= MIN_TEXT_CONTRAST


def test_a_face_gets_box_label_and_chart_off_the_face_and_the_input_is_untouched():
    image = np.full((400, 600, 3), 90, np.uint8)
    drawing = render(image, [face((100, 60, 80, 80))], scale=0.5)
    assert drawing.image.shape == (200, 300, 3)
    assert (image == 90).all(), "the input frame is left untouched"
    [placed] = drawing.placements
    assert placed.box == (50, 30, 90, 70) and placed.label_text == "#1 happy 70%"
    happy = np.array(colour_of("happy"))
    drawn = drawing.image.astype(int)
    assert (np.abs(drawn[35:65, 50] - happy) <= 1).all(), "the box's left edge, at the scaled position"
    line = Style.for_size(300, 200).line
    assert (drawing.image[30 + line + 1 : 70 - line - 1, 50 + line + 1 : 90 - line - 1] == 90).all(), \
        "the face itself is not painted over"
    assert placed.label is not None and placed.chart is not None
    # The "happy" bar (4th row) is the longest: it is the only one reaching 60 % of the chart's width.
    x1, y1, x2, y2 = placed.chart
    rows = [drawing.image[y1 + 2 + row * Style.for_size(300, 200).chart_row + 6] for row in range(len(EMOTIONS))]
    reach = x1 + round(0.6 * (x2 - x1))
    coloured = [(np.abs(row[reach].astype(int) - colour_of(name)) <= 1).all() for row, name in zip(rows, EMOTIONS)]
    assert coloured == [name == "happy" for name in EMOTIONS]


def test_charts_can_be_turned_off():
    image = np.full((400, 600, 3), 90, np.uint8)
    [placed] = render(image, [face((100, 60, 80, 80))], charts=False).placements
    assert placed.chart is None and placed.label is not None


boxes = st.lists(
    st.tuples(st.integers(0, 560), st.integers(0, 420), st.integers(12, 160), st.integers(12, 160)),
    min_size=1,
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(boxes=boxes, scale=st.sampled_from([0.4, 1.0, 1.7]), charts=st.booleans())
def test_no_label_or_chart_ever_covers_another_face(boxes, scale, charts):
    faces = [face(box, number=index + 1) for index, box in enumerate(boxes)]
    width, height = round(640 * scale), round(480 * scale)
    placements = layout(faces, width, height, scale, charts)
    overlays = [rect for placed in placements for rect in (placed.label, placed.chart) if rect is not None]
    for index, placed in enumerate(placements):
        for rect in (placed.label, placed.chart):
            if rect is None:
                continue
            assert 0 <= rect[0] and 0 <= rect[1] and rect[2] <= width and rect[3] <= height
            for other_index, other in enumerate(placements):
                if other_index != index:
                    assert not overlaps(rect, other.box), f"face {placed.number}'s overlay covers face {other.number}"
            assert sum(overlaps(rect, other) for other in overlays) == 1, "overlays never cover each other"
        if placed.chart is not None:
            assert not overlaps(placed.chart, placed.box), "a chart never covers its own face"


def test_sizes_follow_the_drawn_image():
    small, large = Style.for_size(320, 240), Style.for_size(1280, 960)
    assert small.text_scale < large.text_scale and small.line < large.line
    assert small.chart_width < large.chart_width
    assert Style.for_size(64, 48).text_scale == Style.for_size(200, 150).text_scale, "never below legible"


def test_fer_annotate_results_and_client_replies_draw_the_same():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    probabilities = np.array([0.1, 0.05, 0.05, 0.5, 0.1, 0.1, 0.1])
    boxes = [(40, 50, 90, 90), (220, 60, 70, 80)]
    results = [FaceResult(Detection(*box, 0.9), probabilities, tuple(range(7))) for box in boxes]
    frame = AnnotatedFrame(400, 300, results)
    replies = [
        emotion_pb2.Face(
            box=emotion_pb2.Box(x=x, y=y, width=w, height=h),
            emotion=emotion_pb2.EMOTION_HAPPY,
            scores=[emotion_pb2.EmotionScore(emotion=i + 1, probability=p) for i, p in enumerate(probabilities)],
        )
        for x, y, w, h in boxes
    ]
    assert np.array_equal(draw_annotations(image, frame), draw_reply(image, replies))


def test_the_renderer_needs_neither_grpc_nor_the_protobuf_messages():
    code = ("import sys, ferstream.annotate.draw; "
            "print(sorted(m for m in sys.modules if m.startswith(('grpc', 'ferstream.v1', 'google.protobuf'))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
