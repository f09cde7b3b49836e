"""An on-disk store of frozen-tower vision features, one safetensors file per clip (stage 1 speed-up, SPEC §7).

With the vision tower frozen, the AHD sees the same features for a clip every epoch; computing them once
(``tvau cache-features``, :mod:`tvau_lightning.modules.feature_extraction`) and reading them back makes a
stage-1 epoch cost the AHD head and I/O only. This module is the store alone: it never runs (or imports) a
backbone. Layout of a cache folder::

    DIR/manifest.json                                   format version, fingerprint, layers, storage dtype
    DIR/features/<video id, %-quoted>/<first>-<last>-<hash>.safetensors
        tensors  layer_<i>: (T', H', W', C_vis) per 1-based vision layer i (only the AHD's), storage dtype
                 target.*: the clip's training/evaluation targets (see CLIP_TARGETS), so that a cached epoch
                 reads this file and nothing else — masks (bool), labels, valid, frame_index,
                 original_size, fps, GT boxes
        metadata video_id, frame_index (JSON list, -1 = padding), fingerprint (hash of the manifest's)

:class:`CachedClipDataset` serves a split from these files alone (no video is opened, no frame decoded):
features in the batch's extras, targets as the :class:`ClipBatch` fields, and a zero-stride placeholder for the
frames that were not decoded. A batch's files are read with ``preadv`` into one buffer (:class:`ReadBuffers`:
reused in the main process while no tensor of an earlier batch views it, page-locked when CUDA is available,
shared memory in a DataLoader worker), laid out so that the batch's grids and masks are views of it — one kernel
copy per byte, no collate copy. A batch of one clip on a machine without CUDA is memory-mapped instead
(:func:`map_safetensors`): the CPU step reads the grids in place, so nothing is copied at all.

A clip is keyed by its video id and its frame indices as the DataModule yields them (``ClipBatch.frame_index``,
padding included), so any sampling plan — overlapping training windows, strided evaluation clips — maps to
files without knowing the plan. The **fingerprint** (a JSON dict built by the caller: backbone files and
settings, layers, frame size, clip sampling, dtypes, :data:`CACHE_FORMAT_VERSION`) identifies everything that
changes features; :meth:`FeatureCache.open` refuses a cache whose fingerprint differs from the expected one
(the error lists the differences), and :meth:`FeatureCache.create` refuses to mix fingerprints in one folder
unless told to clear it. Every file is written atomically, so an interrupted fill leaves only whole files and
resumes where it stopped.

Each video's **identity** is kept beside its clips (``features/<video id>/source.json``: path, size,
modification time and a digest of the size and the first and last MiB — of every file of a frame folder,
names and sizes). :meth:`FeatureCache.sync_videos` compares it with the video on disk: a fill deletes the
clips of a replaced video (and says so, naming it) before computing them again; a reader is refused with the
names of the replaced videos. A video only touched or copied (other time, same digest) keeps its clips.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mmap
import os
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from tvau_lightning.atomic import OUTPUT_MARKER, atomic_path, file_name_for, write_text_atomic
from tvau_lightning.data.types import ClipBatch, ClipSample, collate_clips

__all__ = [
    "CACHE_FORMAT_VERSION",
    "CLIP_TARGETS",
    "CachedClip",
    "CachedClipDataset",
    "STORAGE_DTYPES",
    "FeatureCache",
    "FeatureCacheError",
    "MissingFeaturesError",
    "ReadBuffers",
    "attach_cached_features",
    "clip_targets",
    "collate_cached_clips",
    "data_fingerprint",
    "dataset_video_paths",
    "video_identity",
    "feature_key",
    "fingerprint_differences",
    "map_safetensors",
]

#: bumped whenever the file layout or the meaning of a stored tensor changes (2: per-video source identity;
#: 3: each clip's targets beside its features)
CACHE_FORMAT_VERSION = 3
#: per-video identity file, beside the video's clips
SOURCE_FILE = "source.json"
#: bytes read from each end of a video file for its digest
_DIGEST_BYTES = 1 << 20
MANIFEST = "manifest.json"
#: names of the storage dtypes
STORAGE_DTYPES: dict[str, torch.dtype] = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
#: ``ClipBatch.extras`` key of cached layer ``i``: ``FEATURE_KEY.format(i)``
FEATURE_KEY = "vision_features.{}"
#: prefix of the target tensors in a clip file
TARGET_PREFIX = "target."
#: the per-clip targets a cache file holds (``ClipSample`` fields; ``gt_boxes``, ``video_labels`` and
#: ``frame_categories`` only when the dataset gives them)
CLIP_TARGETS = ("masks", "frame_labels", "frame_index", "valid", "fps", "original_size", "gt_boxes",
                "video_labels", "frame_categories")


class FeatureCacheError(RuntimeError):
    """A feature cache that cannot be used as asked (stale, foreign, corrupt); the message says what to do."""


class MissingFeaturesError(FeatureCacheError):
    """Clips asked for are not in the cache."""


def feature_key(layer: int) -> str:
    """The ``ClipBatch.extras`` key under which layer ``layer``'s cached grid ``(B, T', H', W', C)`` travels."""
    return FEATURE_KEY.format(int(layer))


def fingerprint_differences(expected: Mapping[str, Any], found: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Human-readable differences between two fingerprints (nested dicts): ``"data.frame_size: cache [64, 96],
    now [128, 192]"``; keys missing on one side count as different."""
    out = []
    for key in sorted(set(expected) | set(found), key=str):
        name = f"{prefix}{key}"
        a, b = expected.get(key, "<absent>"), found.get(key, "<absent>")
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += fingerprint_differences(a, b, prefix=f"{name}.")
        elif _canonical(a) != _canonical(b):
            out.append(f"{name}: cache {_short(b)}, now {_short(a)}")
    return out


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _short(value: Any, limit: int = 80) -> str:
    text = _canonical(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def fingerprint_hash(fingerprint: Mapping[str, Any]) -> str:
    """A short stable hash of a fingerprint (stored in every clip file)."""
    return hashlib.sha256(_canonical(fingerprint).encode()).hexdigest()[:16]


def data_fingerprint(datamodule: Any) -> dict[str, Any]:
    """The data settings that change a clip's features: frame size, resampling filter, clip length and stride
    (or ``sample_fps``, recorded only when set so older caches keep their hash), and the DataModule class (read
    from the DataModule's attributes; ``None`` where it has none)."""
    frame_size = getattr(datamodule, "frame_size", None)
    sample_fps = getattr(datamodule, "sample_fps", None)
    frames_format = getattr(datamodule, "frames_format", "rgb")  # yuv420: converted on the device, within 2 levels
    return {
        **({} if sample_fps is None else {"sample_fps": float(sample_fps)}),
        **({} if frames_format == "rgb" else {"frames_format": str(frames_format)}),
        "datamodule": f"{type(datamodule).__module__}.{type(datamodule).__qualname__}",
        "frame_size": None if frame_size is None else [int(v) for v in frame_size],
        "resize_mode": getattr(datamodule, "resize_mode", None),
        "clip_len": getattr(datamodule, "clip_len", None),
        "frame_stride": getattr(datamodule, "frame_stride", None),
    }


def _file_digest(digest: Any, path: Path, size: int) -> None:
    with path.open("rb") as fh:
        digest.update(fh.read(_DIGEST_BYTES))
        if size > 2 * _DIGEST_BYTES:
            fh.seek(size - _DIGEST_BYTES)
            digest.update(fh.read(_DIGEST_BYTES))
        elif size > _DIGEST_BYTES:
            digest.update(fh.read())


def video_identity(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What tells a video apart from a replaced one: ``size`` (bytes), ``mtime_ns`` and ``digest`` (SHA-256 of
    the size and the first and last MiB; for a frame folder, of every file's name and size and the first and
    last MiB of each). Raises :class:`FeatureCacheError` when ``path`` does not exist."""
    path = Path(path)
    digest = hashlib.sha256()
    try:
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())
            stats = [p.stat() for p in files]
            size, mtime = sum(st.st_size for st in stats), max((st.st_mtime_ns for st in stats), default=0)
            for p, st in zip(files, stats):
                digest.update(f"{p.relative_to(path).as_posix()}:{st.st_size}\n".encode())
                _file_digest(digest, p, st.st_size)
        else:
            st = path.stat()
            size, mtime = st.st_size, st.st_mtime_ns
            digest.update(f"{size}\n".encode())
            _file_digest(digest, path, size)
    except OSError as err:
        raise FeatureCacheError(f"cannot read video {path} to check the feature cache against it ({err})") from err
    return {"size": int(size), "mtime_ns": int(mtime), "digest": digest.hexdigest()[:32]}


def dataset_video_paths(dataset: Any) -> dict[str, Path]:
    """``{video id: video file or frame folder}`` of a clip dataset: ``dataset.video_path(id)`` when it has
    one, else the ``video_path`` / ``path`` of the entries of ``dataset.videos`` (UBnormal, ShanghaiTech)."""
    ids = list(getattr(dataset, "video_ids", []) or [])
    if hasattr(dataset, "video_path"):
        return {vid: Path(dataset.video_path(vid)) for vid in ids}
    videos = getattr(dataset, "videos", None)
    if not isinstance(videos, Mapping):
        raise FeatureCacheError(f"{type(dataset).__name__} does not say where its videos are (no video_path(id) "
                                "nor videos[id].path); the feature cache cannot check them")
    out = {}
    for vid in ids or list(videos):
        entry = videos[vid]
        path = getattr(entry, "video_path", None) or getattr(entry, "path", None)
        if path is None:
            raise FeatureCacheError(f"{type(dataset).__name__}: no path for video {vid!r}")
        out[vid] = Path(path)
    return out


def _describe_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    if old.get("size") != new["size"]:
        return f"size {old.get('size')} → {new['size']} bytes"
    return "same size, other content"


@dataclass(frozen=True)
class CacheManifest:
    """The ``manifest.json`` of a cache folder.

    Attributes:
        format_version: :data:`CACHE_FORMAT_VERSION` of the writer.
        fingerprint: what the features depend on (sections ``backbone``, ``data``, …; built by the caller).
        layers: the cached 1-based vision layers, in the AHD's order.
        storage_dtype: name of the stored tensors' dtype (a key of :data:`STORAGE_DTYPES`).
    """

    format_version: int
    fingerprint: dict[str, Any]
    layers: list[int]
    storage_dtype: str

    @property
    def fingerprint_hash(self) -> str:
        return fingerprint_hash(self.identity())

    def identity(self) -> dict[str, Any]:
        """Everything that must match for cached features to be valid (fingerprint + layers + dtype + format)."""
        return {"format_version": self.format_version, "layers": list(self.layers),
                "storage_dtype": self.storage_dtype, **self.fingerprint}

    def to_json(self) -> str:
        return json.dumps({"format_version": self.format_version, "layers": self.layers,
                           "storage_dtype": self.storage_dtype, "fingerprint": self.fingerprint}, indent=2) + "\n"

    @classmethod
    def read(cls, path: Path) -> CacheManifest:
        try:
            raw = json.loads(path.read_text())
            return cls(format_version=int(raw["format_version"]), fingerprint=dict(raw["fingerprint"]),
                       layers=[int(i) for i in raw["layers"]], storage_dtype=str(raw["storage_dtype"]))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise FeatureCacheError(
                f"{path} is not a readable feature-cache manifest ({err}); delete the folder and fill it again "
                "with `tvau cache-features`"
            ) from err


class FeatureCache:
    """A feature-cache folder: per-clip grids of the cached layers (see the module docstring).

    Build one with :meth:`create` (to fill it) or :meth:`open` (to read it, checking the fingerprint).
    """

    def __init__(self, root: str | Path, manifest: CacheManifest) -> None:
        self.root = Path(root)
        self.manifest = manifest
        if manifest.storage_dtype not in STORAGE_DTYPES:
            raise FeatureCacheError(
                f"{self.root / MANIFEST}: unknown storage dtype {manifest.storage_dtype!r}; "
                f"expected one of {', '.join(STORAGE_DTYPES)}"
            )
        self._hash = manifest.fingerprint_hash

    # ---- construction ----------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        root: str | Path,
        *,
        fingerprint: Mapping[str, Any],
        layers: Sequence[int],
        storage_dtype: str = "float16",
        overwrite: bool = False,
    ) -> FeatureCache:
        """Open ``root`` for filling: a new folder gets a manifest; an existing cache with the same identity is
        reused (its clips are kept: a fill resumes); one with another identity raises unless ``overwrite``,
        which deletes its features first."""
        root = Path(root)
        manifest = CacheManifest(CACHE_FORMAT_VERSION, json.loads(_canonical(dict(fingerprint))),
                                 [int(i) for i in layers], storage_dtype)
        if storage_dtype not in STORAGE_DTYPES:
            raise FeatureCacheError(f"storage dtype must be one of {', '.join(STORAGE_DTYPES)}, got {storage_dtype!r}")
        path = root / MANIFEST
        if path.is_file():
            old = CacheManifest.read(path)
            if old.fingerprint_hash == manifest.fingerprint_hash:
                return cls(root, old)
            if not overwrite:
                diffs = fingerprint_differences(manifest.identity(), old.identity())
                raise FeatureCacheError(
                    f"{root} holds features of other settings ({'; '.join(diffs)}). Use another folder, or "
                    "rebuild this one with `tvau cache-features ... --overwrite` (deletes its features)"
                )
            shutil.rmtree(root / "features", ignore_errors=True)
        elif root.exists() and any(root.iterdir()):
            raise FeatureCacheError(
                f"{root} exists, is not empty and is not a feature cache (no {MANIFEST}); choose an empty or new folder"
            )
        root.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, manifest.to_json())
        if not (root / OUTPUT_MARKER).exists():  # the folder is the tool's (see tvau_lightning.atomic)
            write_text_atomic(root / OUTPUT_MARKER, json.dumps({"tool": "tvau-lightning", "kind": "feature-cache"}) + "\n")
        return cls(root, manifest)

    @classmethod
    def open(cls, root: str | Path, expected: Mapping[str, Any] | None = None) -> FeatureCache:
        """Open an existing cache for reading. ``expected``: the identity the caller needs — any of the keys
        of :meth:`CacheManifest.identity` (``layers``, ``storage_dtype``, fingerprint sections such as
        ``backbone`` / ``data``); each given one must equal the cache's or :class:`FeatureCacheError` lists the
        differences."""
        root = Path(root)
        path = root / MANIFEST
        if not path.is_file():
            raise FeatureCacheError(
                f"no feature cache at {root} ({MANIFEST} not found); fill it first: "
                f"`tvau cache-features --config <your config> --out {root}`"
            )
        cache = cls(root, CacheManifest.read(path))
        if cache.manifest.format_version != CACHE_FORMAT_VERSION:
            raise FeatureCacheError(
                f"{root} was written in cache format {cache.manifest.format_version}, this version reads format "
                f"{CACHE_FORMAT_VERSION}; rebuild it with `tvau cache-features ... --overwrite`"
            )
        if expected is not None:
            identity = cache.manifest.identity()
            diffs = fingerprint_differences(dict(expected), {k: identity.get(k, "<absent>") for k in expected})
            if diffs:
                raise FeatureCacheError(
                    f"the feature cache {root} is stale — it was built with other settings: {'; '.join(diffs)}. "
                    "Rebuild it (`tvau cache-features ... --overwrite`), point feature_cache at a cache of these "
                    "settings, or turn the cache off"
                )
        return cache

    # ---- keys and paths --------------------------------------------------------------------------

    @property
    def layers(self) -> list[int]:
        return list(self.manifest.layers)

    @property
    def storage_dtype(self) -> torch.dtype:
        return STORAGE_DTYPES[self.manifest.storage_dtype]

    def path_for(self, video_id: str, frame_index: Sequence[int] | torch.Tensor) -> Path:
        """The file of the clip of ``video_id`` whose frames are ``frame_index`` (``-1`` = padding)."""
        frames = _frame_list(frame_index)
        real = [f for f in frames if f >= 0]
        digest = hashlib.sha1(",".join(map(str, frames)).encode()).hexdigest()[:12]
        first, last = (real[0], real[-1]) if real else (-1, -1)
        return self.root / "features" / file_name_for(video_id) / f"{first:06d}-{last:06d}-{digest}.safetensors"

    def contains(self, video_id: str, frame_index: Sequence[int] | torch.Tensor) -> bool:
        return self.path_for(video_id, frame_index).is_file()

    def num_clips(self) -> int:
        """Clip files in the cache."""
        return sum(1 for _ in (self.root / "features").glob("*/*.safetensors"))

    def _video_dir(self, video_id: str) -> Path:
        return self.root / "features" / file_name_for(video_id)

    def sync_videos(self, videos: Mapping[str, str | os.PathLike[str]] | Any, *, invalidate: bool = True,
                    note: Callable[[str], None] | None = None) -> list[str]:
        """Check the cached clips of ``videos`` (``{video id: path}``, or a clip dataset — see
        :func:`dataset_video_paths`) against the videos on disk.

        With ``invalidate`` (a fill), the clips of a replaced video are deleted and its new identity recorded,
        so that the fill computes them again; a video seen for the first time gets its identity recorded.
        Without it (reading for training), a replaced video raises :class:`FeatureCacheError` naming it, and
        nothing is written. A video whose time changed but whose digest did not keeps its clips. Returns one
        message per replaced video (also passed to ``note``, default: printed on stderr).
        """
        paths = videos if isinstance(videos, Mapping) else dataset_video_paths(videos)
        note = note or (lambda text: print(text, file=sys.stderr))
        changed: list[str] = []
        for video_id, path in paths.items():
            record_path = self._video_dir(video_id) / SOURCE_FILE
            try:
                record = json.loads(record_path.read_text(encoding="utf-8")) if record_path.is_file() else None
            except (OSError, ValueError):
                record = None  # unreadable: treated as changed below when clips exist
            clips = sorted(self._video_dir(video_id).glob("*.safetensors"))
            if record is not None and {k: record.get(k) for k in ("size", "mtime_ns")} == _stat_identity(path):
                continue  # the cheap check: same size and time
            current = video_identity(path)
            same = record is not None and record.get("digest") == current["digest"] and record.get("size") == current["size"]
            if not same and clips:
                reason = _describe_change(record, current) if record is not None else "no identity recorded"
                if invalidate:
                    for clip in clips:
                        clip.unlink(missing_ok=True)
                    changed.append(f"feature cache {self.root}: video {video_id!r} ({path}) was replaced since its "
                                   f"features were cached ({reason}); its {len(clips)} cached clip(s) were deleted "
                                   "and are computed again")
                else:
                    changed.append(f"{video_id!r} ({path}: {reason})")
                    continue
            if invalidate or same:
                write_text_atomic(record_path, json.dumps({"video_id": video_id, "path": str(path), **current}) + "\n")
        if changed and not invalidate:
            shown = "; ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
            raise FeatureCacheError(
                f"the feature cache {self.root} is stale for {len(changed)} video(s) replaced since it was filled: "
                f"{shown}. Run `tvau cache-features` again with the same config: it recomputes only these videos"
            )
        for message in changed:
            note(message)
        return changed

    # ---- write / read ----------------------------------------------------------------------------

    def write(self, video_id: str, frame_index: Sequence[int] | torch.Tensor, features: Mapping[int, torch.Tensor],
              targets: Mapping[str, Any] | None = None) -> Path:
        """Store one clip's grids ``{layer: (T', H', W', C)}`` (every cached layer) atomically, cast to the
        storage dtype; values that do not fit it (fp16 overflow) raise instead of being stored as inf.
        ``targets`` (:func:`clip_targets`) are stored beside them, so that :class:`CachedClipDataset` can serve
        the clip without its video."""
        if sorted(int(k) for k in features) != sorted(self.layers):
            raise FeatureCacheError(f"expected features of layers {self.layers}, got {sorted(features)}")
        from safetensors.torch import save_file

        tensors = {}
        for layer in self.layers:
            grid = features[layer].detach()
            if grid.dim() != 4:
                raise FeatureCacheError(f"layer {layer}: expected one clip's grid (T', H', W', C), got {tuple(grid.shape)}")
            stored = grid.to(device="cpu", dtype=self.storage_dtype).contiguous()
            if not bool(torch.isfinite(stored).all()) and bool(torch.isfinite(grid).all()):
                raise FeatureCacheError(
                    f"layer {layer} of {video_id!r} has values beyond {self.manifest.storage_dtype}'s range "
                    f"(max |x| = {float(grid.abs().max()):.4g}); rebuild the cache with --storage-dtype bfloat16"
                )
            tensors[f"layer_{layer}"] = stored
        frames = _frame_list(frame_index)
        if targets is not None:
            tensors.update(_encode_targets(targets))
        metadata = {"video_id": video_id, "frame_index": json.dumps(frames), "fingerprint": self._hash,
                    "targets": "1" if targets is not None else "0"}
        path = self.path_for(video_id, frames)
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)
        return path

    def read(self, video_id: str, frame_index: Sequence[int] | torch.Tensor) -> dict[int, torch.Tensor]:
        """One clip's grids ``{layer: (T', H', W', C)}`` in the storage dtype (CPU)."""
        return self.read_clip(video_id, frame_index, targets=False)[0]

    def read_clip(self, video_id: str, frame_index: Sequence[int] | torch.Tensor, *, targets: bool = True
                  ) -> tuple[dict[int, torch.Tensor], dict[str, Any] | None]:
        """One clip's grids (as :meth:`read`) and, with ``targets``, its stored targets (:func:`clip_targets`'
        keys). The file is memory-mapped (:func:`map_safetensors`): the tensors are views of the mapping, read
        from the page cache when first used (e.g. by the copy to the GPU), never copied here; a file written
        without targets raises :class:`FeatureCacheError` when they are asked for."""
        frames = _frame_list(frame_index)
        path = self.path_for(video_id, frames)
        if not path.is_file():
            raise MissingFeaturesError(self._missing_message([(video_id, frames)]))
        try:
            tensors, meta = map_safetensors(path)
            out = {layer: tensors[f"layer_{layer}"] for layer in self.layers}
            stored = {k[len(TARGET_PREFIX):]: v for k, v in tensors.items() if k.startswith(TARGET_PREFIX)}
        except Exception as err:  # noqa: BLE001 - re-raised with the file
            raise FeatureCacheError(f"cannot read cached features {path} ({err}); delete the file and fill the cache again") from err
        self._check_clip_file(path, meta, video_id, frames, targets=targets)
        return (out, _decode_targets(stored, path)) if targets else (out, None)

    def read_clips(self, keys: Sequence[tuple[str, Sequence[int] | torch.Tensor]], buffers: ReadBuffers | None = None
                   ) -> list[tuple[dict[int, torch.Tensor], dict[str, Any]]]:
        """Grids and targets of several clips (each as :meth:`read_clip` gives them), their files read with
        ``preadv`` into one buffer taken from ``buffers`` (default: new memory). A tensor that every clip holds with
        the same dtype and shape is laid out as consecutive rows of one ``(n, ...)`` block, so that
        :func:`collate_cached_clips` batches the clips without a copy; the others get a place per clip. Every byte
        is read here (one kernel copy per file, no mapping left to fault in later); the tensors are views of the
        buffer — see :class:`ReadBuffers` for how long they stay valid."""
        keys = [(str(vid), _frame_list(frames)) for vid, frames in keys]
        paths = [self.path_for(vid, frames) for vid, frames in keys]
        missing = [key for key, path in zip(keys, paths) if not path.is_file()]
        if missing:
            raise MissingFeaturesError(self._missing_message(missing))
        fds: list[int] = []
        try:
            headers = []
            for path, (vid, frames) in zip(paths, keys):
                fds.append(os.open(path, os.O_RDONLY))
                try:
                    layout, meta = _read_header(fds[-1])
                except (OSError, ValueError, KeyError, TypeError) as err:
                    raise FeatureCacheError(f"cannot read cached features {path} ({err}); delete the file and fill "
                                            "the cache again") from err
                self._check_clip_file(path, meta, vid, frames, targets=True)
                headers.append(layout)
            first, n = headers[0], len(keys)
            blocks = [name for name in first if all(h.get(name, (None,))[:2] == first[name][:2] for h in headers)]
            total, places = 0, {}
            for name in blocks:  # (n, ...) blocks first, then what differs per clip (e.g. GT boxes)
                places[name] = total = _aligned(total)
                total += n * (first[name][3] - first[name][2])
            own: list[dict[str, int]] = []
            for layout in headers:
                own.append({})
                for name, (_, _, start, end) in layout.items():
                    if name not in places:
                        own[-1][name] = total = _aligned(total)
                        total += end - start
            buffer = buffers.take(total) if buffers is not None else torch.empty(total, dtype=torch.uint8)
            view = memoryview(buffer.numpy())
            out = []
            for b, (layout, fd, path) in enumerate(zip(headers, fds, paths)):
                tensors = {}
                runs = []
                for name, (dtype, shape, start, end) in layout.items():
                    if name in places:
                        at = places[name] + b * (end - start)
                        tensors[name] = buffer[places[name] : places[name] + n * (end - start)].view(dtype).view(n, *shape)[b]
                    else:
                        at = own[b][name]
                        tensors[name] = buffer[at : at + end - start].view(dtype).view(shape)
                    runs.append((start, end, at))
                try:
                    _read_runs(fd, view, sorted(runs))
                except (OSError, EOFError) as err:
                    raise FeatureCacheError(f"cannot read cached features {path} ({err}); delete the file and fill "
                                            "the cache again") from err
                try:
                    features = {layer: tensors[f"layer_{layer}"] for layer in self.layers}
                except KeyError as err:
                    raise FeatureCacheError(f"{path} lacks the grid {err}; the cache is corrupt — rebuild it with "
                                            "--overwrite") from err
                stored = {k[len(TARGET_PREFIX):]: v for k, v in tensors.items() if k.startswith(TARGET_PREFIX)}
                out.append((features, _decode_targets(stored, path)))
            return out
        finally:
            for fd in fds:
                os.close(fd)

    def _check_clip_file(self, path: Path, meta: Mapping[str, str], video_id: str, frames: list[int], *,
                         targets: bool) -> None:
        """Refuse a clip file that holds another clip, other settings, or (``targets``) no targets."""
        if meta.get("video_id") != video_id or json.loads(meta.get("frame_index", "null")) != frames:
            raise FeatureCacheError(f"{path} holds another clip ({meta.get('video_id')!r}, {meta.get('frame_index')}); "
                                    "the cache is corrupt — rebuild it with --overwrite")
        if meta.get("fingerprint") != self._hash:
            raise FeatureCacheError(f"{path} was written with other settings than {self.root / MANIFEST} describes; "
                                    "rebuild the cache with `tvau cache-features ... --overwrite`")
        if targets and meta.get("targets") != "1":
            raise FeatureCacheError(f"{path} holds features but not the clip's targets, so reading it would still "
                                    "need the video; fill the cache again with `tvau cache-features ... --overwrite`")

    def read_batch(self, video_ids: Sequence[str], frame_index: torch.Tensor) -> dict[int, torch.Tensor]:
        """The grids of a batch of clips: ``{layer: (B, T', H', W', C)}``; ``frame_index`` is ``(B, T)`` as in
        :class:`ClipBatch`. Raises :class:`MissingFeaturesError` naming every missing clip."""
        keys = [(vid, _frame_list(frame_index[b])) for b, vid in enumerate(video_ids)]
        missing = [k for k in keys if not self.contains(*k)]
        if missing:
            raise MissingFeaturesError(self._missing_message(missing))
        clips = [self.read(vid, frames) for vid, frames in keys]
        return {layer: torch.stack([c[layer] for c in clips]) for layer in self.layers}

    def _missing_message(self, keys: Sequence[tuple[str, list[int]]]) -> str:
        shown = ", ".join(f"{vid!r} frames {_describe_frames(frames)}" for vid, frames in keys[:3])
        more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
        return (
            f"{len(keys)} clip(s) not in the feature cache {self.root}: {shown}{more}. Fill the cache for this "
            "data (`tvau cache-features --config <your config>`; it adds only what is missing), or set the "
            "task's feature_cache_missing: compute to run the tower for such clips"
        )


def attach_cached_features(batch: ClipBatch, cache: FeatureCache) -> ClipBatch:
    """Put the cached grids of ``batch``'s clips into ``batch.extras`` (:func:`feature_key` per layer, storage
    dtype, CPU) and return the batch; raises :class:`MissingFeaturesError` when a clip is missing."""
    grids = cache.read_batch(batch.video_id, batch.frame_index)
    for layer, grid in grids.items():
        batch.extras[feature_key(layer)] = grid
    return batch


#: ``madvise`` advice that maps a range's pages without copying them (``MADV_POPULATE_READ``, Linux 5.14)
_MADV_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22)
#: safetensors dtype names → torch dtypes (those a cache file holds)
_SAFETENSORS_DTYPES = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32, "F64": torch.float64,
                       "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8, "BOOL": torch.bool}


def map_safetensors(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of a safetensors file as views of a private memory map of it (the pages of the
    page cache mapped, nothing copied). Layout (the safetensors format): 8 bytes little-endian header length,
    a JSON header ``{name: {dtype, shape, data_offsets}, "__metadata__": {...}}``, then the data. A tensor whose
    offset is not aligned to its element size is copied instead of viewed."""
    with open(path, "rb") as fh:
        # private copy-on-write: a consumer that writes into a tensor gets its own copy of that page (a read-only
        # mapping would crash it instead), and the file is never changed. Not MAP_POPULATE: on a writable private
        # mapping it would copy every page up front.
        mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY)
    # map the page-cache pages in one call (read-only until written; Linux ≥ 5.14), not one fault per 4 KiB; an
    # older kernel refuses the advice and the pages fault in on first use
    with contextlib.suppress(OSError, ValueError, AttributeError):
        mapped.madvise(_MADV_POPULATE_READ)
    size = int.from_bytes(mapped[:8], "little")
    header = json.loads(mapped[8 : 8 + size])
    meta = header.pop("__metadata__", None) or {}
    data = torch.frombuffer(mapped, dtype=torch.uint8)[8 + size :]
    out = {}
    for name, info in header.items():
        dtype = _SAFETENSORS_DTYPES[info["dtype"]]
        start, end = (int(v) for v in info["data_offsets"])
        raw = data[start:end]
        item = torch.empty((), dtype=dtype).element_size()
        if (8 + size + start) % item:
            raw = raw.clone()
        out[name] = raw.view(dtype).reshape([int(v) for v in info["shape"]])
    return out, meta



#: bytes read at the start of a clip file in one call, enough for its 8-byte length and JSON header (~1 KiB)
_HEADER_READ = 1 << 14
#: alignment of each tensor inside a read buffer (bytes; any dtype's element size divides it)
_ALIGN = 64
#: a reused read buffer's size is rounded up to a multiple of this (bytes), after 1/16 of headroom
_HEADROOM = 1 << 16


def _aligned(offset: int) -> int:
    return -(-offset // _ALIGN) * _ALIGN


def _read_header(fd: int) -> tuple[dict[str, tuple[torch.dtype, list[int], int, int]], dict[str, str]]:
    """The tensors of an open safetensors file ``{name: (dtype, shape, start, end)}`` (byte offsets in the file,
    in the header's order) and its metadata."""
    head = os.pread(fd, _HEADER_READ, 0)
    size = int.from_bytes(head[:8], "little")
    if 8 + size > len(head):
        head += os.pread(fd, 8 + size - len(head), len(head))
    header = json.loads(head[8 : 8 + size])
    meta = header.pop("__metadata__", None) or {}
    layout = {}
    for name, info in header.items():
        dtype, shape = _SAFETENSORS_DTYPES[info["dtype"]], [int(v) for v in info["shape"]]
        start, end = (8 + size + int(v) for v in info["data_offsets"])
        if end - start != torch.Size(shape).numel() * torch.empty((), dtype=dtype).element_size():
            raise ValueError(f"tensor {name!r}: {end - start} bytes for shape {shape} of {info['dtype']}")
        layout[name] = (dtype, shape, start, end)
    return layout, meta


def _read_runs(fd: int, view: memoryview, runs: Sequence[tuple[int, int, int]]) -> None:
    """Read the byte ranges ``(start, end, destination offset in view)`` of ``fd``, sorted by ``start``: each run
    of adjacent ranges with one ``preadv`` scattering it to its destinations."""
    i = 0
    while i < len(runs):
        start = end = runs[i][0]
        parts = []
        while i < len(runs) and runs[i][0] == end:
            s, e, at = runs[i]
            parts.append(view[at : at + e - s])
            end, i = e, i + 1
        _preadv_fully(fd, parts, start)


def _preadv_fully(fd: int, parts: list[memoryview], offset: int) -> None:
    """Fill ``parts`` in turn with the bytes of ``fd`` from ``offset`` (``preadv`` until done; ``EOFError`` when
    the file ends first)."""
    parts = [part for part in parts if part.nbytes]
    while parts:
        if hasattr(os, "preadv"):
            got = os.preadv(fd, parts[:1024], offset)  # at most IOV_MAX buffers per call
        else:  # no preadv (Windows): one read per part
            os.lseek(fd, offset, os.SEEK_SET)
            got = os.readv(fd, parts[:1]) if hasattr(os, "readv") else _read_into(fd, parts[0])
        if got == 0:
            raise EOFError(f"the file ends {sum(p.nbytes for p in parts)} bytes early")
        offset += got
        while parts and got >= parts[0].nbytes:
            got -= parts.pop(0).nbytes
        if got:
            parts[0] = parts[0][got:]


def _read_into(fd: int, part: memoryview) -> int:
    data = os.read(fd, part.nbytes)
    part[: len(data)] = data
    return len(data)


def _storage_in_use(buffer: torch.Tensor) -> bool:
    """Whether a tensor other than ``buffer`` itself views ``buffer``'s memory (its storage's reference count;
    ``True`` when torch cannot tell, so that nothing is ever overwritten on a guess)."""
    use_count = getattr(torch._C, "_storage_Use_Count", None)
    if use_count is None:
        return True
    storage = buffer.untyped_storage()  # this wrapper holds one reference, ``buffer`` another
    return use_count(storage._cdata) > 2


class ReadBuffers:
    """The memory :class:`CachedClipDataset` reads a batch's files into (:meth:`FeatureCache.read_clips`); the
    batch's tensors are views of it.

    * In the main process, a ring of ``slots`` buffers reused from batch to batch: a buffer is reused only when
      no tensor viewing it is alive any more, so a batch the caller still holds (the training step's, one
      prefetched by Lightning) is never overwritten — a new buffer is allocated in its place instead. A reused
      buffer is memory already mapped: reading a file into it is one kernel copy, with no page faults.
    * With ``pin_memory`` (``None``: when CUDA is available), page-locked memory from torch's caching host
      allocator instead: the batch goes to the GPU by DMA (``.to("cuda", non_blocking=True)``), and the allocator
      hands a block out again only after the copies that read it have finished.
    * In a DataLoader worker, new shared memory per batch: the batch reaches the main process without the copy
      into shared memory the DataLoader makes otherwise, and a worker never reuses memory that the main process
      may still read.

    ``allocations`` counts the buffers allocated (reused ones are not counted).
    """

    def __init__(self, slots: int = 3, pin_memory: bool | None = None) -> None:
        if slots < 1:
            raise ValueError(f"ReadBuffers needs at least one slot, got {slots}")
        self.slots = int(slots)
        self.pin_memory = pin_memory
        self.allocations = 0
        self._ring: list[torch.Tensor | None] = [None] * self.slots
        self._next = 0

    def __getstate__(self) -> dict[str, Any]:  # a copy in another process starts with an empty ring
        return {**self.__dict__, "_ring": [None] * self.slots, "_next": 0}

    def take(self, nbytes: int) -> torch.Tensor:
        """A 1-D uint8 buffer of ``nbytes`` bytes to read into (contents undefined)."""
        if torch.utils.data.get_worker_info() is not None:
            self.allocations += 1
            return _new_shared(nbytes)
        if (self.pin_memory is None or self.pin_memory) and torch.cuda.is_available():
            self.allocations += 1
            return torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
        for k in range(self.slots):
            i = (self._next + k) % self.slots
            buffer = self._ring[i]
            if buffer is not None and buffer.numel() >= nbytes and not _storage_in_use(buffer):
                self._next = (i + 1) % self.slots
                return buffer[:nbytes]
        # none free and large enough: a new buffer, in a free slot if there is one (a buffer it replaces lives on
        # with its views); with headroom, as batches differ a little in size (GT boxes)
        i = next((k for k, b in enumerate(self._ring) if b is None or not _storage_in_use(b)), self._next)
        self._ring[i] = torch.empty(-(-(nbytes + nbytes // 16) // _HEADROOM) * _HEADROOM, dtype=torch.uint8)
        self._next = (i + 1) % self.slots
        self.allocations += 1
        return self._ring[i][:nbytes]


def _new_shared(nbytes: int) -> torch.Tensor:
    """``nbytes`` of new shared memory as a uint8 tensor (what a worker's batch is sent through)."""
    try:
        storage = torch.UntypedStorage._new_shared(nbytes)
    except (AttributeError, RuntimeError):  # private API gone: shared after allocation (copies the zeros once)
        return torch.empty(nbytes, dtype=torch.uint8).share_memory_()
    return torch.empty(0, dtype=torch.uint8).set_(storage)


def clip_targets(batch: ClipBatch, index: int) -> dict[str, Any]:
    """The targets of clip ``index`` of ``batch`` as a cache file stores them (:data:`CLIP_TARGETS`)."""
    out: dict[str, Any] = {
        "masks": batch.masks[index], "frame_labels": batch.frame_labels[index],
        "frame_index": batch.frame_index[index], "valid": batch.valid[index], "fps": float(batch.fps[index]),
        "original_size": batch.original_size[index],
    }
    if batch.gt_boxes is not None:
        out["gt_boxes"] = batch.gt_boxes[index]
    if batch.video_labels is not None:
        out["video_labels"] = batch.video_labels[index]
    if batch.frame_categories is not None:
        out["frame_categories"] = batch.frame_categories[index]
    return out


def _encode_targets(targets: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Target tensors for a clip file (``target.<name>``; ``fps`` as a float64 ``(1,)``)."""
    unknown = sorted(set(targets) - set(CLIP_TARGETS))
    missing = [k for k in ("masks", "frame_labels", "frame_index", "valid", "fps", "original_size") if k not in targets]
    if unknown or missing:
        raise FeatureCacheError(f"clip targets: unknown {unknown}, missing {missing}; expected keys of {CLIP_TARGETS}")
    out = {}
    for name, value in targets.items():
        if name == "masks":  # bool, 1 byte per pixel: read back as a view of the mapped file, no unpacking
            out[TARGET_PREFIX + "masks"] = torch.as_tensor(value).detach().cpu().bool().contiguous()
        elif name == "fps":
            out[TARGET_PREFIX + "fps"] = torch.tensor([float(value)], dtype=torch.float64)
        else:
            out[TARGET_PREFIX + name] = torch.as_tensor(value).detach().cpu().contiguous()
    return out


def _decode_targets(stored: Mapping[str, torch.Tensor], path: Path) -> dict[str, Any]:
    try:
        out: dict[str, Any] = {"masks": stored["masks"]}
        out["fps"] = float(stored["fps"][0])
        out["original_size"] = tuple(int(v) for v in stored["original_size"].tolist())
        for name in ("frame_labels", "frame_index", "valid"):
            out[name] = stored[name]
    except (KeyError, ValueError) as err:
        raise FeatureCacheError(f"{path}: the stored clip targets are incomplete ({err}); fill the cache again "
                                "with `tvau cache-features ... --overwrite`") from err
    for name in ("gt_boxes", "video_labels", "frame_categories"):
        out[name] = stored.get(name)
    return out


@dataclass
class CachedClip:
    """One item of :class:`CachedClipDataset`: the clip's targets as a :class:`ClipSample` whose ``frames`` is a
    zero-stride placeholder ``(T, H, W, 3)`` (nothing decoded), and its grids ``{layer: (T', H', W', C)}``."""

    sample: ClipSample
    features: dict[int, torch.Tensor]


class CachedClipDataset(Dataset):
    """A split served from the feature cache alone: one file read per clip, no video opened.

    The DataLoader asks for a whole batch at once (:meth:`__getitems__`). With ``reader="read"`` the batch's
    files are read (``preadv``) into one buffer of :class:`ReadBuffers` — reused from batch to batch in the main
    process, page-locked when CUDA is available, shared memory in a worker — with every grid and equal-shaped
    target of the batch as consecutive rows of one tensor, so :func:`collate_cached_clips` copies nothing.
    ``reader="mmap"`` maps each file instead (:func:`map_safetensors`): nothing is copied, the pages are read
    where the consumer touches them. ``auto`` (default) maps when that copy is the only one — one clip per
    batch, in the main process, no CUDA: the CPU training step reads the grids in place — and reads otherwise,
    where the bytes are copied anyway (into a batch, to another process, to a GPU) and one kernel copy straight
    into their place is the cheapest (measured in ``benchmarks/bench_cached_epoch.py``).

    Args:
        cache: the opened cache (its files must hold targets: filled by a current ``tvau cache-features``).
        clips: ``(video id, frame indices padded with -1 to the clip length)`` per item, in the order of the
            dataset they replace (:meth:`from_dataset`).
        frame_size: ``(H, W)`` of the placeholder frames (the DataModule's frame size, which the masks have).
        reader: ``auto``, ``read`` (into reused buffers) or ``mmap``.
        pin_memory: (``read``) page-locked buffers; ``None``: when CUDA is available.
        buffer_slots: (``read``) batches the main process's ring holds; a batch still in use when its slot
            comes round again is left alone and a new buffer allocated.
    """

    def __init__(self, cache: FeatureCache, clips: Sequence[tuple[str, Sequence[int]]],
                 frame_size: tuple[int, int] | None = None, *, reader: str = "auto",
                 pin_memory: bool | None = None, buffer_slots: int = 3) -> None:
        if reader not in ("auto", "read", "mmap"):
            raise ValueError(f"reader must be 'auto', 'read' or 'mmap', got {reader!r}")
        self.cache = cache
        self.clips = [(str(vid), [int(f) for f in frames]) for vid, frames in clips]
        self.frame_size = None if frame_size is None else (int(frame_size[0]), int(frame_size[1]))
        self.reader = reader
        self.buffers = ReadBuffers(buffer_slots, pin_memory)

    @classmethod
    def from_dataset(cls, cache: FeatureCache, dataset: Any, **kwargs: Any) -> CachedClipDataset:
        """The cached twin of a clip dataset (``dataset.clips`` and ``clip_len``; no video is touched);
        ``kwargs``: ``reader``, ``pin_memory``, ``buffer_slots``."""
        clip_len = int(dataset.clip_len)
        keys = [(vid, [int(v) for v in idx] + [-1] * (clip_len - len(idx))) for vid, idx in dataset.clips]
        return cls(cache, keys, getattr(dataset, "frame_size", None), **kwargs)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> CachedClip:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[CachedClip]:
        """The items of one batch, read together (the DataLoader calls this with a batch's indices)."""
        keys = [self.clips[int(i)] for i in indices]
        if self.reader_for(len(keys)) == "mmap":
            read = [self.cache.read_clip(vid, frames) for vid, frames in keys]
        else:
            read = self.cache.read_clips(keys, self.buffers)
        return [self._item(vid, features, targets) for (vid, _), (features, targets) in zip(keys, read)]

    def reader_for(self, batch_size: int) -> str:
        """The reader a batch of ``batch_size`` clips gets here (``auto`` resolved, see the class docstring)."""
        if self.reader != "auto":
            return self.reader
        in_place = batch_size == 1 and torch.utils.data.get_worker_info() is None and not torch.cuda.is_available()
        return "mmap" if in_place else "read"

    @staticmethod
    def _item(video_id: str, features: dict[int, torch.Tensor], targets: dict[str, Any] | None) -> CachedClip:
        assert targets is not None
        masks = targets["masks"]
        placeholder = torch.zeros((), dtype=torch.uint8).expand(*masks.shape, 3)  # (T, H, W, 3), no memory
        sample = ClipSample(
            frames=placeholder, masks=masks, frame_labels=targets["frame_labels"],
            frame_index=targets["frame_index"], valid=targets["valid"], video_id=video_id, fps=targets["fps"],
            original_size=targets["original_size"], gt_boxes=targets["gt_boxes"],
            video_labels=targets["video_labels"], frame_categories=targets["frame_categories"],
        )
        return CachedClip(sample, features)


def collate_cached_clips(items: Sequence[CachedClip]) -> ClipBatch:
    """Batch :class:`CachedClip` items: targets as :func:`collate_clips` stacks them, the grids under
    :func:`feature_key` in ``extras``, and ``frames`` a zero-stride ``(B, T, H, W, 3)`` placeholder (its shape
    gives ``frame_size``; nothing was decoded). Tensors that are consecutive rows of one tensor (as
    :meth:`FeatureCache.read_clips` lays a batch out) and single clips become views, not copies."""
    if not items:
        raise ValueError("collate_cached_clips needs at least one item")
    samples = [it.sample for it in items]
    shape = tuple(samples[0].frames.shape)
    if len({s.num_frames for s in samples}) != 1:  # collate_clips says what is wrong
        return collate_clips([ClipSample(**{**vars(s), "frames": s.frames[:, :0, :0]}) for s in samples])

    def rows(name: str) -> torch.Tensor | None:
        values = [getattr(s, name) for s in samples]
        return None if any(v is None for v in values) else _stack_rows(values)

    batch = ClipBatch(
        frames=torch.zeros((), dtype=torch.uint8).expand(len(items), *shape), masks=rows("masks"),
        frame_labels=rows("frame_labels"), frame_index=rows("frame_index"), valid=rows("valid"),
        video_id=[s.video_id for s in samples], fps=torch.tensor([float(s.fps) for s in samples], dtype=torch.float32),
        original_size=torch.tensor([list(s.original_size) for s in samples], dtype=torch.int64),
        gt_boxes=None if any(s.gt_boxes is None for s in samples) else [s.gt_boxes for s in samples],
        video_labels=rows("video_labels"), frame_categories=rows("frame_categories"),
    )
    for layer in items[0].features:
        batch.extras[feature_key(layer)] = _stack_rows([it.features[layer] for it in items])
    return batch


def _stack_rows(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """``torch.stack(tensors)``, as a view when there is one tensor or when the tensors are consecutive rows of
    one contiguous block (same memory, dtype and shape, each starting where the previous one ends)."""
    first = tensors[0]
    if len(tensors) == 1:
        return first.unsqueeze(0)
    base, step = first.untyped_storage().data_ptr(), first.numel()
    for k, t in enumerate(tensors):
        if (t.dtype != first.dtype or t.shape != first.shape or not t.is_contiguous() or step == 0
                or t.untyped_storage().data_ptr() != base or t.storage_offset() != first.storage_offset() + k * step):
            return torch.stack(list(tensors))
    return first.new_empty(0).set_(first.untyped_storage(), first.storage_offset(), (len(tensors), *first.shape))


def _stat_identity(path: str | os.PathLike[str]) -> dict[str, int] | None:
    """``size`` and ``mtime_ns`` as :func:`video_identity` computes them, from ``stat`` alone."""
    path = Path(path)
    try:
        if path.is_dir():
            stats = [p.stat() for p in path.rglob("*") if p.is_file()]
            return {"size": sum(st.st_size for st in stats), "mtime_ns": max((st.st_mtime_ns for st in stats), default=0)}
        st = path.stat()
    except OSError:
        return None
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def _frame_list(frame_index: Sequence[int] | torch.Tensor) -> list[int]:
    if isinstance(frame_index, torch.Tensor):
        return [int(v) for v in frame_index.reshape(-1).tolist()]
    return [int(v) for v in frame_index]


def _describe_frames(frames: list[int]) -> str:
    real = [f for f in frames if f >= 0]
    if not real:
        return "(padding only)"
    pad = len(frames) - len(real)
    return f"{real[0]}..{real[-1]} ({len(real)} frames{f' + {pad} padding' if pad else ''})"
