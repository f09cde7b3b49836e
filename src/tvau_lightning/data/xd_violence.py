"""XD-Violence in its native layout: videos whose file names carry their labels, train/test folders, and the
test ``annotations.txt``. Formats, sources and conventions: ``docs/datasets_weak.md``.

```
<root>/<train_dir>/**/<name>_label_A.mp4          normal
<root>/<train_dir>/**/<name>_label_B2-G-0.mp4     1–3 of B1 Fighting, B2 Shooting, B4 Riot, B5 Abuse,
                                                  B6 Car accident, G Explosion ('0' = none)
<root>/<test_dir>/**/<name>_label_….mp4
<annotation_file>                                 'name start end [start end …]' per abnormal test video
                                                  (or 'name C start end [C start end …]' with per-segment codes)
```

Videos are found recursively (the training videos come in several archive parts). The training split gives
video-level (multi-)labels from the names; the test split gives per-frame labels and categories from the
annotation, read with ``range_convention`` (default ``zero_based_exclusive``: the dataset authors'
``make_gt.py`` sets ``gt[start:end]``). Without per-segment codes, a multi-label video's segments carry its
whole label set (``frame_categories`` then has several columns set on those frames).

XD-Violence has no validation split; ``val`` reads the test split.
"""

from __future__ import annotations

import os
from pathlib import Path

from tvau_lightning.data.clips import DatasetFormatError, EvalLoading, check_clip_args
from tvau_lightning.data.temporal_annotations import (
    XD_VIOLENCE_CODES,
    XD_VIOLENCE_NAMES,
    RangeConvention,
    check_range_convention,
    index_videos,
    parse_xd_violence_annotations,
    xd_violence_codes_of,
)
from tvau_lightning.data.transforms import FrameResizeMode
from tvau_lightning.data.video import VideoBackend
from tvau_lightning.data.weakly_labelled import (
    WeaklyLabelledDataModule,
    WeaklyLabelledDataset,
    WeakVideo,
    probe_video,
)


def list_xd_violence_split(
    folder: str | os.PathLike[str],
    annotation_file: str | os.PathLike[str] | None = None,
    range_convention: RangeConvention = "zero_based_exclusive",
    include_normal: bool = True,
    video_backend: VideoBackend = "auto",
) -> list[WeakVideo]:
    """The videos under ``folder`` with their label codes (and ranges when ``annotation_file`` is given).

    Raises:
        FileNotFoundError: the folder or the annotation file is missing, or the annotation names a video that
            is not in the folder.
        DatasetFormatError: a file name without a valid ``_label_…`` part, or an abnormal test video without an
            annotation line — naming the files and the fix.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"XD-Violence folder not found: {folder}; set root/train_dir/test_dir to the "
                                "folders holding the videos")
    annotations = None if annotation_file is None else parse_xd_violence_annotations(annotation_file, range_convention)
    index = index_videos(folder)
    if not index:
        raise DatasetFormatError(f"{folder} holds no .mp4 videos; point the DataModule at the XD-Violence videos")
    repeated = {stem: paths for stem, paths in index.items() if len(paths) > 1}
    if repeated:
        stem, paths = next(iter(repeated.items()))
        raise DatasetFormatError(f"{folder}: {len(repeated)} video name(s) occur more than once, e.g. {stem!r} at "
                                 f"{[str(p) for p in paths[:3]]}; keep one copy")
    if annotations is not None:
        missing = sorted(set(annotations) - set(index))
        if missing:
            raise FileNotFoundError(f"{len(missing)} video(s) annotated in {annotation_file} are not under {folder}: "
                                    f"{missing[:10]}; restore them (or point test_dir at the test videos)")
    videos = []
    for stem, (path,) in index.items():
        codes = xd_violence_codes_of(path.name)
        if not include_normal and codes == ("A",):
            continue
        segments = ()
        if annotations is not None and codes != ("A",):
            if stem not in annotations:
                raise DatasetFormatError(f"abnormal test video {path} (labels {'-'.join(codes)}) has no line in "
                                         f"{annotation_file}; add '{stem} start end [start end …]'")
            segments = annotations[stem].segments
        num_frames, size = probe_video(path, video_backend)
        videos.append(WeakVideo(stem, path, num_frames, size, codes, segments))
    if not videos:
        raise DatasetFormatError(f"{folder} holds no {'abnormal ' if not include_normal else ''}videos")
    return videos


class XDViolenceDataModule(WeaklyLabelledDataModule):
    """XD-Violence train/test splits as clip batches, with video-level multi-labels and per-frame categories.

    ``categories`` are the label codes (index 0 = ``A``, normal); ``category_names`` their names.

    Args:
        root: the dataset folder.
        train_dir: folder of the training videos, relative to ``root`` (searched recursively).
        test_dir: folder of the test videos, relative to ``root``.
        annotation_file: the test annotation (default: ``<root>/annotations.txt``); a per-segment category file
            in the same layout (``name C start end …``) is read too.
        range_convention: how the annotation's frame ranges are written (default: the authors' ``gt[s:e]``).
        clip_len: frames per clip.
        frame_stride: spacing of a clip's frames in the source video.
        sample_fps: take frames at this many per second of each video instead (per-video stride
            ``round(fps / sample_fps)``); exclusive with ``frame_stride`` (leave it 1).
        frame_size: ``(H, W)`` frames are resized to; ``None`` keeps the source size (batch_size 1 then).
        batch_size: clips per batch.
        num_workers: DataLoader worker processes (``None``: the usable cores, at most 8; 0: the main
            process).
        include_normal: train on the normal (``label_A``) videos too.
        include_normal_eval: evaluate on the normal test videos too (frame AP does; mAP@tIoU uses abnormal ones).
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
        train_dir: str = "train",
        test_dir: str = "test",
        annotation_file: str | None = None,
        range_convention: RangeConvention = "zero_based_exclusive",
        clip_len: int = 16,
        frame_stride: int = 1,
        frame_size: tuple[int, int] | None = (448, 672),
        batch_size: int = 1,
        num_workers: int | None = None,
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
        self.dirs = {"train": train_dir, "test": test_dir}
        self.annotation_file = str(Path(root) / "annotations.txt") if annotation_file is None else annotation_file
        self.clip_len = clip_len
        self.frame_stride = frame_stride
        self.frame_size = None if frame_size is None else (int(frame_size[0]), int(frame_size[1]))
        self.include_normal = include_normal
        self.include_normal_eval = include_normal_eval
        self.train_clip_step = train_clip_step
        self.resize_mode = resize_mode
        self.decode_threads = decode_threads

    @property
    def categories(self) -> tuple[str, ...]:
        """Label codes of the ``video_labels``/``frame_categories`` columns (index 0 = ``A``, normal)."""
        return XD_VIOLENCE_CODES

    @property
    def category_names(self) -> tuple[str, ...]:
        """Names of :attr:`categories` (``Normal``, ``Fighting``, …)."""
        return tuple(XD_VIOLENCE_NAMES[c] for c in XD_VIOLENCE_CODES)

    def _make_dataset(self, split: str) -> WeaklyLabelledDataset:
        train = split == "train"
        videos = list_xd_violence_split(
            Path(self.root) / self.dirs["train" if train else "test"],
            annotation_file=None if train else self.annotation_file,
            range_convention=self.range_convention,
            include_normal=self.include_normal if train else self.include_normal_eval,
            video_backend=self.video_backend,
        )
        return self.weak_dataset(videos, XD_VIOLENCE_CODES, train=train)
