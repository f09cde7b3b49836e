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
frames that were not decoded. Files are memory-mapped (:func:`map_safetensors`): a clip's tensors are views of the
mapping, so the only copy of the bytes is the one its consumer makes (the host → GPU transfer).

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
    """The data settings that change a clip's features: frame size, resampling filter, clip length and stride,
    and the DataModule class (read from the DataModule's attributes; ``None`` where it has none)."""
    frame_size = getattr(datamodule, "frame_size", None)
    return {
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
        if meta.get("video_id") != video_id or json.loads(meta.get("frame_index", "null")) != frames:
            raise FeatureCacheError(f"{path} holds another clip ({meta.get('video_id')!r}, {meta.get('frame_index')}); "
                                    "the cache is corrupt — rebuild it with --overwrite")
        if meta.get("fingerprint") != self._hash:
            raise FeatureCacheError(f"{path} was written with other settings than {self.root / MANIFEST} describes; "
                                    "rebuild the cache with `tvau cache-features ... --overwrite`")
        if not targets:
            return out, None
        if meta.get("targets") != "1":
            raise FeatureCacheError(f"{path} holds features but not the clip's targets, so reading it would still "
                                    "need the video; fill the cache again with `tvau cache-features ... --overwrite`")
        return out, _decode_targets(stored, path)

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

    Args:
        cache: the opened cache (its files must hold targets: filled by a current ``tvau cache-features``).
        clips: ``(video id, frame indices padded with -1 to the clip length)`` per item, in the order of the
            dataset they replace (:meth:`from_dataset`).
        frame_size: ``(H, W)`` of the placeholder frames (the DataModule's frame size, which the masks have).
    """

    def __init__(self, cache: FeatureCache, clips: Sequence[tuple[str, Sequence[int]]],
                 frame_size: tuple[int, int] | None = None) -> None:
        self.cache = cache
        self.clips = [(str(vid), [int(f) for f in frames]) for vid, frames in clips]
        self.frame_size = None if frame_size is None else (int(frame_size[0]), int(frame_size[1]))

    @classmethod
    def from_dataset(cls, cache: FeatureCache, dataset: Any) -> CachedClipDataset:
        """The cached twin of a clip dataset (``dataset.clips`` and ``clip_len``; no video is touched)."""
        clip_len = int(dataset.clip_len)
        keys = [(vid, [int(v) for v in idx] + [-1] * (clip_len - len(idx))) for vid, idx in dataset.clips]
        return cls(cache, keys, getattr(dataset, "frame_size", None))

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> CachedClip:
        video_id, frames = self.clips[index]
        features, targets = self.cache.read_clip(video_id, frames)
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
    gives ``frame_size``; nothing was decoded)."""
    if not items:
        raise ValueError("collate_cached_clips needs at least one item")
    shape = tuple(items[0].sample.frames.shape)
    if len(items) == 1:  # one clip: views of its (memory-mapped) tensors, nothing copied
        s = items[0].sample
        one = lambda t: None if t is None else t.unsqueeze(0)  # noqa: E731
        batch = ClipBatch(frames=s.frames, masks=one(s.masks), frame_labels=one(s.frame_labels),
                          frame_index=one(s.frame_index), valid=one(s.valid), video_id=[s.video_id],
                          fps=torch.tensor([float(s.fps)], dtype=torch.float32),
                          original_size=torch.tensor([list(s.original_size)], dtype=torch.int64),
                          gt_boxes=None if s.gt_boxes is None else [s.gt_boxes], video_labels=one(s.video_labels),
                          frame_categories=one(s.frame_categories))
    else:
        samples = [ClipSample(**{**vars(it.sample), "frames": it.sample.frames[:, :0, :0]}) for it in items]
        batch = collate_clips(samples)
    batch.frames = torch.zeros((), dtype=torch.uint8).expand(len(items), *shape)
    for layer in items[0].features:
        grids = [it.features[layer] for it in items]
        batch.extras[feature_key(layer)] = grids[0].unsqueeze(0) if len(grids) == 1 else torch.stack(grids)
    return batch


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
