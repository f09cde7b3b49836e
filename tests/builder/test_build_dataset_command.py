"""``tvau build-dataset``: options, YAML configs (every shipped one is parsed), errors a user can act on."""

import json
from pathlib import Path

import pytest

from tvau_lightning.builder.openai_http import OpenAIChatAnnotator
from tvau_lightning.builder.pipeline import settings_from_dict
from tvau_lightning.commands.build_dataset import (
    build_dataset_main,
    build_parser,
    make_annotator,
    merge_config,
)

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs" / "builder").glob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_parse(config):
    parser = build_parser()
    opts, settings = merge_config(parser.parse_args(["--config", str(config)]), parser)
    settings_from_dict(settings)  # every key is a BuilderSettings field with a valid value
    assert opts["annotator"] in ("openai", "backbone", "ground-truth")
    if opts["annotator"] != "backbone":  # building a backbone annotator needs the model folder
        annotator = make_annotator(opts, parser)
        if opts["annotator"] == "openai":
            assert isinstance(annotator, OpenAIChatAnnotator) and annotator.model == opts["model"]


def test_command_line_overrides_the_config(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("annotator: openai\nbase_url: http://127.0.0.1:9/v1\nmodel: m\nconcurrency: 4\n"
                      "settings:\n  sample_fps: 1.0\n  verify: anomaly\n")
    parser = build_parser()
    opts, settings = merge_config(parser.parse_args(["--config", str(config), "--sample-fps", "3", "--attempts", "5"]),
                                   parser)
    assert settings == {"sample_fps": 3.0, "verify": "anomaly", "retry": {"attempts": 5}}
    annotator = make_annotator(opts, parser)
    assert annotator.max_concurrency == 4 and annotator.base_url == "http://127.0.0.1:9/v1"


def test_command_line(tmp_path, synthetic_shanghaitech, capsys):
    from tvau_lightning.cli import main

    data = synthetic_shanghaitech
    config = tmp_path / "builder.yaml"
    config.write_text("source: shanghaitech\nprotocol: tvau\nsplit: val\nannotator: ground-truth\n"
                      "no_progress: true\ndense_records: true\nsettings:\n  sample_fps: 4.0\n  geometry:\n    slow_below: 0.04\n")
    code = main(["build-dataset", "--config", str(config), "--root", str(data.root), "--out", str(tmp_path / "st"),
                 "--max-videos", "1", "--verify", "none"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["videos"] == 1 and printed["records"]["phase_b"] == 1
    settings = json.loads((tmp_path / "st" / "work" / "settings.json").read_text())["settings"]
    assert main(["build-dataset", "--source", "shanghaitech", "--root", str(data.root), "--protocol", "standard",
                 "--split", "test", "--annotator", "ground-truth", "--out", str(tmp_path / "std"), "--max-videos", "2",
                 "--no-progress", "--dense-records"]) == 0  # 2 s videos: every frame
    standard = json.loads((tmp_path / "std" / "summary.json").read_text())
    assert standard["videos"] == 2 and standard["records"]["phase_b"] >= 1 and not standard["failed_videos"]
    capsys.readouterr()
    assert settings["sample_fps"] == 4.0 and settings["verify"] == "none" and settings["geometry"]["slow_below"] == 0.04
    # errors a user can act on
    with pytest.raises(SystemExit):
        build_dataset_main(["--source", "ubnormal", "--root", str(data.root), "--annotator", "ground-truth",
                            "--out", str(tmp_path / "x")])
    assert "--split-dir" in capsys.readouterr().err
    config.write_text("sauce: shanghaitech\n")
    with pytest.raises(SystemExit):
        build_dataset_main(["--config", str(config), "--out", str(tmp_path / "x")])
    assert "unknown option(s) ['sauce']" in capsys.readouterr().err
    assert build_dataset_main(["--source", "folder", "--root", str(tmp_path / "none"), "--annotator", "ground-truth",
                               "--out", str(tmp_path / "x")]) == 2
    assert "videos/<name>.mp4" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["build-dataset", "--help"])
    assert exit_info.value.code == 0 and "--annotator" in capsys.readouterr().out
