"""The ShanghaiTech stage-2 phase A config with the clip-level re-partition overlay trains on the synthetic
ShanghaiTech: one pool of dialogues built from every testing video (`--protocol standard --split test`) into the
folder the overlay names, split record by record into train and val, two optimizer steps, and the checkpoint
records the split (its DataModule hyper-parameters)."""

from __future__ import annotations

from pathlib import Path

import torch

from tvau_lightning.data.dialogue import split_records
from tvau_lightning.data.dialogue_schema import load_dialogues

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
OVERLAY = CONFIGS / "data" / "dialogue_shanghaitech_clip_repartition_phase_a.yaml"


def test_phase_a_trains_on_the_clip_level_repartition(synthetic_shanghaitech, fitted_ahd, tmp_path, monkeypatch):
    from tvau_lightning.cli import lightning_cli, main

    monkeypatch.chdir(tmp_path)  # the overlay's data/ and the config's runs/ folders live here
    pool = Path("data/dialogues/shanghaitech/all")
    assert main(["build-dataset", "--source", "shanghaitech", "--root", str(synthetic_shanghaitech.root),
                 "--protocol", "standard", "--split", "test", "--annotator", "ground-truth", "--out", str(pool),
                 "--no-progress", "--dense-records",  # 2 s synthetic videos: every frame, not the paper's 1 fps ...
                 "--max-frames", "16"]) == 0          # ... cut into clips of 16 frames, several per video
    records = load_dialogues(pool / "phase_a.jsonl")
    train, val = split_records(records, 0.2, seed=0)
    assert len(records) >= 10 and len(val) == -(-len(records) // 5)  # ceil(0.2 × N)
    # clip-level: some video has clips on both sides (the leak the overlay's comment warns about)
    assert {records[i].video_id for i in train} & {records[i].video_id for i in val}

    cli = lightning_cli([
        "fit", "--config", str(CONFIGS / "rae_phase_a_shanghaitech.yaml"), "--data", str(OVERLAY),
        "--model.backbone", str(CONFIGS / "backbones" / "tiny_qwen2_5_vl.yaml"),
        "--model.backbone.path", str(fitted_ahd.backbone), "--model.ahd_checkpoint", str(fitted_ahd.checkpoint),
        # the fixture AHD's sampling (every frame at 64×96), not the shipped 1 fps at 476×868
        "--data.frame_size", "[64, 96]", "--data.sample_fps", "null", "--data.frame_stride", "1",
        "--data.max_frames", "16", "--data.num_workers", "0", "--model.val_every_n_steps", "1",
        "--trainer", str(CONFIGS / "trainer" / "cpu.yaml"), "--trainer.max_steps", "2",
        "--trainer.limit_val_batches", "1", "--trainer.num_sanity_val_steps", "0",
    ], run=True)
    dm = cli.datamodule
    assert [r.video_id for r in dm.dataset("train").records] == [records[i].video_id for i in train]
    assert dm.dataset("val").records == [records[i] for i in val]
    state = torch.load("runs/rae_phase_a_shanghaitech/checkpoints/last.ckpt", map_location="cpu", weights_only=False)
    assert state["global_step"] == 2
    hparams = state["datamodule_hyper_parameters"]
    assert (hparams["record_split"], hparams["val_fraction"], hparams["split_seed"]) == ("records", 0.2, 0)
    assert hparams["val_file"] is None and hparams["train_file"] == str(pool / "phase_a.jsonl")
