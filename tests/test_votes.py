"""Pairing Kaggle-layout FER2013 images with their FER+ votes, on the real files."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from ferstream.training.data import FaceSet, load_dataset
from ferstream.training.data.votes import attach_votes
from ferstream.training.loop import targets_for


def rank_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation of each image in a with the same row of b."""
    def ranks(images: np.ndarray) -> np.ndarray:
        return images.reshape(len(images), -1).argsort(1).argsort(1).astype(np.float64)

    a, b = ranks(a), ranks(b)
    a -= a.mean(1, keepdims=True)
    b -= b.mean(1, keepdims=True)
    return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))


def test_kaggle_publictest_images_find_their_ferplus_votes(shared: Path) -> None:
    kaggle = load_dataset(shared / "datasets" / "fer2013", "PublicTest")
    ferplus = load_dataset(shared / "datasets" / "ferplus", "PublicTest")
    match = attach_votes(kaggle, ferplus)
    # FER+ drops its not-a-face, unknown and contempt majorities, so a few Kaggle images have no partner.
    matched = match.matched
    assert matched.sum() >= 0.95 * len(kaggle)

    # The pairs are the same photograph: checked at full resolution by rank correlation of all 2,304
    # pixels (the contrast stretch is monotone), where unrelated faces stay below 0.75.
    paired = rank_correlation(kaggle.images[matched], ferplus.images[match.partner[matched]])
    strangers = rank_correlation(kaggle.images, ferplus.images[np.arange(len(kaggle)) % len(ferplus)][::-1])
    assert np.percentile(paired, 1) > 0.85 and np.median(paired) > 0.99
    assert np.percentile(strangers, 99) < 0.75

    # And the annotators mostly agree with the original label, far above what a shuffled pairing gives.
    agree = match.faces.soft_labels.argmax(1) == kaggle.labels
    shuffled = ferplus.soft_labels[np.random.default_rng(0).integers(len(ferplus), size=len(kaggle))]
    assert agree[matched].mean() > 0.55
    assert (shuffled.argmax(1) == kaggle.labels).mean() < 0.35


def test_a_restretched_recompressed_copy_finds_its_votes_and_strangers_keep_their_label(shared: Path) -> None:
    public_test = load_dataset(shared / "datasets" / "fer2013", "PublicTest")
    # FER2013 holds exact duplicates, which may take either copy's votes: this test uses distinct images.
    _, distinct = np.unique(public_test.images.reshape(len(public_test), -1), axis=0, return_index=True)
    faces = public_test.subset(np.sort(distinct)[:300])
    order = np.random.default_rng(1).permutation(200)  # the voted set holds 200 of the 300, shuffled

    def restretch(image: np.ndarray) -> np.ndarray:
        gamma = 255 * (image / 255.0) ** 0.7 * 0.8 + 20
        _, jpeg = cv2.imencode(".jpg", gamma.astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 70])
        return cv2.imdecode(jpeg, cv2.IMREAD_GRAYSCALE)

    votes = np.random.default_rng(2).dirichlet(np.ones(7), size=200).astype(np.float32)
    voted = FaceSet(images=np.stack([restretch(faces.images[i]) for i in order]),
                    labels=votes.argmax(1), soft_labels=votes, source="restretched")
    match = attach_votes(faces, voted)

    assert np.array_equal(np.flatnonzero(match.matched), np.arange(200))
    assert np.array_equal(order[match.partner[:200]], np.arange(200))
    assert np.allclose(match.faces.soft_labels[order], votes)
    strangers = np.arange(200, 300)
    assert np.array_equal(match.faces.soft_labels[strangers], np.eye(7)[faces.labels[strangers]])


def test_votes_from_a_folder_without_votes_are_refused(shared: Path) -> None:
    faces = load_dataset(shared / "datasets" / "fer2013", "PublicTest")
    with pytest.raises(ValueError, match="no vote distributions"):
        attach_votes(faces, faces)


def test_targets_mix_the_label_with_the_votes() -> None:
    votes = np.array([[0, 0, 0, 0.5, 0, 0, 0.5], [0, 0, 0, 1, 0, 0, 0]], dtype=np.float32)
    faces = FaceSet(images=np.zeros((2, 48, 48), np.uint8), labels=np.array([3, 0]), soft_labels=votes)
    target = targets_for(faces, np.arange(2), smoothing=0.0, vote_weight=0.5)
    assert torch.allclose(target[0], torch.tensor([0, 0, 0, 0.75, 0, 0, 0.25]))
    assert torch.allclose(target[1], torch.tensor([0.5, 0, 0, 0.5, 0, 0, 0]))
    assert torch.allclose(targets_for(faces, np.arange(2), smoothing=0.0, vote_weight=0.0),
                          torch.eye(7)[[3, 0]])
