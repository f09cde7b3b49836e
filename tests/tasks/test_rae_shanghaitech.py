"""The shipped ShanghaiTech stage-2 configs (Table 3's dataset) train as they are on the synthetic ShanghaiTech:
dialogues built with `tvau build-dataset --source shanghaitech` (split by video, the default `tvau` protocol)
into the folders the configs name, then phase A, `merge-lora` and phase B for two steps each, with only the
backbone, stage-1 checkpoint, frame size and CPU trainer pointed at tiny stand-ins."""

from __future__ import annotations

import json
from pathlib import Path

import torch

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
CPU = ["--trainer", str(CONFIGS / "trainer" / "cpu.yaml"), "--trainer.max_steps", "2",
       "--trainer.limit_val_batches", "1", "--trainer.num_sanity_val_steps", "0"]


def test_shanghaitech_phase_a_and_b_configs_train(synthetic_shanghaitech, fitted_ahd, tmp_path, monkeypatch):
    from tvau_lightning.cli import lightning_cli, main

    monkeypatch.chdir(tmp_path)  # the configs' data/ and runs/ folders live here
    videos = {}
    for split in ("train", "val", "test"):
        out = Path("data/dialogues/shanghaitech") / split
        assert main(["build-dataset", "--source", "shanghaitech", "--root", str(synthetic_shanghaitech.root),
                     "--protocol", "tvau", "--split", split, "--val-fraction", "0.4",  # 2 of the 5 synthetic
                     "--annotator", "ground-truth", "--out", str(out), "--no-progress",
                     "--dense-records"]) == 0  # 2 s synthetic videos: every frame, not the paper's 1 fps
        records = [json.loads(line) for line in (out / "phase_a.jsonl").read_text().splitlines()]
        assert records and all(r["dataset"] == "shanghaitech" for r in records)
        videos[split] = {r["video_id"] for r in records}
    # the default split is by video: no video on two sides
    assert not (videos["train"] & videos["val"]) and not (videos["train"] & videos["test"])

    common = ["--model.backbone", str(CONFIGS / "backbones" / "tiny_qwen2_5_vl.yaml"),
              "--model.ahd_checkpoint", str(fitted_ahd.checkpoint), "--data.frame_size", "[64, 96]",
              # the fixture AHD's sampling (every frame at 64×96), not the shipped 1 fps at 476×868
              "--data.sample_fps", "null", "--data.frame_stride", "1", "--data.max_frames", "null",
              "--data.num_workers", "0", "--model.val_every_n_steps", "1",
              "--trainer.max_epochs", "2", *CPU]  # a few clips and accumulation 8: one optimizer step per epoch
    lightning_cli(["fit", "--config", str(CONFIGS / "rae_phase_a_shanghaitech.yaml"), *common,
                   "--model.backbone.path", str(fitted_ahd.backbone)])
    best_a = Path("runs/rae_phase_a_shanghaitech/checkpoints/best.ckpt")
    state_a = torch.load(best_a, map_location="cpu", weights_only=False)
    assert state_a["global_step"] == 2
    assert {k.split("layers.")[1].split(".")[0] for k in state_a["state_dict"] if "lora_" in k} == {"0", "1"}
    assert main(["merge-lora", "--ckpt", str(best_a), "--out", "runs/rae_phase_a_shanghaitech/merged"]) == 0
    # phase B as shipped reads runs/rae_phase_a_shanghaitech/{merged,checkpoints/best.ckpt}
    lightning_cli(["fit", "--config", str(CONFIGS / "rae_phase_b_shanghaitech.yaml"),
                   "--model.backbone.layers", "[1, 2, 4]", "--model.backbone.dtype", "float32",
                   "--model.backbone.max_frames", "64",  # the dense synthetic records are whole videos (~50 frames)
                   "--model.lora.last_n_layers", "1", *common[2:]])
    state_b = torch.load("runs/rae_phase_b_shanghaitech/checkpoints/last.ckpt", map_location="cpu",
                         weights_only=False)
    assert state_b["global_step"] == 2
    assert {k.split("layers.")[1].split(".")[0] for k in state_b["state_dict"] if "lora_" in k} == {"1"}
