"""Every metric gives the same value on 2 gloo processes (DistributedSampler-style split, padded) as on one."""

from __future__ import annotations

import json
import math
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tvau_lightning.metrics import BLEU4, MacroAUROC, MicroAUROC, RegionTrackDetection, YesNoAccuracy

WORLD = 2
ANSWERS = ["Yes, a man jumps.", "No.", "unclear", "There is no anomaly", "There is an anomaly", "yes"]
TARGETS = ["yes", "no", "no", "no", "yes", "no"]


def _samples() -> list[dict]:
    """Deterministic clips of 4 videos: scores, labels, heatmaps, masks, GT boxes and dialogue answers."""
    rng = np.random.default_rng(5)
    samples = []
    size, grid, clip_len = (32, 48), (8, 12), 4
    for v in range(4):
        length = 9 + 3 * v
        heat = rng.random((length, *grid)).astype(np.float32) * 0.4
        masks = np.zeros((length, *size), dtype=bool)
        labels = np.zeros(length, dtype=np.int64)
        boxes = []
        if v != 3:  # video 3 is normal
            for f in range(2, length - 1):
                r, c = 1 + f % 4, 1 + f // 2
                heat[f, r:r + 2, c:c + 2] = rng.uniform(0.55, 0.95)
                masks[f, 4 * r:4 * r + 8, 4 * c:4 * c + 8] = True
                labels[f] = 1
                boxes.append([f, 0, 4 * c, 4 * r, 4 * c + 7, 4 * r + 7])
        heat[rng.integers(length), 6, 10] = 0.7  # a false alarm
        boxes = np.array(boxes, dtype=np.int64).reshape(-1, 6)
        for start in range(0, length, clip_len):
            index = np.arange(start, start + clip_len)
            index = np.where(index < length, index, -1)
            safe = np.maximum(index, 0)
            k = len(samples)
            samples.append({
                "video": f"abnormal_scene_{v}", "index": index, "size": size,
                "scores": heat[safe].max(axis=(1, 2)), "labels": labels[safe], "heat": heat[safe], "masks": masks[safe],
                "boxes": boxes[np.isin(boxes[:, 0], index[index >= 0])],
                "hyp": f"a person walks {['left', 'right'][k % 2]} fast", "refs": ["a person walks left", "someone runs"],
                "answer": ANSWERS[k % 6], "target": TARGETS[k % 6], "sid": f"s{k}",
            })
    return samples


def _metrics() -> dict:
    return {"micro": MicroAUROC(), "macro": MacroAUROC(), "macro_unpadded": MacroAUROC(pad=False),
            "regions_boxes": RegionTrackDetection(), "regions_masks": RegionTrackDetection(),
            "bleu": BLEU4(field="target"), "bleu_corpus": BLEU4(field="target", reference_mode="multi", level="corpus"),
            "yes_no": YesNoAccuracy(), "yes_no_rank0_only": YesNoAccuracy()}


def _run(samples: list[dict], rank: int) -> dict[str, float]:
    metrics = _metrics()
    for s in samples:
        one = [s["video"]]
        index, size = torch.from_numpy(s["index"])[None], torch.tensor([s["size"]])
        for name in ("micro", "macro", "macro_unpadded"):
            metrics[name].update(torch.from_numpy(s["scores"])[None], torch.from_numpy(s["labels"])[None], one, index)
        heat = torch.from_numpy(s["heat"])[None]
        metrics["regions_boxes"].update(heat, one, index, size, gt_boxes=[torch.from_numpy(s["boxes"])])
        metrics["regions_masks"].update(heat, one, index, size, gt_masks=torch.from_numpy(s["masks"])[None])
        for name in ("bleu", "bleu_corpus"):
            metrics[name].update([s["hyp"]], [s["refs"]], sample_ids=[s["sid"]])
        metrics["yes_no"].update([s["answer"]], [s["target"]], sample_ids=[s["sid"]])
        if rank == 0:
            metrics["yes_no_rank0_only"].update([s["answer"]], [s["target"]], sample_ids=[s["sid"]])
    out = {}
    for name, metric in metrics.items():
        value = metric.compute()
        if isinstance(value, dict):
            out.update({f"{name}/{k}": float(v) for k, v in value.items()})
        else:
            out[name] = float(value)
    return out


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        samples = _samples()
        indices = list(range(len(samples)))
        indices += indices[: (-len(indices)) % WORLD]  # DistributedSampler pads by repeating the first samples
        mine = [samples[i] for i in indices[rank::WORLD]]
        results = _run(mine, rank)
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(results))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.ddp
@pytest.mark.filterwarnings("ignore:unpadded macro AUROC skipped")
def test_two_gloo_processes_equal_one_process(tmp_path):
    samples = _samples()
    assert len(samples) % WORLD == 1  # the split needs padding: one sample is seen twice
    single = _run(samples, rank=0)
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    for rank in range(WORLD):
        ddp = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert ddp.keys() == single.keys()
        for name, value in single.items():
            assert not math.isnan(value), name
            if name.startswith("yes_no_rank0_only"):
                continue  # rank 0 saw only its half; checked below
            assert ddp[name] == pytest.approx(value, abs=1e-6), name
        # the metric rank 1 never updated still syncs (typed empty states) and equals rank 0's half alone
        half = _run([samples[i] for i in range(0, len(samples), WORLD)], rank=0)
        assert ddp["yes_no_rank0_only/accuracy"] == pytest.approx(half["yes_no/accuracy"], abs=1e-6)
    assert 0 < single["regions_boxes/rbdc"] < 1 and 0 < single["micro"] < 1
