"""Frame AP and mAP@tIoU give the same value on 2 gloo processes (DistributedSampler-style split, padded) as on one."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tvau_lightning.metrics.frame_ap import FrameAveragePrecision
from tvau_lightning.metrics.temporal_map import TemporalMAP

WORLD, K, CLIP = 2, 3, 8


def _samples() -> list[dict]:
    """Clips of 3 videos (two abnormal with category runs, one normal), 8 frames each, the last ones padded."""
    rng = np.random.default_rng(7)
    samples = []
    for v, (length, runs) in enumerate([(30, [(1, 5, 14)]), (27, [(2, 3, 9), (1, 15, 24)]), (20, [])]):
        cats = np.zeros((length, K), dtype=bool)
        scores = rng.random((length, K)) * 0.3
        for c, a, b in runs:
            cats[a:b, c] = True
            scores[a + 1:b, c] += 0.6
        cats[~cats[:, 1:].any(axis=1), 0] = True
        for start in range(0, length, CLIP):
            index = np.arange(start, start + CLIP)
            index[index >= length] = -1
            safe = np.maximum(index, 0)
            samples.append({"video": f"v{v}", "index": index, "scores": scores[safe], "cats": cats[safe]})
    return samples


def _run(samples: list[dict]) -> dict[str, float]:
    ap, tmap = FrameAveragePrecision(), TemporalMAP(num_classes=K)
    for s in samples:
        index, scores, cats = (torch.from_numpy(s[k])[None] for k in ("index", "scores", "cats"))
        ap.update(1 - scores[..., 0], cats[..., 1:].any(-1).long(), [s["video"]], index)
        tmap.update(scores, cats, [s["video"]], index)
    return {"ap": float(ap.compute()), **{k: float(v) for k, v in tmap.compute().items()}}


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        samples = _samples()
        indices = list(range(len(samples)))
        indices += indices[: (-len(indices)) % WORLD]
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(_run([samples[i] for i in indices[rank::WORLD]])))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.ddp
def test_two_gloo_processes_equal_one_process(tmp_path):
    samples = _samples()
    assert len(samples) % WORLD == 1  # the split needs padding: one clip is seen twice
    single = _run(samples)
    assert 0 < single["ap"] < 1 and 0 < single["map_avg"] <= 1
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    for rank in range(WORLD):
        ddp = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert ddp == pytest.approx(single, abs=1e-6)
