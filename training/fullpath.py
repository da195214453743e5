"""fer-eval-path: what the whole frame path (detect -> align -> crop -> classify) loses against direct crops.

  fer-eval-path faces   FER2013 PublicTest faces placed into larger frames (upscaled, with surroundings,
                        shifted; upright, rolled, or cut at a frame edge), run through the served frame
                        path with alignment on and off, scored beside the classifier on the same 48x48
                        crops and beside the share of faces the detector did not find.
  fer-eval-path border  the shared photos cut 2 px beyond each detected face box on each side in turn:
                        how often the face's top emotion stays what it was in the whole photo.
  fer-eval-path photos  labelled photos in class folders (e.g. realfaces-dev) through the whole path with a
                        model tier (--model fast|accurate): accuracy, per-class recall, balanced accuracy,
                        confusion matrix, ms per photo (photos.py).
  fer-eval-path light   the shared photos darkened, flattened, blurred or JPEG-compressed whole
                        (training/photometric.py ALTERATIONS): how many faces are found again and keep
                        the top emotion they have in the unaltered photo.

Each runs pipeline.framepath as the server does (its detectors, crops and served classifiers); rows with
alignment off or another fill re-cut the same detections with that one setting changed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from ferstream.model.labels import EMOTIONS
from ferstream.model.tiers import ACCURATE, FAST, TIER_NAMES, parse_model_argument
from ferstream.pipeline.crops import FILL, Fill, face_crops
from ferstream.pipeline.detectors import DEFAULT_MIN_FACE_PX, Detection, DetectorKind
from ferstream.pipeline.framepath import DetectOptions, FramePath, load_frame_path, set_thread_counts
from ferstream.commandline import CommandParser, add_version_argument, number_between, positive_int
from ferstream.pipeline.settings import MAX_FACES, MAX_PIXELS, MODELS_DIR_HELP, default_data_dir, default_models_dir
from ferstream.pipeline.tracking import match

from .data import DatasetError, load_dataset
from .photometric import ALTERATIONS
from .photos import evaluate_photos

# Frame the faces are placed in, and the side of a placed 48x48 face: 3x upscaled, about the size of a
# face a webcam sees at arm's length in 640x480.
FRAME_SIZE = (640, 480)
FACE_PX = 144
# Largest roll of the rolled condition, degrees either way (heads and cameras tilt about this much).
ROLL_DEGREES = 20.0
# Surroundings: the face's edge pixels carried out to the frame's edges and blurred this much (px): a soft
# scene in the face's own tones with no second face in it; the face is blended in over FEATHER_PX.
SURROUND_SIGMA = 24.0
FEATHER_PX = 8
# How far beyond the detected box the frame edge is put in the edge and border conditions.
CUT_PX = 2
SIDES = ("left", "top", "right", "bottom")


def feather_mask(side: int, feather: int) -> np.ndarray:
    """(side, side) float32 weights: 1 inside, falling linearly to 0 over `feather` px at every edge."""
    ramp = np.clip((np.arange(side, dtype=np.float32) + 0.5) / feather, 0.0, 1.0)
    ramp = np.minimum(ramp, ramp[::-1])
    return np.minimum.outer(ramp, ramp)


def place_face(face: np.ndarray, centre: tuple[float, float], roll: float, frame_size: tuple[int, int] = FRAME_SIZE,
               face_px: int = FACE_PX) -> np.ndarray:
    """An (H, W, 3) uint8 BGR frame with a (48, 48) uint8 grey face upscaled to face_px, centred at `centre`
    (px), turned by `roll` degrees counter-clockwise about its centre, in blurred surroundings grown from its
    edges. The face must lie inside the frame (random_centre); ValueError otherwise."""
    width, height = frame_size
    if not (face_px / 2 <= centre[0] <= width - face_px / 2 and face_px / 2 <= centre[1] <= height - face_px / 2):
        raise ValueError(f"a {face_px} px face centred at {centre} leaves the {width}x{height} frame")
    big = cv2.resize(face, (face_px, face_px), interpolation=cv2.INTER_CUBIC)
    left, top = int(round(centre[0] - face_px / 2)), int(round(centre[1] - face_px / 2))
    scene = cv2.copyMakeBorder(big, top, height - top - face_px, left, width - left - face_px, cv2.BORDER_REPLICATE)
    scene = cv2.GaussianBlur(scene.astype(np.float32), (0, 0), SURROUND_SIGMA)
    big = big.astype(np.float32)
    alpha = feather_mask(face_px, FEATHER_PX)
    window = scene[top:top + face_px, left:left + face_px]
    window[:] = alpha * big + (1.0 - alpha) * window
    if roll:
        turn = cv2.getRotationMatrix2D(centre, roll, 1.0)
        scene = cv2.warpAffine(scene, turn, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return cv2.cvtColor(np.clip(scene + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)


def placed_in_frame(photo: np.ndarray) -> np.ndarray:
    """A face crop (BGR or grey, any size) placed grey and upscaled to FACE_PX in the middle of a FRAME_SIZE
    frame (place_face)."""
    grey = photo if photo.ndim == 2 else cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
    return place_face(grey, (FRAME_SIZE[0] / 2.0, FRAME_SIZE[1] / 2.0), 0.0)


def random_centre(rng: np.random.Generator, frame_size: tuple[int, int], face_px: int) -> tuple[float, float]:
    """A uniformly random face centre keeping a face_px square inside the frame at any roll (0.71 face_px
    from every edge)."""
    reach = 0.71 * face_px
    width, height = frame_size
    if min(width, height) < 2 * reach:
        raise ValueError(f"a {face_px} px face does not fit a {width}x{height} frame")
    return float(rng.uniform(reach, width - reach)), float(rng.uniform(reach, height - reach))


def nearest_face(detections: Sequence[Detection], centre: tuple[float, float], face_px: float) -> int | None:
    """Index of the detection whose box centre is nearest `centre`, if within face_px / 2; else None."""
    best, best_distance = None, face_px / 2.0
    for index, box in enumerate(detections):
        distance = float(np.hypot(box.x + box.width / 2.0 - centre[0], box.y + box.height / 2.0 - centre[1]))
        if distance <= best_distance:
            best, best_distance = index, distance
    return best


def cut_beyond(frame: np.ndarray, box: Detection, side: str, cut_px: int = CUT_PX) -> tuple[np.ndarray, int, int]:
    """The frame cut cut_px beyond one side of the box (clamped to the frame), with the (x, y) offset of the
    cut frame's origin in the original."""
    height, width = frame.shape[:2]
    left, top, right, bottom = 0, 0, width, height
    if side == "left":
        left = max(0, box.x - cut_px)
    elif side == "top":
        top = max(0, box.y - cut_px)
    elif side == "right":
        right = min(width, box.x + box.width + cut_px)
    elif side == "bottom":
        bottom = min(height, box.y + box.height + cut_px)
    else:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    return np.ascontiguousarray(frame[top:bottom, left:right]), left, top


def moved(box: Detection, dx: float, dy: float) -> Detection:
    """The detection shifted by (dx, dy) px, landmarks included (rounded box corners)."""
    return replace(box, x=int(round(box.x + dx)), y=int(round(box.y + dy)),
                   landmarks=tuple((x + dx, y + dy) for x, y in box.landmarks))


@dataclass(frozen=True)
class Found:
    """One frame's face as the path found it: the matched detection and its crops with alignment on and off
    (not the frame: a run over all of PublicTest would otherwise hold gigabytes of frames)."""

    box: Detection
    crops: dict[bool, np.ndarray]


def find(path: FramePath, frame: np.ndarray, centre: tuple[float, float], face_px: float,
         options: DetectOptions, fill: Fill = FILL) -> Found | None:
    """The path's detection nearest the placed face, with its crops aligned (the path's own crop when fill is
    the served one) and unaligned; None when missed."""
    detected = path.detect(frame, options)
    index = nearest_face(detected.detections, centre, face_px)
    if index is None:
        return None
    box = detected.detections[index]
    aligned = detected.crops[index] if fill is FILL else face_crops(frame, [box], align=True, fill=fill)[0]
    return Found(box, {True: aligned, False: face_crops(frame, [box], align=False, fill=fill)[0]})


@dataclass(frozen=True)
class PathRow:
    """One condition with alignment on or off; accuracies are fractions 0-1 of `faces`."""

    condition: str
    alignment: bool
    faces: int
    not_found: float
    # Not found counts as wrong.
    path_accuracy: float
    # Over the faces found only.
    found_accuracy: float
    # The classifier on the same faces' 48x48 crops: all of them, and those the path found.
    direct_accuracy: float
    direct_found_accuracy: float
    # Edge condition only: share of found faces whose top emotion is what the uncut frame's was.
    unchanged: float | None = None


def predict(path: FramePath, found: Sequence[Found | None], align: bool) -> np.ndarray:
    """(N,) EMOTIONS index of each found face's top class, -1 where the face was not found."""
    predicted = np.full(len(found), -1)
    hits = [index for index, face in enumerate(found) if face is not None]
    if hits:
        predicted[hits] = path.classify(np.stack([found[index].crops[align] for index in hits])).argmax(axis=1)
    return predicted


def score(condition: str, align: bool, labels: np.ndarray, direct: np.ndarray, predicted: np.ndarray,
          reference: np.ndarray | None = None) -> PathRow:
    """A PathRow from one condition's predictions (-1: not found) beside the direct-crop predictions; with a
    reference (the uncut frames' predictions, -1 where missed), the share of faces found in both that kept
    their top class."""
    found = predicted >= 0
    correct = predicted == labels
    unchanged = None
    if reference is not None:
        both = found & (reference >= 0)
        unchanged = float((predicted[both] == reference[both]).mean()) if both.any() else 0.0
    direct_correct = direct == labels
    return PathRow(condition, align, len(labels), float(1.0 - found.mean()), float(correct.mean()),
                   float(correct[found].mean()) if found.any() else 0.0, float(direct_correct.mean()),
                   float(direct_correct[found].mean()) if found.any() else 0.0, unchanged)


@dataclass(frozen=True)
class FacesReport:
    """fer-eval-path faces: settings and rows."""

    data: str
    model: str
    detector: str
    fill: str
    min_face_px: int
    frame_size: tuple[int, int]
    face_px: int
    roll_degrees: float
    seed: int
    rows: list[PathRow]


def evaluate_faces(path: FramePath, images: np.ndarray, labels: np.ndarray, options: DetectOptions, seed: int,
                   roll: float, fill: Fill, frame_size: tuple[int, int] = FRAME_SIZE,
                   face_px: int = FACE_PX) -> list[PathRow]:
    """Rows for upright, rolled (uniform within +-roll degrees) and edge-cut placements, alignment on and off.

    images: (N, 48, 48) uint8 grey; labels: (N,) EMOTIONS indices. The placement of images[i] (centre, roll,
    edge) draws from numpy's default_rng((seed, i)), so a run is repeatable.
    """
    direct = path.classify(images).argmax(axis=1)
    rolled_name = f"rolled ±{roll:g}°"
    conditions: dict[str, list[Found | None]] = {"upright": [], rolled_name: [], "edge cut": []}
    for index, face in enumerate(images):
        rng = np.random.default_rng((seed, index))
        centre = random_centre(rng, frame_size, face_px)
        angle = float(rng.uniform(-roll, roll))
        side = SIDES[int(rng.integers(len(SIDES)))]
        placed = place_face(face, centre, 0.0, frame_size, face_px)
        upright = find(path, placed, centre, face_px, options, fill)
        conditions["upright"].append(upright)
        rolled = place_face(face, centre, angle, frame_size, face_px)
        conditions[rolled_name].append(find(path, rolled, centre, face_px, options, fill))
        edge = None
        if upright is not None:
            frame, dx, dy = cut_beyond(placed, upright.box, side)
            edge = find(path, frame, (centre[0] - dx, centre[1] - dy), face_px, options, fill)
        conditions["edge cut"].append(edge)
    rows = []
    for align in (True, False):
        uncut = predict(path, conditions["upright"], align)
        for name, found in conditions.items():
            predicted = uncut if name == "upright" else predict(path, found, align)
            rows.append(score(name, align, labels, direct, predicted, uncut if name == "edge cut" else None))
    return rows


@dataclass(frozen=True)
class BorderReport:
    """fer-eval-path border: per side and in all, how many cuts kept the top emotion.

    same_box: the detection of the whole photo moved into the cut frame (the crop alone changes);
    redetected: the cut frame through the whole path, matched to that detection by centre (lost: not found).
    """

    faces_dir: str
    model: str
    detector: str
    fill: str
    alignment: bool
    cut_px: int
    faces: int
    cuts: int
    same_box_unchanged: int
    redetected_unchanged: int
    redetected: int
    lost: int

    def to_text(self) -> str:
        """A Markdown table of the counts and shares."""
        same = self.same_box_unchanged / self.cuts if self.cuts else 0.0
        again = self.redetected_unchanged / self.redetected if self.redetected else 0.0
        return "\n".join([
            "| faces | cuts | top emotion unchanged, same box | unchanged, detected again | not found again |",
            "|---:|---:|---:|---:|---:|",
            f"| {self.faces} | {self.cuts} | {self.same_box_unchanged} ({same:.1%}) | "
            f"{self.redetected_unchanged}/{self.redetected} ({again:.1%}) | {self.lost} |",
        ])


def photo_paths(faces_dir: Path) -> list[Path]:
    """Every JPEG or PNG in faces_dir, sorted; DatasetError when there is none."""
    paths = sorted(path for path in faces_dir.iterdir() if path.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not paths:
        raise DatasetError(f"{faces_dir}: no .jpg or .png photos")
    return paths


def evaluate_border(path: FramePath, faces_dir: Path, options: DetectOptions, align: bool, fill: Fill,
                    cut_px: int = CUT_PX) -> BorderReport:
    """Every face the path finds in every photo of faces_dir, cut cut_px beyond each side of its box in turn
    (sides where the photo ends sooner are skipped); see BorderReport."""
    faces = cuts = same_box = again = redetected = lost = 0
    for photo_path in photo_paths(faces_dir):
        photo = read_photo(photo_path)
        height, width = photo.shape[:2]
        boxes = path.detect(photo, options).detections
        faces += len(boxes)
        if not boxes:
            continue
        before = path.classify(face_crops(photo, boxes, align=align, fill=fill)).argmax(axis=1)
        for box, top_class in zip(boxes, before):
            for side in SIDES:
                frame, dx, dy = cut_beyond(photo, box, side, cut_px)
                if frame.shape[:2] == (height, width):
                    continue
                cuts += 1
                shifted = moved(box, -dx, -dy)
                crop = face_crops(frame, [shifted], align=align, fill=fill)
                same_box += int(path.classify(crop).argmax() == top_class)
                centre = (shifted.x + shifted.width / 2.0, shifted.y + shifted.height / 2.0)
                found = find(path, frame, centre, max(box.width, box.height), options, fill)
                if found is None:
                    lost += 1
                    continue
                redetected += 1
                again += int(path.classify(found.crops[align][None]).argmax() == top_class)
    return BorderReport(str(faces_dir), str(path.classifier.path), (options.detector or path.default_detector).name,
                        fill.value, align, cut_px, faces, cuts, same_box, again, redetected, lost)


@dataclass(frozen=True)
class LightRow:
    """One alteration of every photo: faces of the unaltered photos, how many the path found again (paired
    by box overlap: the tracker's assignment, pipeline/tracking.match) and how many of those kept their
    top emotion."""

    alteration: str
    faces: int
    found: int
    kept: int

    @property
    def kept_share(self) -> float:
        """Faces that kept their top emotion, of all faces of the unaltered photos (a face lost counts as changed)."""
        return self.kept / self.faces if self.faces else 0.0


@dataclass(frozen=True)
class LightReport:
    """fer-eval-path light: one LightRow per alteration of the photos in faces_dir."""

    faces_dir: str
    model: str
    detector: str
    rows: list[LightRow]

    def to_text(self) -> str:
        """A Markdown table: alteration, faces, found again, top emotion kept (count and share of all faces)."""
        lines = ["| alteration of the same photo | faces | found again | top emotion kept |", "|---|---:|---:|---:|"]
        lines += [f"| {row.alteration} | {row.faces} | {row.found} | {row.kept} ({row.kept_share:.2f}) |"
                  for row in self.rows]
        return "\n".join(lines)


def read_photo(photo_path: Path) -> np.ndarray:
    """A BGR photo; DatasetError when it cannot be decoded."""
    photo = cv2.imread(str(photo_path), cv2.IMREAD_COLOR)
    if photo is None:
        raise DatasetError(f"{photo_path}: not a readable image")
    return photo


def evaluate_light(path: FramePath, faces_dir: Path, options: DetectOptions,
                   alterations: Sequence[str] = tuple(ALTERATIONS)) -> LightReport:
    """Every photo of faces_dir altered whole by each named alteration and sent through the whole path,
    its faces paired with the unaltered photo's; see LightRow. ValueError for an unknown alteration."""
    unknown = [name for name in alterations if name not in ALTERATIONS]
    if unknown:
        raise ValueError(f"unknown alteration {unknown[0]!r}; known: {', '.join(ALTERATIONS)}")
    counts = {name: [0, 0, 0] for name in alterations}
    for photo_path in photo_paths(faces_dir):
        photo = read_photo(photo_path)
        before = path.annotate(photo, options).faces
        for name in alterations:
            after = path.annotate(ALTERATIONS[name](photo), options).faces
            pairs = match([boxed(face.box) for face in before], [boxed(face.box) for face in after])
            counts[name][0] += len(before)
            counts[name][1] += len(pairs)
            counts[name][2] += sum(before[i].top_class == after[j].top_class for i, j in pairs)
    rows = [LightRow(name, *counts[name]) for name in alterations]
    model = path.choose_model(options.model)
    return LightReport(str(faces_dir), str(path.classifier.path) if model == FAST else model,
                       (options.detector or path.default_detector).name, rows)


def boxed(box: Detection) -> tuple[int, int, int, int]:
    """A detection's (x, y, width, height)."""
    return box.x, box.y, box.width, box.height


def faces_table(report: FacesReport) -> str:
    """A Markdown table of the rows, percentages with one decimal."""
    lines = ["| condition | alignment | faces | not found | path accuracy | direct-crop accuracy | path accuracy, "
             "found faces | direct-crop accuracy, found faces | top emotion as uncut |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in report.rows:
        unchanged = "" if row.unchanged is None else f"{row.unchanged:.1%}"
        lines.append(f"| {row.condition} | {'on' if row.alignment else 'off'} | {row.faces} | {row.not_found:.1%} | "
                     f"{row.path_accuracy:.1%} | {row.direct_accuracy:.1%} | {row.found_accuracy:.1%} | "
                     f"{row.direct_found_accuracy:.1%} | {unchanged} |")
    return "\n".join(lines)


def default_test_dir() -> Path:
    """$FER_DATA_DIR/datasets/fer2013/test (PublicTest), FER_DATA_DIR defaulting to ../shared."""
    return default_data_dir() / "datasets" / "fer2013" / "test"


def default_faces_dir() -> Path:
    """$FER_DATA_DIR/testdata/faces, FER_DATA_DIR defaulting to ../shared."""
    return default_data_dir() / "testdata" / "faces"



def build_parser() -> argparse.ArgumentParser:
    """fer-eval-path's options; argparse exits 2 on a bad one."""
    parser = CommandParser(prog="fer-eval-path", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    add_version_argument(parser)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", default=None, metavar="TIER|FILE",
                        help=f"model tier ({' or '.join(TIER_NAMES)}; {ACCURATE} only with photos and light) or the "
                             "fast tier's .onnx or PyTorch model file (default: the fast tier, $FER_MODEL or the "
                             "shipped model; photos: accurate)")
    common.add_argument("--models-dir", type=Path, default=None, help=MODELS_DIR_HELP)
    common.add_argument("--detector", choices=[kind.name.lower() for kind in DetectorKind], default=None,
                        help="face detector (default: the server's default, the most accurate available)")
    common.add_argument("--min-face-px", type=positive_int, default=None,
                        help="smallest face to find, px of the frame (default: the server's default, "
                             f"{DEFAULT_MIN_FACE_PX}); smaller searches finer copies of the frame")
    common.add_argument("--fill", choices=[fill.value for fill in Fill], default=FILL.value,
                        help="what fills a crop where it leaves the frame (default: %(default)s, as served)")
    common.add_argument("--threads", type=positive_int, default=1,
                        help="threads of the classifier runtime and of OpenCV (decoding, detection) "
                             "(default: %(default)s)")
    common.add_argument("--json", action="store_true", help="print one JSON object instead of a Markdown table")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help="what to score")

    faces = commands.add_parser("faces", parents=[common], help="FER2013 faces placed into frames",
                                description="FER2013 PublicTest faces upscaled into larger frames, upright, rolled "
                                            "and cut at an edge, through the whole path; alignment on and off.")
    faces.add_argument("data", nargs="?", type=Path, default=None,
                       help=f"PublicTest faces (default: {default_test_dir()})")
    faces.add_argument("--limit", type=positive_int, default=None,
                       help="score this many faces, drawn at random with --seed (default: all)")
    faces.add_argument("--seed", type=int, default=0, help="placement and sampling seed (default: %(default)s)")
    faces.add_argument("--roll", type=number_between(0, 45), default=ROLL_DEGREES,
                       help="largest roll of the rolled condition, degrees either way (default: %(default)s)")

    border = commands.add_parser("border", parents=[common], help="photos cut 2 px beyond each face",
                                 description="Each face the path finds in the shared photos, with the photo cut "
                                             f"{CUT_PX} px beyond its box on each side in turn: is the top emotion "
                                             "unchanged?")
    border.add_argument("faces_dir", nargs="?", type=Path, default=None,
                        help=f"folder of photos (default: {default_faces_dir()})")
    border.add_argument("--no-align", action="store_true", help="crop without alignment")

    photos = commands.add_parser("photos", parents=[common], help="labelled photos through the whole path",
                                 description="Labelled photos in class folders through the whole path with a "
                                             "model tier: the largest face answers, no face counts as wrong.")
    photos.add_argument("data", type=Path, help="folder of class folders (angry/, disgust/, ...) of photos")
    photos.add_argument("--limit", type=positive_int, default=None,
                        help="score this many photos, drawn at random with --seed (default: all)")
    photos.add_argument("--seed", type=int, default=0, help="sampling seed (default: %(default)s)")
    photos.add_argument("--place", action="store_true",
                        help="the photos are face crops (CK+48, FER2013): place each, grey, upscaled to "
                             f"{FACE_PX} px, in the middle of a {FRAME_SIZE[0]}x{FRAME_SIZE[1]} frame as the "
                             "faces command does")

    light = commands.add_parser("light", parents=[common], help="photos darkened, flattened, blurred, compressed",
                                description="The shared photos altered whole as rooms, lenses and networks alter "
                                            "them: how many faces are found again and keep their top emotion?")
    light.add_argument("faces_dir", nargs="?", type=Path, default=None,
                       help=f"folder of photos (default: {default_faces_dir()})")
    light.add_argument("--alteration", action="append", choices=list(ALTERATIONS), default=None,
                       help="score only this alteration; repeat for several (default: all)")
    return parser


def run(args: argparse.Namespace) -> str:
    """Runs the chosen command; the report as Markdown, or JSON with --json. Raises DatasetError,
    FileNotFoundError or ValueError for bad input."""
    set_thread_counts(args.threads)
    tier, model_file = parse_model_argument(args.model)
    tier = tier or (ACCURATE if args.command == "photos" else FAST)
    if tier != FAST and args.command not in ("photos", "light"):
        raise ValueError(f"{args.command} scores the fast tier's 48x48 crops; --model {tier} applies to photos "
                         "and light")
    path = load_frame_path(args.models_dir or default_models_dir(), model_file, tuple(range(len(EMOTIONS))),
                           MAX_PIXELS, MAX_FACES, models=(tier,), default_model=tier)
    detector = DetectorKind[args.detector.upper()] if args.detector else None
    options = DetectOptions(detector=detector, min_face_px=args.min_face_px or 0, model=tier)
    if args.command == "photos":
        prepare = placed_in_frame if args.place else None
        report = evaluate_photos(path, args.data, options, args.limit, args.seed, prepare)
        return json.dumps(asdict(report)) if args.json else report.to_text()
    fill = Fill(args.fill)
    detector_name = (detector or path.default_detector).name
    if args.command == "light":
        report = evaluate_light(path, args.faces_dir or default_faces_dir(), options,
                                args.alteration or tuple(ALTERATIONS))
        return json.dumps(asdict(report)) if args.json else report.to_text()
    if args.command == "border":
        report = evaluate_border(path, args.faces_dir or default_faces_dir(), options, not args.no_align, fill)
        return json.dumps(asdict(report)) if args.json else report.to_text()
    data = args.data or default_test_dir()
    faces = load_dataset(data, "PublicTest")
    chosen = np.arange(len(faces))
    if args.limit is not None and args.limit < len(faces):
        chosen = np.sort(np.random.default_rng(args.seed).choice(len(faces), args.limit, replace=False))
    rows = evaluate_faces(path, faces.images[chosen], faces.labels[chosen], options, args.seed, args.roll, fill)
    report = FacesReport(str(data), str(path.classifier.path), detector_name, fill.value,
                         options.min_face_px or path.min_face_px, FRAME_SIZE, FACE_PX, args.roll, args.seed, rows)
    return json.dumps(asdict(report)) if args.json else faces_table(report)


def main(argv: list[str] | None = None) -> int:
    """fer-eval-path's command line: 0 with the report, 2 for bad input (one line on stderr), 1 on Ctrl-C."""
    args = build_parser().parse_args(argv)
    try:
        print(run(args))
    except (DatasetError, FileNotFoundError, ValueError) as error:
        print(f"fer-eval-path: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fer-eval-path: interrupted", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
