"""Atomic file output: write to a temporary file beside the target, then rename.

A crash or an exception half-way never leaves a truncated file under the final name, and never destroys
an earlier good file of that name.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def default_permissions(path: Path) -> None:
    """Give a file or folder tree the permissions of a plain ``open``/``mkdir`` under the umask (temporary
    files and folders are created private to their owner)."""
    mask = _umask()
    paths = [path, *path.rglob("*")] if path.is_dir() else [path]
    for p in paths:
        p.chmod((0o777 if p.is_dir() else 0o666) & ~mask)


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; on success it is renamed to ``path``.

    The temporary name keeps ``path``'s suffix so that writers that pick a format from it (ffmpeg,
    safetensors, PIL) behave as for the final name. On error the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            default_permissions(tmp_path)
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


@contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``path``; on success it replaces ``path`` (renamed in one step),
    on any error (or Ctrl-C) it is deleted, with any parent folders this call created, so nothing partial is
    ever left under ``path`` and an earlier folder of that name survives a failure."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder; choose another output path")
    created = [p for p in [out.parent, *out.parent.parents] if not p.exists()]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in created:  # deepest first
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    default_permissions(tmp)
    backup = None
    if out.exists():
        backup = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        out.rename(backup / "old")
    try:
        tmp.rename(out)
    except BaseException:
        if backup is not None:
            (backup / "old").rename(out)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)
