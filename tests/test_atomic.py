"""Atomic outputs: a failure never leaves a partial file or folder, nor destroys an earlier good one."""

import os
import stat

import pytest

from tvau_lightning.atomic import OUTPUT_MARKER, atomic_directory, atomic_path, write_text_atomic


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_path_keeps_the_old_file_on_failure_and_uses_the_umask(tmp_path):
    target = tmp_path / "out" / "scores.csv"
    write_text_atomic(target, "good\n")
    with pytest.raises(ValueError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise ValueError("crash")
    assert target.read_text() == "good\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["scores.csv"]
    umask = os.umask(0)
    os.umask(umask)
    assert _mode(target) == 0o666 & ~umask  # not the private mode of a temp file


def test_atomic_directory_replaces_atomically_or_not_at_all(tmp_path):
    out = tmp_path / "a" / "b"
    with pytest.raises(KeyError), atomic_directory(out) as stage:
        (stage / "x.txt").write_text("partial")
        raise KeyError("boom")
    assert not (tmp_path / "a").exists()  # parents it created are gone too
    with atomic_directory(out) as stage:
        (stage / "x.txt").write_text("one")
    with pytest.raises(KeyError), atomic_directory(out, overwrite=True) as stage:
        (stage / "y.txt").write_text("two")
        raise KeyError("boom")
    assert sorted(p.name for p in out.iterdir()) == [OUTPUT_MARKER, "x.txt"]  # the earlier good folder survives
    with atomic_directory(out, overwrite=True) as stage:
        (stage / "y.txt").write_text("two")
    assert sorted(p.name for p in out.iterdir()) == [OUTPUT_MARKER, "y.txt"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["b"]


def test_file_name_for_never_leaves_the_folder(tmp_path):
    from tvau_lightning.atomic import file_name_for

    names = ["../../etc/passwd", "..", ".", ".hidden", "a/b", "a\\b", "Scene1/video 01", "ok-name_1.2"]
    encoded = [file_name_for(n) for n in names]
    assert len(set(encoded)) == len(names)  # distinct ids stay distinct
    for name in encoded:
        assert "/" not in name and "\\" not in name and not name.startswith(".")
        assert (tmp_path / name).resolve().parent == tmp_path.resolve()
    assert file_name_for("ok-name_1.2") == "ok-name_1.2"
