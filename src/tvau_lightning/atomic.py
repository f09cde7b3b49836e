"""Atomic, owned outputs: files are written beside their target and renamed; folders are staged and swapped in.

A crash, an exception or a signal half-way never leaves a truncated file under the final name, and never
destroys an earlier good file of that name. Output folders follow three rules (:func:`check_output_dir`):

* the tool writes a marker file, :data:`OUTPUT_MARKER`, into every output folder it creates, and only such a
  folder is ever replaced (with ``overwrite``) or written into again; any other non-empty folder is refused;
* an output folder that equals or contains one of the command's inputs is refused (replacing it would delete
  the input);
* a folder that is replaced as a whole cannot be the current folder or one above it (``--out .``).

While a folder is staged, SIGINT and SIGTERM unwind the stack (:func:`signals_raise`) so that the staging
folder is deleted; SIGTERM then ends the process with exit status 128 + 15. A SIGKILL cannot be caught: the
staging folder it leaves is removed, with a note on stderr, by the next run that writes the same output.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

__all__ = [
    "OUTPUT_MARKER",
    "OutputFolderError",
    "Terminated",
    "atomic_directory",
    "atomic_path",
    "check_output_dir",
    "claim_output_dir",
    "default_permissions",
    "remove_stale_staging",
    "signals_raise",
    "write_text_atomic",
]

#: the file the tool writes into every output folder it creates; only folders holding it are replaced
OUTPUT_MARKER = ".tvau-output"
_PARTIAL = ".partial-"
_OLD = ".old-"


class OutputFolderError(FileExistsError):
    """An output folder the tool must not write (not its own, holds an input, is the current folder)."""

    def __str__(self) -> str:  # the plain message, without OSError's "[Errno …]" decoration
        return str(self.args[0]) if self.args else ""


class Terminated(SystemExit):
    """A termination signal (SIGTERM) arrived while an output was staged: raised so that ``finally`` and
    ``except BaseException`` blocks clean up; uncaught, the process exits with status ``128 + signum``."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + int(signum))
        self.signum = int(signum)


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


# --------------------------------------------------------------------------------------------- signals
def _raise_for(signum: int, frame: object) -> None:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(signum)


@contextmanager
def signals_raise(signums: Iterable[int] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """While inside, SIGINT raises ``KeyboardInterrupt`` and SIGTERM raises :class:`Terminated`, so that the
    cleanup code of everything on the stack runs; the previous handlers are restored on exit. Signals that
    were ignored (``SIG_IGN``, e.g. under ``nohup``) stay ignored; outside the main thread nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for signum in signums:
        old = signal.getsignal(signum)
        if old is signal.SIG_IGN or old is None:  # None: installed from C; leave it alone
            continue
        previous[signum] = old
        signal.signal(signum, _raise_for)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back during a few renames that must happen together (delivered right after)."""
    block = getattr(signal, "pthread_sigmask", None)
    if block is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


# --------------------------------------------------------------------------------------------- files
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


# --------------------------------------------------------------------------------------------- folders
def _absolute(path: str | os.PathLike[str]) -> Path:
    """``path`` made absolute and normalised (``.`` → the current folder, ``a/..`` → nothing)."""
    return Path(os.path.abspath(os.fspath(path)))


def _marker_text() -> str:
    return json.dumps({"tool": "tvau-lightning", "pid": os.getpid(), "host": socket.gethostname(),
                       "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}) + "\n"


def _is_owned(folder: Path) -> bool:
    return (folder / OUTPUT_MARKER).is_file()


def check_output_dir(out: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]] = (),
                     overwrite: bool = False, *, replace: bool = True) -> Path:
    """Refuse an output folder before any work is done; return it as an absolute path.

    Args:
        out: the output folder.
        inputs: files and folders the command reads; ``out`` may neither equal nor contain one of them.
        overwrite: with ``replace``, allow replacing a non-empty folder that this tool created.
        replace: ``True`` when the folder is replaced as a whole (staged by :func:`atomic_directory`);
            ``False`` when the command writes into it and resumes in it (``build-dataset``): then a folder
            the tool created is reused without ``overwrite``.

    Raises:
        OutputFolderError: with the reason and what to do.
    """
    given = os.fspath(out)
    folder = _absolute(out)
    if folder.exists() and not folder.is_dir():
        raise OutputFolderError(f"{given} exists and is not a folder; choose another output folder")
    resolved = folder.resolve()
    for item in inputs:
        source = Path(os.path.abspath(os.fspath(item))).resolve()
        if source == resolved:
            raise OutputFolderError(f"output folder {given} is the input {item}; writing there would destroy it — "
                                    "choose an output folder outside the inputs")
        if resolved in source.parents:
            raise OutputFolderError(f"output folder {given} contains the input {item}; writing there could destroy "
                                    "it — choose an output folder outside the inputs")
    if replace:
        here = Path.cwd().resolve()
        if resolved == here or resolved in here.parents:
            what = "the current folder" if resolved == here else "a folder above the current one"
            raise OutputFolderError(f"output folder {given} is {what}: the output folder is replaced as a whole, "
                                    "so it must be a folder of its own — choose a new one, e.g. --out results")
    if folder.is_dir() and any(folder.iterdir()):
        if not _is_owned(folder):
            raise OutputFolderError(
                f"output folder {given} is not empty and was not created by tvau (no {OUTPUT_MARKER} marker "
                "inside); it is never replaced or written into — choose a new or empty folder, or empty it yourself"
            )
        if replace and not overwrite:
            raise OutputFolderError(f"output folder {given} already holds an earlier tvau output; pass --overwrite "
                                    "to replace it, or choose another folder")
    return folder


def claim_output_dir(out: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]] = ()) -> Path:
    """For commands that write into their output folder and resume in it: check it
    (:func:`check_output_dir` with ``replace=False``), create it if needed and mark it as the tool's."""
    folder = check_output_dir(out, inputs, replace=False)
    folder.mkdir(parents=True, exist_ok=True)
    if not _is_owned(folder):
        write_text_atomic(folder / OUTPUT_MARKER, _marker_text())
    return folder


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _staging_in_use(staging: Path) -> bool:
    """Whether a staging folder belongs to a run that is still going (same host, live process)."""
    try:
        info = json.loads((staging / OUTPUT_MARKER).read_text(encoding="utf-8"))
        pid, host = int(info["pid"]), str(info["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return host == socket.gethostname() and pid != os.getpid() and _pid_alive(pid)


def remove_stale_staging(out: str | os.PathLike[str]) -> list[str]:
    """Remove the staging (``.NAME.partial-*``) and backup (``.NAME.old-*``) folders a killed run left beside
    ``out``; a backup whose output is missing (killed between the two renames) is put back instead. Folders of
    a run still going are left alone. Returns one note per folder, also printed on stderr."""
    folder = _absolute(out)
    notes = []
    if not folder.parent.is_dir():
        return notes
    for partial in sorted(folder.parent.glob(f".{folder.name}{_PARTIAL}*")):
        if partial.is_dir() and not _staging_in_use(partial):
            shutil.rmtree(partial, ignore_errors=True)
            notes.append(f"note: removed {partial}, the staging folder of an interrupted earlier run")
    for backup in sorted(folder.parent.glob(f".{folder.name}{_OLD}*")):
        if not backup.is_dir():
            continue
        if (backup / "old").is_dir() and not folder.exists():
            (backup / "old").rename(folder)
            notes.append(f"note: restored {folder} from {backup}, left by a run killed while replacing it")
        else:
            notes.append(f"note: removed {backup}, the backup folder of an interrupted earlier run")
        shutil.rmtree(backup, ignore_errors=True)
    for note in notes:
        print(note, file=sys.stderr)
    return notes


@contextmanager
def atomic_directory(path: str | os.PathLike[str], *, inputs: Iterable[str | os.PathLike[str]] = (),
                     overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh staging folder beside ``path``; on success it replaces ``path`` in one rename.

    ``path`` is checked first (:func:`check_output_dir`: not holding an ``input``, not the current folder, and
    when non-empty only a folder this tool created, replaced only with ``overwrite``); stale staging folders of
    a killed run are removed with a note. The staging folder gets the :data:`OUTPUT_MARKER`. On any error,
    Ctrl-C or SIGTERM it is deleted, with any parent folders this call created, so nothing partial is ever left
    and an earlier folder of that name survives the failure.

    Raises:
        OutputFolderError: ``path`` may not be written.
    """
    out = check_output_dir(path, inputs, overwrite, replace=True)
    remove_stale_staging(out)
    created = [p for p in [out.parent, *out.parent.parents] if not p.exists()]
    with signals_raise():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}{_PARTIAL}", dir=out.parent))
        try:
            (tmp / OUTPUT_MARKER).write_text(_marker_text(), encoding="utf-8")
            yield tmp
            if not (tmp / OUTPUT_MARKER).is_file():  # the caller emptied the folder
                (tmp / OUTPUT_MARKER).write_text(_marker_text(), encoding="utf-8")
            default_permissions(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            for folder in created:  # deepest first
                try:
                    folder.rmdir()
                except OSError:
                    break
            raise
        _swap_in(tmp, out)


def _swap_in(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``, moving an existing ``out`` aside first and deleting it after."""
    backup = None
    try:
        with _signals_deferred():
            if out.exists():
                backup = Path(tempfile.mkdtemp(prefix=f".{out.name}{_OLD}", dir=out.parent))
                out.rename(backup / "old")
            try:
                tmp.rename(out)
            except BaseException:
                if backup is not None:
                    (backup / "old").rename(out)
                raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def file_name_for(identifier: str) -> str:
    """A single, safe path component for an identifier read from data (a video id, a record name): every
    character outside letters, digits and ``-_.`` is %-encoded (so no ``/`` or ``\\`` survives) and a leading
    dot is encoded too (so ``.``, ``..`` and hidden names cannot occur). Distinct identifiers stay distinct."""
    name = quote(str(identifier), safe="-_.")
    if not name:
        raise ValueError("an empty identifier cannot name a file")
    return "%2E" + name[1:] if name.startswith(".") else name
