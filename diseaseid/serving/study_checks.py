"""Is a study one subject's stack? The checks ``POST /predict/study`` runs before any slice is read.

A study is read as one subject's stack (diseaseid.serving.study). Nothing in the pixels proves that, but two
things betray a mix: DICOM headers that name different patients, studies or series (or another orientation or
pixel spacing), and, for JPEG/PNG, slices whose shapes or contents do not belong together. :func:`check_study`
refuses what is certain (:class:`MixedStudy`) and returns warnings for what is only likely. The similarity
thresholds were measured on the dementia data set's 160 subjects (``scripts/study_similarity.py``; the numbers
are in docs/studies.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# How far two slices of one series may differ in ImageOrientationPatient (direction cosines) and PixelSpacing
# (relative) before they are not one series: far above the rounding of DICOM's 16-character decimal strings.
ORIENTATION_TOLERANCE = 1e-3
SPACING_TOLERANCE = 1e-3
# Slices whose width/height ratios differ by more than this are not one export of one stack.
ASPECT_TOLERANCE = 0.02
# Neighbours (in the order sent) correlating less than this (slice_similarity) are less alike than any two
# slices of one subject up to 8 positions apart were in the measurement, and than most slices of two subjects.
MIN_NEIGHBOUR_SIMILARITY = 0.75
# In a study of 4 or more slices, a neighbour pair whose dissimilarity (1 - similarity) is this many times the
# median of the study's other pairs is a sudden change (another subject, a missing stretch), where slices of one
# evenly spaced stack stay under 4.
MAX_DISSIMILARITY_RATIO = 6.0
# Slices i and i+2 more alike than either is to slice i+1 (by this margin): never seen in one subject's stack in
# stack order; the mark of two interleaved subjects or of slices out of order.
SKIP_MARGIN = 0.01

# The DICOM attributes that must agree across a study, in the order they are checked, with the error code of
# a mismatch.
SERIES_IDENTITY = (("PatientID", "mixed_patients"), ("StudyInstanceUID", "mixed_studies"),
                   ("SeriesInstanceUID", "mixed_series"))


class MixedStudy(ValueError):
    """The slices are certainly not one subject's series; ``code`` names the mismatch, the message which
    slices (by position in the study) differ, never the values (they may identify a patient)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class StudyWarning:
    """The slices may not be one stack: the answer still comes, with this said beside it."""

    code: str  # "mixed_sizes" | "unlike_neighbours"
    message: str
    slices: tuple[int, ...]  # positions in the study


@dataclass(frozen=True)
class SliceSource:
    """What a study check knows about one slice besides its pixels."""

    format: str  # "jpeg" | "png" | "dicom"
    width: int
    height: int
    # For DICOM: SERIES_IDENTITY values, "ImageOrientationPatient" (6 floats) and "PixelSpacing" (2 floats);
    # None where the file lacks the attribute.
    dicom: dict | None = None


def _block_sums(image: np.ndarray, block: int) -> np.ndarray:
    """H x W x C (H, W multiples of ``block``) -> the sums of its ``block`` x ``block`` x C cells, exact for bytes.

    A byte image's cell sums fit 16 bits for the model inputs' cells (4 x 4 x 3 x 255 = 12,240), and are built as
    strided integer additions (a third of the time of numpy's multi-axis sum, the same integers); anything else
    goes through that sum, as integers (bytes, large cells) or float64."""
    h, w, c = image.shape
    k = block * c
    if image.dtype == np.uint8 and block * block * c * 255 < 2 ** 16:
        flat = image.reshape(h, (w // block) * k)
        columns = flat[:, 0::k].astype(np.uint16)
        for j in range(1, k):
            columns += flat[:, j::k]
        total = columns[0::block].copy()
        for j in range(1, block):
            total += columns[j::block]
        return total
    cells = image.reshape(h // block, block, w // block, block, c)
    return cells.sum(axis=(1, 3, 4), dtype=np.int64 if image.dtype.kind in "ub" else np.float64)


def grey_features(images: np.ndarray | list[np.ndarray], block: int = 4) -> np.ndarray:
    """N model inputs (224 x 224 x 3) -> N x 3136 unit vectors: grey levels as 4 x 4 block means on a 56 x 56
    grid, centred; the dot product of two is their Pearson correlation (a flat slice gives zeros). One slice at
    a time: a 64-slice study never holds more than one slice in floating point."""
    rows = []
    for image in images:
        image = np.asarray(image)
        if image.ndim == 2:
            image = image[:, :, None]
        h, w = (image.shape[0] // block) * block, (image.shape[1] // block) * block
        rows.append(_block_sums(image[:h, :w], block).ravel() / float(block * block * image.shape[2]))
    grid = np.stack(rows)
    grid -= grid.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(grid, axis=1, keepdims=True)
    return np.divide(grid, norm, out=np.zeros_like(grid), where=norm > 0)


def slice_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two slices' grey levels on a 56 x 56 grid (the 224 x 224 model inputs are
    already one size): 1 for the same picture, lower the less alike, 0 when either is flat."""
    fa, fb = grey_features([a, b])
    return float(fa @ fb)


def neighbour_similarities(images: np.ndarray | list[np.ndarray]) -> list[float]:
    """``slice_similarity`` of each slice with the next, in the order given (N - 1 values)."""
    features = grey_features(images)
    return [float(features[i] @ features[i + 1]) for i in range(len(features) - 1)]


def _differs(a, b, tolerance: float, relative: bool = False) -> bool:
    if a is None or b is None:
        return (a is None) != (b is None)
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return True
    scale = np.maximum(np.abs(a), np.abs(b)) if relative else 1.0
    return bool(np.any(np.abs(a - b) > tolerance * scale))


def _first_mismatch(values: list, differs) -> tuple[int, int] | None:
    """(0, i) for the first slice i whose value differs from slice 0's."""
    return next(((0, i) for i in range(1, len(values)) if differs(values[0], values[i])), None)


def check_study(sources: list[SliceSource], images: np.ndarray | list[np.ndarray],
                features: np.ndarray | None = None) -> list[StudyWarning]:
    """Refuse a study that is certainly not one subject's series (:class:`MixedStudy`), and return warnings
    for one that may not be one stack.

    Refused: DICOM mixed with JPEG/PNG; DICOM slices whose PatientID, StudyInstanceUID or SeriesInstanceUID
    differ, whose ImageOrientationPatient or PixelSpacing differ beyond ORIENTATION_TOLERANCE /
    SPACING_TOLERANCE, or whose Rows x Columns differ; JPEG/PNG slices whose width/height ratios differ by more
    than ASPECT_TOLERANCE. Warned (``code``): JPEG/PNG slices of one aspect ratio but different sizes
    (``mixed_sizes``); neighbours, in the order sent, less alike than MIN_NEIGHBOUR_SIMILARITY
    (``unlike_neighbours``), or MAX_DISSIMILARITY_RATIO times less alike than the study's other neighbours
    (``sudden_change``); slices i and i+2 more alike than either is to slice i+1 (``out_of_order``).
    ``features`` (:func:`grey_features` of ``images``) may be passed when already computed.
    """
    if len(sources) != len(images):
        raise ValueError(f"{len(sources)} sources for {len(images)} images")
    warnings: list[StudyWarning] = []
    if len(sources) < 2:
        return warnings
    dicom = [s.format == "dicom" for s in sources]
    if any(dicom) and not all(dicom):
        i, j = 0, dicom.index(not dicom[0])
        raise MixedStudy("mixed_formats", f"slices {i} and {j} are not both DICOM ({sources[i].format}, "
                                          f"{sources[j].format}): a study is one series, in one format")
    if all(dicom):
        headers = [s.dicom or {} for s in sources]
        for attribute, code in SERIES_IDENTITY:
            pair = _first_mismatch([h.get(attribute) for h in headers], lambda a, b: a != b)
            if pair:
                raise MixedStudy(code, f"slices {pair[0]} and {pair[1]} have different {attribute}: a study "
                                       "is one patient's series")
        for attribute, tolerance, relative in (("ImageOrientationPatient", ORIENTATION_TOLERANCE, False),
                                               ("PixelSpacing", SPACING_TOLERANCE, True)):
            pair = _first_mismatch([h.get(attribute) for h in headers],
                                   lambda a, b, t=tolerance, r=relative: _differs(a, b, t, r))
            if pair:
                code = "mixed_orientation" if attribute == "ImageOrientationPatient" else "mixed_pixel_spacing"
                raise MixedStudy(code, f"slices {pair[0]} and {pair[1]} have different {attribute}: a study "
                                       "is one series, read in one orientation at one resolution")
        pair = _first_mismatch([(s.width, s.height) for s in sources], lambda a, b: a != b)
        if pair:
            raise MixedStudy("mixed_sizes", f"slices {pair[0]} and {pair[1]} have different Rows x Columns: "
                                            "a study is one series")
    else:
        pair = _first_mismatch([s.width / s.height for s in sources],
                               lambda a, b: abs(a - b) > ASPECT_TOLERANCE * max(a, b))
        if pair:
            i, j = pair
            raise MixedStudy("mixed_sizes", f"slices {i} and {j} have different shapes ({sources[i].width}x"
                                            f"{sources[i].height}, {sources[j].width}x{sources[j].height}): "
                                            "slices of one stack share one")
        pair = _first_mismatch([(s.width, s.height) for s in sources], lambda a, b: a != b)
        if pair:
            i, j = pair
            warnings.append(StudyWarning(
                "mixed_sizes", f"slices {i} and {j} have different sizes ({sources[i].width}x"
                               f"{sources[i].height}, {sources[j].width}x{sources[j].height}): slices of one "
                               "stack usually share one; were they exported from one series?", (i, j)))
    warnings += similarity_warnings(grey_features(images) if features is None else features)
    return warnings


def similarity_warnings(features: np.ndarray) -> list[StudyWarning]:
    """The warnings of :func:`check_study` that rest on how alike the slices are (``grey_features`` rows)."""
    warnings: list[StudyWarning] = []
    n = len(features)
    neighbours = np.einsum("nf,nf->n", features[:-1], features[1:])
    for i, similarity in enumerate(neighbours):
        if similarity < MIN_NEIGHBOUR_SIMILARITY:
            warnings.append(StudyWarning(
                "unlike_neighbours",
                f"slices {i} and {i + 1} are less alike (correlation {similarity:.2f}) than neighbouring slices "
                f"of one subject are (at least {MIN_NEIGHBOUR_SIMILARITY:.2f}): are they of one subject, in stack "
                "order?", (i, i + 1)))
    if n >= 4:
        distance = 1.0 - neighbours
        for i in range(n - 1):
            typical = float(np.median(np.delete(distance, i)))
            ratio = float(distance[i]) / max(typical, 1e-3)
            if neighbours[i] >= MIN_NEIGHBOUR_SIMILARITY and ratio > MAX_DISSIMILARITY_RATIO:
                warnings.append(StudyWarning(
                    "sudden_change", f"slices {i} and {i + 1} differ {ratio:.0f} times more than the study's other "
                                     "neighbours: another subject from here on, or slices missing in between?",
                    (i, i + 1)))
    for i in range(n - 2):
        skip = float(features[i] @ features[i + 2])
        if skip > max(neighbours[i], neighbours[i + 1]) + SKIP_MARGIN:
            warnings.append(StudyWarning(
                "out_of_order", f"slices {i} and {i + 2} are more alike than either is to slice {i + 1}: slices of "
                                "two subjects interleaved, or not in stack order?", (i, i + 1, i + 2)))
    return warnings
