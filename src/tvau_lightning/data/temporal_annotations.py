"""Temporal (frame-range) annotations of the weakly supervised benchmarks: UCF-Crime and XD-Violence.

Both give per-video labels for training and frame ranges for testing; neither has pixel masks. This module
parses their annotation files into :class:`VideoAnnotation` values and turns ranges into per-frame labels.
Formats, sources and conventions: ``docs/datasets_weak.md``.

* UCF-Crime ``Temporal_Anomaly_Annotation_for_Testing_Videos.txt`` — ``video category s1 e1 s2 e2`` per line,
  fields separated by (usually two) spaces, ``-1`` = no range; normal videos have category ``Normal`` and
  four ``-1``.
* XD-Violence ``annotations.txt`` — ``name s e [s e …]`` (names sometimes carry ``.mp4``); the per-segment
  category variant ``name C s e [C s e …]`` (VadCLIP's ``annotations_multiclasses.txt``) is read too. The
  video's categories are in its name: ``…_label_B2-G-0`` (``0`` = none, ``A`` = normal).

**Range conventions.** The files store frame numbers, but the public code that reads them disagrees on what
they mean, so the reader is told (:data:`RangeConvention`) and everything downstream is 0-based half-open:

* ``one_based_inclusive`` — frames ``s … e`` counting from 1 (the UCF-Crime authors' MATLAB evaluation,
  ``GT(s:e) = 1``): 0-based ``[s - 1, e)``;
* ``zero_based_inclusive`` — frames ``s … e`` counting from 0: ``[s, e + 1)``;
* ``zero_based_exclusive`` — ``gt[s:e]`` in Python (XD-Violence's authors' ``make_gt.py``; VadCLIP for both
  datasets): ``[s, e)``.

A range reaching past the video's last frame is clipped to it when labels are made.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from tvau_lightning.data.clips import DatasetFormatError

RangeConvention = Literal["one_based_inclusive", "zero_based_inclusive", "zero_based_exclusive"]
RANGE_CONVENTIONS: tuple[str, ...] = get_args(RangeConvention)

#: UCF-Crime's 13 anomaly categories as spelled in its folders and annotation file, after ``Normal`` (index 0);
#: the order of VadCLIP's class list.
UCF_CRIME_CATEGORIES: tuple[str, ...] = (
    "Normal", "Abuse", "Arrest", "Arson", "Assault", "Burglary", "Explosion", "Fighting", "RoadAccidents",
    "Robbery", "Shooting", "Shoplifting", "Stealing", "Vandalism",
)
#: XD-Violence's label codes (index 0 = ``A``, normal) and their names (the dataset page's).
XD_VIOLENCE_CODES: tuple[str, ...] = ("A", "B1", "B2", "B4", "B5", "B6", "G")
XD_VIOLENCE_NAMES: dict[str, str] = {
    "A": "Normal", "B1": "Fighting", "B2": "Shooting", "B4": "Riot", "B5": "Abuse", "B6": "Car accident",
    "G": "Explosion",
}
_XD_LABEL = re.compile(r"_label_([A-Za-z0-9]+(?:-[A-Za-z0-9]+)*)$")
_INT = re.compile(r"^-?\d+$")


@dataclass(frozen=True)
class TemporalSegment:
    """One annotated range, as written in the file (``start``/``end`` in the file's convention).

    Attributes:
        start: first frame number as written.
        end: last (or one-past-last, by convention) frame number as written.
        categories: the category names the segment carries (one for UCF-Crime and per-segment XD files;
            the video's whole label set when the file has no per-segment category).
    """

    start: int
    end: int
    categories: tuple[str, ...]


@dataclass(frozen=True)
class VideoAnnotation:
    """The test annotation of one video: its categories and anomalous ranges.

    Attributes:
        video_id: the file stem (``Abuse028_x264``; ``…_label_B2-G-0``), without ``.mp4``.
        categories: the video's category names (``("Normal",)`` for normal videos).
        segments: the anomalous ranges (empty for normal videos).
        source: ``"file:line"`` the annotation came from (for error messages).
    """

    video_id: str
    categories: tuple[str, ...]
    segments: tuple[TemporalSegment, ...]
    source: str

    @property
    def abnormal(self) -> bool:
        return bool(self.segments) or self.categories != ("Normal",)


def check_range_convention(convention: str) -> RangeConvention:
    """``convention`` if it is one of :data:`RANGE_CONVENTIONS`, else a ValueError naming the choices."""
    if convention not in RANGE_CONVENTIONS:
        raise ValueError(f"unknown range_convention {convention!r}; use one of {', '.join(RANGE_CONVENTIONS)}")
    return convention  # type: ignore[return-value]


def to_half_open(start: int, end: int, convention: RangeConvention) -> tuple[int, int]:
    """A range as written → 0-based half-open ``[first, stop)`` frame indices (see the module docstring)."""
    if convention == "one_based_inclusive":
        return start - 1, end
    if convention == "zero_based_inclusive":
        return start, end + 1
    if convention == "zero_based_exclusive":
        return start, end
    raise ValueError(f"unknown range_convention {convention!r}; use one of {', '.join(RANGE_CONVENTIONS)}")


def _stem(name: str) -> str:
    name = name.strip().replace("\\", "/").split("/")[-1]
    return name[:-4] if name.lower().endswith(".mp4") else name


def _check_pair(start: int, end: int, convention: RangeConvention, where: str, line: str) -> None:
    first = 1 if convention == "one_based_inclusive" else 0
    if start < first:
        hint = (" (frame 0 in a file read as 1-based: set range_convention to 'zero_based_inclusive' or "
                "'zero_based_exclusive' if the file counts from 0)" if convention == "one_based_inclusive" else "")
        raise DatasetFormatError(f"{where}: range start {start} is below {first} in {line!r}{hint}; fix the line")
    if end < start or (convention == "zero_based_exclusive" and end == start):
        raise DatasetFormatError(f"{where}: range {start} {end} ends before it starts (or is empty) in {line!r}; "
                                 "fix the line")


# --------------------------------------------------------------------------------------------- UCF-Crime
def ucf_crime_category_of(name: str) -> str:
    """The category a UCF-Crime file name implies: ``Abuse028_x264`` → ``Abuse``; ``Normal_Videos_003_x264`` →
    ``Normal``. Raises :class:`DatasetFormatError` for a name that starts with no known category."""
    stem = _stem(name)
    if stem.startswith("Normal_Videos"):
        return "Normal"
    match = re.match(r"^([A-Za-z]+?)\d+", stem)
    if match and match.group(1) in UCF_CRIME_CATEGORIES:
        return match.group(1)
    raise DatasetFormatError(
        f"cannot tell the UCF-Crime category of {name!r}: expected '<Category><number>_x264.mp4' or "
        f"'Normal_Videos…_x264.mp4' with Category one of {', '.join(UCF_CRIME_CATEGORIES[1:])}; rename the video "
        "or fix the split list"
    )


def parse_ucf_crime_annotations(
    path: str | os.PathLike[str], convention: RangeConvention = "one_based_inclusive"
) -> dict[str, VideoAnnotation]:
    """Read ``Temporal_Anomaly_Annotation_for_Testing_Videos.txt``: ``video category s1 e1 s2 e2`` per line.

    Any whitespace separates fields (the official file uses two spaces and ends lines with them); blank lines
    and ``#`` comments are skipped. A pair of ``-1`` means no range.

    Returns:
        video stem → :class:`VideoAnnotation`, in file order.
    Raises:
        DatasetFormatError: a line without 6 fields, non-integer frames, a half-missing pair, a reversed
            range, an unknown category, a ``Normal`` line with a range, an abnormal line without one, or a
            repeated video — naming the file, the line number and the fix.
    """
    check_range_convention(convention)
    path = Path(path)
    out: dict[str, VideoAnnotation] = {}
    for number, line, fields in _annotation_lines(path):
        where = f"{path} line {number}"
        if len(fields) != 6 or not all(_INT.match(f) for f in fields[2:]):
            raise DatasetFormatError(
                f"{where}: expected 'video category start1 end1 start2 end2' (frames, -1 = none), got {line!r}; "
                "fix the line or restore the file from the UCF-Crime download"
            )
        video, category = _stem(fields[0]), fields[1]
        if category not in UCF_CRIME_CATEGORIES:
            raise DatasetFormatError(
                f"{where}: unknown category {category!r}; UCF-Crime's are {', '.join(UCF_CRIME_CATEGORIES)}"
            )
        numbers = [int(f) for f in fields[2:]]
        segments = []
        for start, end in (numbers[0:2], numbers[2:4]):
            if start == -1 and end == -1:
                continue
            if start == -1 or end == -1:
                raise DatasetFormatError(f"{where}: a range needs both ends or neither (-1 -1), got {start} {end} "
                                         f"in {line!r}; fix the line")
            _check_pair(start, end, convention, where, line)
            segments.append(TemporalSegment(start, end, (category,)))
        if category == "Normal" and segments:
            raise DatasetFormatError(f"{where}: a Normal video has an anomalous range in {line!r}; write -1 -1 -1 -1 "
                                     "or give the video its anomaly category")
        if category != "Normal" and not segments:
            raise DatasetFormatError(f"{where}: abnormal video {video!r} ({category}) has no range (all -1) in "
                                     f"{line!r}; add its frames or mark it Normal")
        if video in out:
            raise DatasetFormatError(f"{where}: video {video!r} is annotated twice (first at {out[video].source}); "
                                     "keep one line")
        out[video] = VideoAnnotation(video, (category,), tuple(segments), f"{path}:{number}")
    return out


# --------------------------------------------------------------------------------------------- XD-Violence
def xd_violence_codes_of(name: str) -> tuple[str, ...]:
    """The label codes in an XD-Violence file name: ``…_label_B2-G-0`` → ``("B2", "G")``; ``…_label_A`` → ``("A",)``.

    Raises:
        DatasetFormatError: no ``_label_…`` part, an unknown code, ``A`` mixed with violence codes, or no code.
    """
    stem = _stem(name)
    match = _XD_LABEL.search(stem)
    if not match:
        raise DatasetFormatError(
            f"XD-Violence video name {name!r} carries no '_label_…' part (e.g. '…_label_A', '…_label_B2-G-0'); "
            "XD-Violence's labels live in its file names — restore the original name"
        )
    codes = [c for c in match.group(1).split("-") if c != "0"]
    unknown = [c for c in codes if c not in XD_VIOLENCE_CODES]
    if unknown:
        raise DatasetFormatError(f"XD-Violence video {name!r}: unknown label code(s) {unknown}; known codes are "
                                 f"{', '.join(f'{c} ({XD_VIOLENCE_NAMES[c]})' for c in XD_VIOLENCE_CODES)}")
    if not codes or ("A" in codes and len(codes) > 1):
        raise DatasetFormatError(f"XD-Violence video {name!r}: label must be 'A' alone (normal) or 1–3 violence "
                                 "codes such as 'B1-0-0' or 'B2-G-0'; fix the name")
    return tuple(dict.fromkeys(codes))


def parse_xd_violence_annotations(
    path: str | os.PathLike[str], convention: RangeConvention = "zero_based_exclusive"
) -> dict[str, VideoAnnotation]:
    """Read XD-Violence's ``annotations.txt`` (``name s e [s e …]``) or its per-segment category variant
    (``name C s e [C s e …]``), one video per line; categories are stored as codes (``B1`` …).

    A segment without its own category carries the video's whole label set (from the name).

    Raises:
        DatasetFormatError: a line with no range, an odd number of frames, non-integer frames, an unknown
            code, a reversed range, a normal (``_label_A``) video with ranges, or a repeated video.
    """
    check_range_convention(convention)
    path = Path(path)
    out: dict[str, VideoAnnotation] = {}
    for number, line, fields in _annotation_lines(path):
        where = f"{path} line {number}"
        video = _stem(fields[0])
        try:
            codes = xd_violence_codes_of(video)
        except DatasetFormatError as error:
            raise DatasetFormatError(f"{where}: {error}") from None
        rest = fields[1:]
        segments = []
        if rest and not _INT.match(rest[0]):  # per-segment categories: C s e [C s e …]
            if len(rest) % 3 or not all(_INT.match(s) and _INT.match(e) for s, e in zip(rest[1::3], rest[2::3])):
                raise DatasetFormatError(f"{where}: expected 'name category start end [category start end …]', "
                                         f"got {line!r}; fix the line")
            for code, s, e in zip(rest[0::3], rest[1::3], rest[2::3]):
                if code not in XD_VIOLENCE_CODES or code == "A":
                    raise DatasetFormatError(f"{where}: unknown segment category {code!r} in {line!r}; use one of "
                                             f"{', '.join(XD_VIOLENCE_CODES[1:])}")
                _check_pair(int(s), int(e), convention, where, line)
                segments.append(TemporalSegment(int(s), int(e), (code,)))
        else:
            if not rest or len(rest) % 2 or not all(_INT.match(f) for f in rest):
                raise DatasetFormatError(
                    f"{where}: expected 'name start end [start end …]' (pairs of frame numbers), got {line!r}; "
                    "fix the line or restore annotations.txt from the XD-Violence download"
                )
            for s, e in zip(rest[0::2], rest[1::2]):
                _check_pair(int(s), int(e), convention, where, line)
                segments.append(TemporalSegment(int(s), int(e), codes))
        if codes == ("A",):
            raise DatasetFormatError(f"{where}: normal video {video!r} (label A) has anomalous ranges; remove the line "
                                     "or fix the video's label")
        if video in out:
            raise DatasetFormatError(f"{where}: video {video!r} is annotated twice (first at {out[video].source}); "
                                     "keep one line")
        out[video] = VideoAnnotation(video, codes, tuple(segments), f"{path}:{number}")
    return out


# --------------------------------------------------------------------------------------------- labels
def frame_targets(
    num_frames: int,
    segments: Iterable[TemporalSegment],
    categories: Sequence[str],
    convention: RangeConvention,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame binary labels and multi-hot categories of a video from its ranges.

    Args:
        num_frames: ``T``.
        segments: the video's anomalous ranges (as written, in ``convention``).
        categories: the class names, index 0 = normal (e.g. :data:`UCF_CRIME_CATEGORIES`).
        convention: how the ranges are written.
    Returns:
        ``(T,)`` int64 labels (1 = abnormal) and ``(T, K)`` bool categories (column 0 = normal; a frame under
        several segments, or under a segment carrying several categories, has several columns set).
    Raises:
        DatasetFormatError: a segment category not in ``categories``.
    """
    index = {name: k for k, name in enumerate(categories)}
    cats = np.zeros((num_frames, len(categories)), dtype=bool)
    for segment in segments:
        first, stop = to_half_open(segment.start, segment.end, convention)
        first, stop = max(0, first), min(num_frames, stop)
        if stop <= first:
            continue
        for name in segment.categories:
            if name not in index:
                raise DatasetFormatError(f"unknown category {name!r}; known: {', '.join(categories)}")
            cats[first:stop, index[name]] = True
    labels = cats[:, 1:].any(axis=1)
    cats[~labels, 0] = True
    return labels.astype(np.int64), cats


def video_label_vector(names: Iterable[str], categories: Sequence[str]) -> np.ndarray:
    """``(K,)`` bool multi-hot of a video's category names over ``categories`` (index 0 = normal)."""
    index = {name: k for k, name in enumerate(categories)}
    out = np.zeros(len(categories), dtype=bool)
    for name in names:
        if name not in index:
            raise DatasetFormatError(f"unknown category {name!r}; known: {', '.join(categories)}")
        out[index[name]] = True
    return out


def read_split_list(path: str | os.PathLike[str]) -> list[str]:
    """Entries of a UCF-Crime split list (``Abuse/Abuse001_x264.mp4`` per line; blank lines and ``#`` skipped)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split list not found: {path}; point split_dir at the folder holding "
                                "Anomaly_Train.txt and Anomaly_Test.txt (UCF_Crimes-Train-Test-Split/Anomaly_Detection_splits)")
    return [line.replace("\\", "/") for _, line, _ in _annotation_lines(path)]


def _annotation_lines(path: Path) -> Iterator[tuple[int, str, list[str]]]:
    """``(line number, stripped line, whitespace-separated fields)`` of every non-blank, non-``#`` line."""
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}; set annotation_file to the benchmark's file")
    for number, raw in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        line = raw.strip()
        if line and not line.startswith("#"):
            yield number, line, line.split()


def index_videos(root: Path, suffix: str = ".mp4") -> Mapping[str, list[Path]]:
    """Every ``*.mp4`` under ``root`` (recursively), by file stem — to find videos the split lists place in a
    folder the download names differently (``Training_Normal_Videos_Anomaly`` vs ``Training-Normal-Videos-Part-1``)."""
    found: dict[str, list[Path]] = {}
    for path in sorted(root.rglob(f"*{suffix}")):
        found.setdefault(path.stem, []).append(path)
    return found
