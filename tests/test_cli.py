"""The `tvau` entry point: overview help, LightningCLI subcommands, unknown commands."""

import subprocess
import sys

import pytest

from tvau_lightning.checkpoints import CheckpointError
from tvau_lightning.cli import LIGHTNING_COMMANDS, main


def test_overview_lists_lightning_subcommands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("fit", "validate", "test", "predict"):
        assert f"  {name} " in out
    assert set(LIGHTNING_COMMANDS) == {"fit", "validate", "test", "predict"}


def test_unknown_command_exits_2(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_console_script_fit_help_runs():
    # the installed entry point, as a user runs it
    proc = subprocess.run([sys.executable, "-m", "tvau_lightning.cli", "fit", "--help"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "--trainer.max_epochs" in proc.stdout


# --------------------------------------------------------------------------------------------- LightningCLI
# Tasks and DataModules by class name, as Lightning users write them (subclass mode over the library's bases).
SHORT_NAMES = ["fit", "--model", "AHDTask", "--data", "UBnormalDataModule"]


def _printed_config(capsys, argv):
    import yaml

    with pytest.raises(SystemExit) as stop:
        main([*argv, "--print_config"])
    assert stop.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


def test_fit_print_config_by_class_name_is_complete_and_rerunnable(capsys, tmp_path):
    args = [*SHORT_NAMES, "--model.backbone.path", "backbones/tiny", "--data.root", "data/ubnormal",
            "--data.split_dir", "data/ubnormal/scripts", "--data.video_backend", "pyav"]
    config = _printed_config(capsys, args)
    assert config["model"]["class_path"] == "tvau_lightning.tasks.ahd.AHDTask"
    assert config["data"]["class_path"].endswith(".UBnormalDataModule")
    model, data = config["model"]["init_args"], config["data"]["init_args"]
    assert model["backbone"]["path"] == "backbones/tiny"
    assert (data["root"], data["split_dir"], data["video_backend"]) == ("data/ubnormal", "data/ubnormal/scripts", "pyav")
    # every constructor argument is written out, defaults included
    import inspect

    from tvau_lightning.data.ubnormal import UBnormalDataModule
    from tvau_lightning.tasks.ahd import AHDTask

    assert set(inspect.signature(UBnormalDataModule).parameters) <= set(data)
    assert set(inspect.signature(AHDTask).parameters) <= set(model)
    # the printed config parses back to itself
    path = tmp_path / "printed.yaml"
    import yaml

    path.write_text(yaml.safe_dump(config))
    assert _printed_config(capsys, ["fit", "--config", str(path)]) == config


def test_fit_help_lists_the_tasks_and_datamodules(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    out = capsys.readouterr().out
    for name in ("AHDTask", "RAETask", "UBnormalDataModule", "ShanghaiTechDataModule", "DialogueDataModule"):
        assert name in out, f"{name} missing from `tvau fit --help`"


def test_enumerated_options_show_and_check_their_choices(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--data.help", "UBnormalDataModule"])
    out = capsys.readouterr().out
    assert "{auto,decord,pyav,torchcodec}" in out  # video_backend
    assert "{bilinear,bicubic,area,nearest}" in out  # resize_mode
    with pytest.raises(SystemExit) as stop:
        main([*SHORT_NAMES, "--data.root", "r", "--data.split_dir", "s", "--data.video_backend", "ffmpeg",
              "--print_config"])
    assert stop.value.code == 2
    assert "ffmpeg" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "unknown"),
    [
        (["analyze", "clip.mp4", "--ckpt", "a.ckpt", "--video", "auto"], "--video"),  # not --video-backend
        (["chat", "--ckpt", "a.ckpt", "--video", "auto"], "--video"),
        (["export", "--ckpt", "a.ckpt", "--out", "x", "--o", "y"], "--o"),
    ],
)
def test_a_prefix_of_an_option_is_not_taken_for_it(capsys, argv, unknown):
    """argparse would read ``--video auto`` as ``--video-backend auto`` and the video path as a value of the
    wrong option; every tvau command refuses abbreviations instead."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert unknown in capsys.readouterr().err


def test_tool_commands_print_one_line_or_the_traceback_with_verbose(capsys, tmp_path):
    """A failing tool command prints one line and exits 1; ``--verbose`` (anywhere) raises the original error."""
    missing = tmp_path / "missing.ckpt"
    assert main(["export", "--ckpt", str(missing), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tvau export: error:") and str(missing) in err[0]
    with pytest.raises(CheckpointError, match="missing.ckpt"):
        main(["export", "--verbose", "--ckpt", str(missing), "--out", str(tmp_path / "out")])
    assert main(["export", "--ckpt", str(missing), "--out", str(tmp_path / "out")]) == 1  # not sticky
    assert not (tmp_path / "out").exists()
