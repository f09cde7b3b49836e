"""The `tvau` entry point: overview help, LightningCLI subcommands, unknown commands."""

import subprocess
import sys

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
