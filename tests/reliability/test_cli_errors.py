"""Short errors: every error tvau knows ends in one line naming the value and the fix, with a non-zero exit."""

from __future__ import annotations

import numpy as np
import pytest

from tvau_lightning.cli import main as tvau


def _error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("tvau")]


@pytest.mark.parametrize(("override", "expected"), [
    (["--model.init_args.backbone.path", "/nonexistent/model"], "model folder not found: /nonexistent/model"),
    (["--model.init_args.backbone.layers", "[99]"], "vision layers [99] out of range"),
])
def test_errors_while_lightningcli_builds_the_model_are_one_line(fitted_ahd, capsys, override, expected):
    code = tvau(["validate", "--config", str(fitted_ahd.config), *override])
    captured = capsys.readouterr()
    assert code == 1
    lines = [line for line in captured.err.splitlines() if line.startswith("tvau validate: error:")]
    assert len(lines) == 1 and expected in lines[0] and "--verbose" in lines[0], captured.err
    assert "Traceback" not in captured.err and "Namespace(" not in captured.err


def test_verbose_shows_the_traceback(fitted_ahd):
    with pytest.raises(Exception, match="model folder not found"):
        tvau(["validate", "--config", str(fitted_ahd.config), "--model.init_args.backbone.path", "/nonexistent",
              "--verbose"])


@pytest.mark.parametrize(("option", "value", "expected"), [
    ("--fps", "0", "must be a finite number > 0"),
    ("--fps", "nan", "must be a finite number"),
    ("--batch-size", "0", "--batch-size"),
    ("--alpha", "1.5", "--alpha"),
])
def test_numeric_options_are_checked_before_any_work(fitted_ahd, tmp_path, capsys, option, value, expected):
    video = next(v for v in fitted_ahd.data.videos.values() if v.abnormal).path
    with pytest.raises(SystemExit) as exit_info:
        tvau(["analyze", str(video), "--ckpt", str(fitted_ahd.checkpoint), "--out", str(tmp_path / "out"),
              option, value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert option in err and expected in err and not (tmp_path / "out").exists()


def test_file_arguments_of_the_wrong_kind_are_named(fitted_ahd, fitted_rae, tmp_path, capsys):
    video = next(v for v in fitted_ahd.data.videos.values() if v.abnormal).path
    # a folder given as --ckpt
    assert tvau(["analyze", str(video), "--ckpt", str(tmp_path), "--out", str(tmp_path / "a"), "--quiet"]) == 1
    (line,) = _error_lines(capsys)
    assert "is a folder, not a checkpoint file" in line and str(tmp_path) in line
    # a text file saved as .npy labels
    bad = tmp_path / "labels.npy"
    bad.write_text("0 1 0\n")
    assert tvau(["analyze", str(video), "--ckpt", str(fitted_ahd.checkpoint), "--labels", str(bad),
                 "--out", str(tmp_path / "b"), "--quiet"]) == 1
    (line,) = _error_lines(capsys)
    assert "not a NumPy .npy file" in line and "pickled" not in line
    # a stage-1 checkpoint given to merge-lora
    assert tvau(["merge-lora", "--ckpt", str(fitted_ahd.checkpoint), "--out", str(tmp_path / "m")]) == 1
    (line,) = _error_lines(capsys)
    assert "is not a stage-2 RAETask checkpoint" in line and "Traceback" not in line
    # a file that is no checkpoint at all
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(np.arange(10, dtype=np.uint8).tobytes())
    assert tvau(["merge-lora", "--ckpt", str(junk), "--out", str(tmp_path / "m")]) == 1
    (line,) = _error_lines(capsys)
    assert "cannot read checkpoint" in line and str(junk) in line
    assert not any((tmp_path / d).exists() for d in ("a", "b", "m"))


def test_export_refuses_bad_input_and_unsafe_outputs(fitted_ahd, tmp_path, capsys):
    junk = tmp_path / "junk.ckpt"
    junk.write_text("not a checkpoint\n")
    assert tvau(["export", "--ckpt", str(junk), "--out", str(tmp_path / "a")]) == 1
    (line,) = _error_lines(capsys)
    assert "cannot read checkpoint" in line and str(junk) in line and not (tmp_path / "a").exists()
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("user data")
    assert tvau(["export", "--ckpt", str(fitted_ahd.checkpoint), "--out", str(foreign)]) == 1
    (line,) = _error_lines(capsys)
    assert "not created by tvau" in line and (foreign / "keep.txt").read_text() == "user data"
    assert sorted(p.name for p in foreign.iterdir()) == ["keep.txt"]
