"""UCF-Crime in its native layout: category folders of ``*_x264.mp4`` videos, the official split lists and the
test temporal annotation. Formats, sources and conventions: ``docs/datasets_weak.md``.

```
<root>/<Category>/<Category>NNN_x264.mp4                          13 anomaly categories (Abuse … Vandalism)
<root>/Training_Normal_Videos_Anomaly/Normal_VideosNNN_x264.mp4   normal training videos
<root>/Testing_Normal_Videos_Anomaly/Normal_Videos_NNN_x264.mp4   normal test videos
<split_dir>/Anomaly_Train.txt, Anomaly_Test.txt                   'Abuse/Abuse001_x264.mp4' per line
<annotation_file>                                                 'Abuse028_x264.mp4  Abuse  165  240  -1  -1'
```

A listed video is looked for at ``<root>/<line>`` first, then by file name anywhere under ``root`` (the archives
unpack the normal videos as ``Training-Normal-Videos-Part-1`` …, not as the list's folder). The training split
gives video-level labels (the category of the file name); the test split gives per-frame labels and categories
from the annotation, read with ``range_convention`` (default ``one_based_inclusive``: the dataset authors' own
evaluation, ``Evaluate_Anomaly_Detector.m``, sets ``GT(start:end)`` in MATLAB's 1-based indexing).

UCF-Crime has no validation split; ``val`` reads the test split (as the published methods report on it).
"""

from __future__ import annotations

import os
from pathlib import Path

from tvau_lightning.data.clips import DatasetFormatError, EvalLoading, check_clip_args
from tvau_lightning.data.temporal_annotations import (
    UCF_CRIME_CATEGORIES,
    RangeConvention,
    check_range_convention,
    index_videos,
    parse_ucf_crime_annotations,
    read_split_list,
    ucf_crime_category_of,
)
from tvau_lightning.data.transforms import FrameResizeMode
from tvau_lightning.data.video import VideoBackend
from tvau_lightning.data.weakly_labelled import (
    WeaklyLabelledDataModule,
    WeaklyLabelledDataset,
    WeakVideo,
    check_video_files,
    probe_video,
)

#: default test annotation names in ``split_dir``, tried in order
ANNOTATION_FILE_NAMES = ("Temporal_Anomaly_Annotation_for_Testing_Videos.txt", "Temporal_Anomaly_Annotation.txt")
SPLIT_LISTS = {"train": "Anomaly_Train.txt", "test": "Anomaly_Test.txt"}


def list_ucf_crime_split(
    root: str | os.PathLike[str],
    split_list: str | os.PathLike[str],
    annotation_file: str | os.PathLike[str] | None = None,
    range_convention: RangeConvention = "one_based_inclusive",
    include_normal: bool = True,
    video_backend: VideoBackend = "auto",
) -> list[WeakVideo]:
    """The videos of one UCF-Crime split list, with their categories (and ranges when ``annotation_file`` is given).

    Raises:
        FileNotFoundError: the list, the annotation file or a listed video is missing.
        DatasetFormatError: an unknown category, a folder that contradicts the file name, a test video without
            an annotation line (or with one of another category) — naming the files and the fix.
    """
    root, split_list = Path(root), Path(split_list)
    if not root.is_dir():
        raise FileNotFoundError(f"UCF-Crime root not found: {root}; set root to the folder holding the category "
                                "folders (Abuse, Arrest, …) and the normal-video folders")
    annotations = None if annotation_file is None else parse_ucf_crime_annotations(annotation_file, range_convention)
    entries = read_split_list(split_list)
    index = None
    found: list[tuple[str, Path | None]] = []
    categories: dict[str, str] = {}
    for entry in entries:
        stem = Path(entry).stem
        category = ucf_crime_category_of(stem)
        folder = entry.split("/")[0] if "/" in entry else None
        if folder in UCF_CRIME_CATEGORIES and folder != category:
            raise DatasetFormatError(f"{split_list}: {entry!r} is in folder {folder!r} but its name says {category!r}; "
                                     "fix the line")
        if not include_normal and category == "Normal":
            continue
        path = root / entry
        if not path.is_file():
            if index is None:
                index = index_videos(root)
            candidates = index.get(stem, [])
            if len({c.stat().st_size for c in candidates}) == 1:  # byte-size twins: the archive's duplicates
                candidates = candidates[:1]
            if len(candidates) > 1:
                raise DatasetFormatError(f"{split_list}: {entry!r} is not at {path} and several files under {root} "
                                         f"share its name: {[str(c) for c in candidates[:3]]}; keep one")
            path = candidates[0] if candidates else None
        found.append((stem, path))
        categories[stem] = category
    check_video_files(found, split_list, root)
    videos = []
    for stem, path in found:
        category = categories[stem]
        segments = ()
        if annotations is not None:
            if stem not in annotations:
                raise DatasetFormatError(
                    f"test video {stem!r} (listed in {split_list}) has no line in {annotation_file}; add "
                    f"'{stem}.mp4  {category}  start  end  -1  -1' (or '-1' × 4 for a normal video)"
                )
            annotation = annotations[stem]
            if annotation.categories != (category,):
                raise DatasetFormatError(f"{annotation.source}: video {stem!r} is annotated {annotation.categories[0]!r} "
                                         f"but its name says {category!r}; fix the line")
            segments = annotation.segments
        num_frames, size = probe_video(path, video_backend)  # type: ignore[arg-type]  (checked above)
        videos.append(WeakVideo(stem, path, num_frames, size, (category,), segments))  # type: ignore[arg-type]
    if not videos:
        raise DatasetFormatError(f"{split_list} lists no videos{'' if include_normal else ' besides normal ones'}")
    return videos


class UCFCrimeDataModule(WeaklyLabelledDataModule):
    """UCF-Crime train/test splits as clip batches, with video-level and per-frame categories (see the module
    docstring). ``categories`` (index 0 = ``Normal``) names the columns of ``video_labels``/``frame_categories``.

    Args:
        root: the folder holding the category folders and the normal-video folders.
        split_dir: the folder with ``Anomaly_Train.txt``/``Anomaly_Test.txt`` (default: ``root``).
        annotation_file: the test temporal annotation (default: ``<split_dir>/Temporal_Anomaly_Annotation_for_Testing_Videos.txt``,
            else ``<split_dir>/Temporal_Anomaly_Annotation.txt`` as the authors' repository names it).
        range_convention: how the annotation's frame ranges are written (default: the authors' 1-based inclusive).
        clip_len: frames per clip.
        frame_stride: spacing of a clip's frames in the source video.
        sample_fps: take frames at this many per second of each video instead (per-video stride
            ``round(fps / sample_fps)``); exclusive with ``frame_stride`` (leave it 1).
        frame_size: ``(H, W)`` frames are resized to; ``None`` keeps the source size (batch_size 1 then).
        batch_size: clips per batch.
        num_workers: DataLoader worker processes (``None``: the usable cores, at most 8; 0: the main
            process).
        train_list: file name of the training list in ``split_dir``.
        test_list: file name of the test list in ``split_dir``.
        include_normal: train on the normal videos too (the weakly supervised protocol needs them).
        include_normal_eval: evaluate on the normal test videos too (frame AUC does; mAP@tIoU uses abnormal ones).
        train_clip_step: frames between training window starts (default half a window).
        resize_mode: frame resampling filter.
        decode_threads: decoder threads per video (0 = automatic; 1 is best with several workers).
        pin_memory: pin batches in page-locked memory (``None``: when CUDA is available).
        video_backend: decoder of the videos (``auto``: decord if installed, else PyAV).
        eval_loading: how the evaluation loaders use ``num_workers``: ``threads`` of the main process (default:
            whole videos per thread, no copy between processes) or DataLoader worker ``processes``; training
            always uses processes. See :class:`~tvau_lightning.data.clips.VideoClipDataModule`.
    """

    def __init__(
        self,
        root: str,
        split_dir: str | None = None,
        annotation_file: str | None = None,
        range_convention: RangeConvention = "one_based_inclusive",
        clip_len: int = 16,
        frame_stride: int = 1,
        frame_size: tuple[int, int] | None = (448, 672),
        batch_size: int = 1,
        num_workers: int | None = None,
        train_list: str = SPLIT_LISTS["train"],
        test_list: str = SPLIT_LISTS["test"],
        include_normal: bool = True,
        include_normal_eval: bool = True,
        train_clip_step: int | None = None,
        resize_mode: FrameResizeMode = "bilinear",
        decode_threads: int = 0,
        pin_memory: bool | None = None,
        video_backend: VideoBackend = "auto",
        sample_fps: float | None = None,
        eval_loading: EvalLoading = "threads",
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, pin_memory=pin_memory,
                         video_backend=video_backend, eval_loading=eval_loading)
        self.save_hyperparameters()
        check_clip_args(clip_len, frame_stride, frame_size, train_clip_step, sample_fps)
        self.sample_fps = sample_fps
        self.range_convention = check_range_convention(range_convention)
        self.root = root
        self.split_dir = root if split_dir is None else split_dir
        if annotation_file is None:  # the annotation zip's name, else the authors' repository's
            names = [Path(self.split_dir) / n for n in ANNOTATION_FILE_NAMES]
            annotation_file = str(next((p for p in names if p.is_file()), names[0]))
        self.annotation_file = annotation_file
        self.clip_len = clip_len
        self.frame_stride = frame_stride
        self.frame_size = None if frame_size is None else (int(frame_size[0]), int(frame_size[1]))
        self.lists = {"train": train_list, "test": test_list}
        self.include_normal = include_normal
        self.include_normal_eval = include_normal_eval
        self.train_clip_step = train_clip_step
        self.resize_mode = resize_mode
        self.decode_threads = decode_threads

    @property
    def categories(self) -> tuple[str, ...]:
        """Class names of ``video_labels``/``frame_categories`` columns (index 0 = ``Normal``)."""
        return UCF_CRIME_CATEGORIES

    def _make_dataset(self, split: str) -> WeaklyLabelledDataset:
        train = split == "train"
        videos = list_ucf_crime_split(
            self.root,
            Path(self.split_dir) / self.lists["train" if train else "test"],
            annotation_file=None if train else self.annotation_file,
            range_convention=self.range_convention,
            include_normal=self.include_normal if train else self.include_normal_eval,
            video_backend=self.video_backend,
        )
        return self.weak_dataset(videos, UCF_CRIME_CATEGORIES, train=train)
