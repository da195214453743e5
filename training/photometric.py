"""How rooms, lenses, sensors and networks alter a face, as functions on uint8 images.

Two users: fer-train draws them at random on training crops (`perturb_crops`, before the model's
preprocessing, so the network learns to read a dim, flat, soft or blocky face as it reads a clean one),
and fer-eval-path applies the named ALTERATIONS to whole photos to measure how many faces keep their
top emotion. Every function takes and returns uint8 arrays of any shape (grey crops or BGR photos);
NumPy and OpenCV only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Float grey levels -> uint8, rounded and clipped to 0..255 (as a camera stores them)."""
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def brightness(image: np.ndarray, factor: float) -> np.ndarray:
    """Every pixel times factor: 0.5 is an ordinary dim room, 0.25 a dark one (less light, same camera)."""
    return to_uint8(image.astype(np.float32) * factor)


def contrast(image: np.ndarray, factor: float) -> np.ndarray:
    """Pixels pulled towards (factor < 1) or pushed from the image's mean grey: flat light, haze, a cheap webcam."""
    pixels = image.astype(np.float32)
    mean = pixels.mean()
    return to_uint8(mean + (pixels - mean) * factor)


def gamma(image: np.ndarray, exponent: float) -> np.ndarray:
    """255 * (x / 255) ** exponent: above 1 darkens the mid-tones (an under-exposed sensor curve), below 1 lifts
    them."""
    return to_uint8(255.0 * (image.astype(np.float32) / 255.0) ** exponent)


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of sigma px (defocus, a soft lens); sigma 0 returns the image."""
    return cv2.GaussianBlur(image, (0, 0), sigma) if sigma > 0 else image


def motion_blur(image: np.ndarray, length: int, angle_deg: float) -> np.ndarray:
    """Blur along a line of `length` px at angle_deg (a moving head or camera); length < 2 returns the image."""
    if length < 2:
        return image
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0
    turn = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), angle_deg, 1.0)
    kernel = cv2.warpAffine(kernel, turn, (length, length))
    return cv2.filter2D(image, -1, kernel / max(float(kernel.sum()), 1e-6), borderType=cv2.BORDER_REFLECT)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """The image encoded as a JPEG of that quality (1-100) and decoded again: a congested video call's blocks."""
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"OpenCV could not encode a {image.shape} image as JPEG")
    return cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED).reshape(image.shape)


def noise(image: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian sensor noise of std grey levels on every pixel."""
    return to_uint8(image.astype(np.float32) + rng.normal(0.0, std, image.shape).astype(np.float32))


def shadow(image: np.ndarray, depth: float, rng: np.random.Generator) -> np.ndarray:
    """A shadow across part of the image: beyond a random line, pixels are darkened by up to `depth` (0..1),
    with a soft edge a quarter of the side wide (light from one side of the face)."""
    height, width = image.shape[:2]
    angle = rng.uniform(0, 2 * np.pi)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    # Signed distance from a line through a random point, in units of the image's side.
    along = ((cols - rng.uniform(0, width)) * np.cos(angle) + (rows - rng.uniform(0, height)) * np.sin(angle))
    ramp = np.clip(along / (0.25 * max(height, width)) + 0.5, 0.0, 1.0)
    gain = 1.0 - depth * ramp
    if image.ndim == 3:
        gain = gain[..., None]
    return to_uint8(image.astype(np.float32) * gain)


# The alterations fer-eval-path scores, by name: each as a user meets it (photos altered whole).
ALTERATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "brightness-0.5": lambda image: brightness(image, 0.5),
    "brightness-0.25": lambda image: brightness(image, 0.25),
    "contrast-0.3": lambda image: contrast(image, 0.3),
    "gamma-2": lambda image: gamma(image, 2.0),
    "blur-1": lambda image: gaussian_blur(image, 1.0),
    "motion-blur-5": lambda image: motion_blur(image, 5, 30.0),
    "jpeg-20": lambda image: jpeg(image, 20),
}


@dataclass(frozen=True)
class PhotometricSpec:
    """Random photometric alterations of training crops; each is drawn for an image with `probability`.

    brightness_min: brightness factors are drawn log-uniformly in [brightness_min, 1.5].
    contrast_min: contrast factors log-uniformly in [contrast_min, 1.5].
    gamma_max: gamma exponents log-uniformly in [1 / gamma_max, gamma_max].
    blur_max: Gaussian blur sigma uniformly in [0.3, blur_max] px (of the 48 px crop).
    motion_blur_max: motion blur lengths in 2..motion_blur_max px, at any angle.
    jpeg_min: JPEG qualities in jpeg_min..90.
    noise_max: noise std uniformly in [1, noise_max] grey levels.
    shadow_max: shadow depth uniformly in [0.2, shadow_max].
    A setting of 0 (1 for gamma_max) turns that alteration off; probability 0 turns them all off.
    The ranges cover the alterations fer-eval-path measures (ALTERATIONS) with room on either side.
    """

    probability: float = 0.25
    brightness_min: float = 0.15
    contrast_min: float = 0.2
    gamma_max: float = 2.5
    blur_max: float = 1.5
    motion_blur_max: int = 7
    jpeg_min: int = 10
    noise_max: float = 8.0
    shadow_max: float = 0.7

    @property
    def enabled(self) -> bool:
        """Whether any alteration can be drawn."""
        return self.probability > 0


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """A draw whose logarithm is uniform in [log low, log high]: factors 0.5 and 2 equally likely around 1."""
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def perturb_crop(crop: np.ndarray, spec: PhotometricSpec, rng: np.random.Generator) -> np.ndarray:
    """One uint8 image with each alteration of spec applied with spec.probability, in the order light meets
    a camera: light (brightness, contrast, gamma, shadow), optics (blur), sensor (noise), encoder (JPEG)."""
    def drawn(setting: float) -> bool:
        return bool(setting) and rng.random() < spec.probability

    if drawn(spec.brightness_min):
        crop = brightness(crop, log_uniform(rng, spec.brightness_min, 1.5))
    if drawn(spec.contrast_min):
        crop = contrast(crop, log_uniform(rng, spec.contrast_min, 1.5))
    if spec.gamma_max > 1 and drawn(spec.gamma_max):
        crop = gamma(crop, log_uniform(rng, 1 / spec.gamma_max, spec.gamma_max))
    if drawn(spec.shadow_max):
        crop = shadow(crop, rng.uniform(0.2, max(spec.shadow_max, 0.2)), rng)
    if drawn(spec.blur_max):
        crop = gaussian_blur(crop, rng.uniform(0.3, max(spec.blur_max, 0.3)))
    if spec.motion_blur_max >= 2 and drawn(spec.motion_blur_max):
        crop = motion_blur(crop, int(rng.integers(2, spec.motion_blur_max + 1)), rng.uniform(0, 180))
    if drawn(spec.noise_max):
        crop = noise(crop, rng.uniform(1, max(spec.noise_max, 1)), rng)
    if drawn(spec.jpeg_min):
        crop = jpeg(crop, int(rng.integers(spec.jpeg_min, 91)))
    return crop


def perturb_crops(crops: np.ndarray, spec: PhotometricSpec, rng: np.random.Generator) -> np.ndarray:
    """(N, H, W) uint8 crops -> a perturbed copy (perturb_crop on each); the crops themselves when spec is off."""
    if not spec.enabled:
        return crops
    return np.stack([perturb_crop(crop, spec, rng) for crop in crops]) if len(crops) else crops
