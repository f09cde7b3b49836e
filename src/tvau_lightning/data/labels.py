"""Ground-truth frame labels for a user's video: given as a file, or found beside the video in a benchmark layout.

* A labels file: a ``.npy`` array of 0/1 per frame, a text file of 0/1 values (whitespace or commas), or a
  UBnormal ``*_tracks.txt`` (``object_id,start,end`` per line, 0-based inclusive).
* Found beside the video: UBnormal (``{video}.mp4`` next to ``{video}_annotations/``) — the labels come from
  ``{video}_tracks.txt`` as the authors' ``write_frame_level_ground_truth.py`` builds them (``_new_tracks.txt``
  holds the RBDC/TBDC tracks, not the frame labels; it is used only when ``_tracks.txt`` is missing, with a
  warning); an annotation folder without any tracks file is a normal video (all zeros). ShanghaiTech (a frame
  folder ``…/testing/frames/{video}``) — ``…/testing/test_frame_mask/{video}.npy``.

Conventions and their sources: ``docs/datasets.md``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from tvau_lightning.data.clips import DatasetWarning
from tvau_lightning.data.ubnormal import labels_from_tracks, parse_tracks_file


def labels_from_tracks_file(path: str | os.PathLike[str], num_frames: int) -> np.ndarray:
    """``(num_frames,)`` int64 labels from a UBnormal tracks file: 1 inside any line's range (clipped to the video)."""
    return labels_from_tracks(parse_tracks_file(path), num_frames)


def read_frame_labels(path: str | os.PathLike[str], num_frames: int) -> np.ndarray:
    """Per-frame 0/1 labels from a ``.npy`` array, a UBnormal ``*_tracks.txt`` or a text file of 0/1 values
    (separated by whitespace or commas); the count must match the video.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not one of these formats, or has the wrong count or values other than 0/1.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"labels file not found: {path}")
    if path.name.endswith("tracks.txt"):
        return labels_from_tracks_file(path, num_frames)
    if path.suffix == ".npy":
        with path.open("rb") as handle:
            if handle.read(6) != b"\x93NUMPY":
                raise ValueError(f"{path} is not a NumPy .npy file (no .npy header); save the labels with numpy.save, "
                                 "or write them as a text file of 0/1 per frame")
        try:
            values = np.load(path, allow_pickle=False).reshape(-1)
        except Exception as error:
            raise ValueError(f"{path}: not a numeric .npy array ({error}); save the labels with numpy.save") from error
    else:
        tokens = path.read_text(encoding="utf-8").removeprefix("\ufeff").replace(",", " ").split()
        try:
            values = np.array([float(t) for t in tokens])
        except ValueError as error:
            raise ValueError(f"{path}: expected 0/1 per frame separated by spaces, commas or newlines ({error})") from error
    if values.shape[0] != num_frames or not np.isin(values, (0, 1)).all():
        raise ValueError(f"{path}: expected {num_frames} labels of 0 or 1 (one per frame), got {values.shape[0]} "
                         f"values{'' if np.isin(values, (0, 1)).all() else ' with other numbers'}")
    return values.astype(np.int64)


def find_frame_labels(video: str | os.PathLike[str], num_frames: int) -> tuple[np.ndarray, Path] | None:
    """Ground-truth frame labels stored beside a video in UBnormal or ShanghaiTech layout, and where they came
    from; None when the video is in neither layout."""
    video = Path(video)
    annotations = video.parent / f"{video.stem}_annotations"
    if video.is_file() and annotations.is_dir():  # UBnormal
        tracks = annotations / f"{video.stem}_tracks.txt"
        if tracks.is_file():
            return labels_from_tracks_file(tracks, num_frames), tracks
        new_tracks = annotations / f"{video.stem}_new_tracks.txt"
        if new_tracks.is_file():
            warnings.warn(f"{tracks} is missing; frame labels taken from {new_tracks.name}, which the UBnormal "
                          "authors use for RBDC/TBDC tracks only — restore the _tracks.txt for the benchmark's "
                          "frame labels", DatasetWarning, stacklevel=2)
            return labels_from_tracks_file(new_tracks, num_frames), new_tracks
        return np.zeros(num_frames, dtype=np.int64), annotations
    if video.is_dir() and video.parent.name == "frames":  # ShanghaiTech testing/frames/{video}
        mask = video.parent.parent / "test_frame_mask" / f"{video.name}.npy"
        if mask.is_file():
            return read_frame_labels(mask, num_frames), mask
    return None
