"""`tvau export`: exported folders round-trip (same heatmaps, same answers) and their adapter loads with peft alone."""

from __future__ import annotations

import csv
import json

import torch

from tvau_lightning.cli import main as tvau


def _clip(fitted_ahd, n=8, size=(64, 96)):
    from tvau_lightning.data.transforms import resize_frames
    from tvau_lightning.data.video import open_video

    video = next(v for v in fitted_ahd.data.videos.values() if v.abnormal)
    reader = open_video(video.path)
    return video, resize_frames(reader.read(list(range(n))), size)[None]


def test_stage1_export_round_trips(fitted_ahd, tmp_path, capsys):
    from tvau_lightning.modules.anomaly_model import AnomalyHeatmapModel, load_ahd

    out = tmp_path / "ahd_export"
    assert tvau(["export", "--ckpt", str(fitted_ahd.checkpoint), "--out", str(out)]) == 0
    assert "exported" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert config["task"] == "AHDTask" and config["tvau_backbone"]["family"] == "qwen2_5_vl"
    assert config["sampling"]["frame_size"] == [64, 96] and config["sampling"]["clip_len"] == 8
    assert config["sampling"]["sample_fps"] is None and config["sampling"]["frame_stride"] == 1  # every frame
    assert config["layers"] and config["prototype_mode"] == "input_embeddings"
    assert (out / "model.safetensors").is_file()

    video, clip = _clip(fitted_ahd)
    from_ckpt = load_ahd(fitted_ahd.checkpoint)
    exported = AnomalyHeatmapModel.from_pretrained(out)
    with torch.no_grad():
        a, b = from_ckpt(clip), exported(clip)
    assert torch.equal(a.heatmap, b.heatmap) and torch.equal(a.scores, b.scores)
    assert exported.layers == from_ckpt.layers

    # `tvau analyze --ckpt DIR` reads the folder as it reads the checkpoint
    for name, ckpt in (("from_ckpt", fitted_ahd.checkpoint), ("from_export", out)):
        assert tvau(["analyze", str(video.path), "--ckpt", str(ckpt), "--out", str(tmp_path / name), "--quiet"]) == 0
    rows = {}
    for name in ("from_ckpt", "from_export"):
        with (tmp_path / name / "scores.csv").open() as handle:
            rows[name] = list(csv.DictReader(handle))
    assert rows["from_ckpt"] == rows["from_export"]


def test_stage2_export_round_trips_and_its_adapter_loads_with_peft(fitted_ahd, fitted_rae, tmp_path):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForImageTextToText

    from tvau_lightning.inference.models import load_rae_task

    out = tmp_path / "rae_export"
    assert tvau(["export", "--ckpt", str(fitted_rae.checkpoint), "--out", str(out)]) == 0
    assert (out / "ahd" / "config.json").is_file() and (out / "adapter" / "adapter_config.json").is_file()
    assert json.loads((out / "config.json").read_text())["task"] == "RAETask"

    # the adapter alone, with peft, on the tiny backbone: its LoRA weights are the checkpoint's
    base = AutoModelForImageTextToText.from_pretrained(str(fitted_ahd.backbone))
    peft_model = PeftModel.from_pretrained(base, str(out / "adapter"))
    state = torch.load(fitted_rae.checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    ckpt_lora = sorted(float(v.double().sum()) for k, v in state.items() if "lora_" in k)
    peft_lora = sorted(float(v.double().sum()) for k, v in peft_model.state_dict().items() if "lora_" in k)
    saved = sorted(float(v.double().sum()) for v in load_file(str(out / "adapter" / "adapter_model.safetensors")).values())
    assert ckpt_lora and ckpt_lora == peft_lora == saved  # the same tensors, wherever they were read from

    # the exported stage-2 model answers exactly as the checkpoint does
    _, clip = _clip(fitted_ahd, n=fitted_rae.num_frames, size=fitted_rae.frame_size)
    from tvau_lightning.data.dialogue_schema import Turn

    history = [[Turn("user", "Is there any anomaly in the video?")]]
    fps = torch.tensor([8.0])
    answers = [load_rae_task(path, device="cpu", dtype="float32").answer(clip, fps, history)
               for path in (fitted_rae.checkpoint, out)]
    assert answers[0] == answers[1]
