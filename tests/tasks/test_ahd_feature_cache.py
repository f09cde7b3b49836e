"""Stage 1 with the feature cache: `tvau cache-features`, cached == live steps, invalidation, missing clips,
`tvau fit` reading the cache (tiny Qwen2.5-VL, small synthetic UBnormal, CPU); and the fast vision path
giving the stock path's AHD heatmaps."""

from __future__ import annotations

import contextlib
import io
import json
import shutil

import pytest
import torch

from tvau_lightning.backbones.fingerprint import weights_fingerprint as backbone_fingerprint
from tvau_lightning.backbones.tiny import build_tiny_backbone
from tvau_lightning.backbones.types import BackboneConfig
from tvau_lightning.cli import lightning_cli, main
from tvau_lightning.data.feature_cache import (
    FeatureCache,
    FeatureCacheError,
    MissingFeaturesError,
    feature_key,
)
from tvau_lightning.data.types import collate_clips
from tvau_lightning.data.ubnormal import UBnormalDataModule
from tvau_lightning.tasks.ahd import AHDTask

FRAME_SIZE = [64, 96]


def task_config(qwen_dir, **init_args) -> dict:
    backbone = {"path": str(qwen_dir), "dtype": "float32", **init_args.pop("backbone", {})}
    return {"class_path": "tvau_lightning.tasks.ahd.AHDTask",
            "init_args": {"backbone": backbone, "logit_scale": 10.0, "lr": 3e-3, "log_heatmaps": 0, **init_args}}


def data_config(dataset, **init_args) -> dict:
    return {"class_path": "tvau_lightning.data.ubnormal.UBnormalDataModule",
            "init_args": {"root": str(dataset.root), "split_dir": str(dataset.split_dir), "clip_len": 8,
                          "frame_size": FRAME_SIZE, **init_args}}


def make_task(qwen_dir, **kwargs) -> AHDTask:
    backbone = BackboneConfig(**{"path": str(qwen_dir), "dtype": "float32", **kwargs.pop("backbone", {})})
    torch.manual_seed(0)
    return AHDTask(backbone, logit_scale=10.0, log_heatmaps=0, **kwargs)


def make_data(dataset, **kwargs) -> UBnormalDataModule:
    return UBnormalDataModule(root=str(dataset.root), split_dir=str(dataset.split_dir), clip_len=8,
                              frame_size=kwargs.pop("frame_size", tuple(FRAME_SIZE)), **({"num_workers": 0} | kwargs))


@pytest.fixture(scope="module")
def filled(small_ubnormal, tiny_qwen_dir, tmp_path_factory):
    """A cache of every split filled by `tvau cache-features` (in-process), and its JSON report (read-only:
    tests that change files copy it first)."""
    import yaml

    root = tmp_path_factory.mktemp("cache_cfg")
    cfg = root / "ahd.yaml"
    cfg.write_text(yaml.safe_dump({"model": task_config(tiny_qwen_dir), "data": data_config(small_ubnormal),
                                   "trainer": {"accelerator": "cpu", "logger": False}}, sort_keys=False))
    out = root / "cache"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["cache-features", "--config", str(cfg), "--out", str(out), "--no-progress"])
    assert code == 0
    return {"config": cfg, "out": out, "report": json.loads(stdout.getvalue())}


def _run_cache_features(args, capsys) -> tuple[int, dict | None, str]:
    code = main(["cache-features", *args, "--no-progress"])
    captured = capsys.readouterr()
    report = json.loads(captured.out[captured.out.index("{"):]) if code == 0 else None
    return code, report, captured.err


def test_cache_features_command_fills_every_split_once_and_resumes(filled, small_ubnormal, capsys, tmp_path):
    report = filled["report"]
    dm = make_data(small_ubnormal)
    for split in ("train", "val", "test"):
        n = len(dm.dataset(split))
        assert report["splits"][split]["clips"] == n and report["splits"][split]["written"] == n
    total = sum(len(dm.dataset(s)) for s in ("train", "val", "test"))
    assert FeatureCache.open(filled["out"]).num_clips() == total
    assert report["storage_dtype"] == "float16" and report["layers"] == [1, 2, 4]

    # one clip lost (an interrupted fill): a second run writes exactly that one
    resumed = tmp_path / "resumed"
    shutil.copytree(filled["out"], resumed)
    victim = next((resumed / "features").glob("*/*.safetensors"))
    victim.unlink()
    code, again, err = _run_cache_features(["--config", str(filled["config"]), "--out", str(resumed)], capsys)
    assert code == 0, err
    assert sum(s["written"] for s in again["splits"].values()) == 1 and victim.is_file()


def test_cached_step_equals_the_live_step(filled, small_ubnormal, tiny_qwen_dir):
    live_task = make_task(tiny_qwen_dir)
    cached_task = make_task(tiny_qwen_dir, feature_cache=str(filled["out"]))
    assert torch.equal(live_task.ahd.projections[0][0].weight, cached_task.ahd.projections[0][0].weight)
    dm = make_data(small_ubnormal)
    cached_task.open_feature_cache(dm)
    train = dm.dataset("train")
    batch = collate_clips([train[3], train[len(train) - 1]])
    with torch.no_grad():
        live_features, _ = live_task.vision_features(batch.frames)
    cached_batch = collate_clips([train[3], train[len(train) - 1]])
    features = cached_task.cached_features(cached_batch)
    # the stored grids are the live ones rounded to fp16: the right clips, in the right order
    for live, cached in zip(live_features, features):
        assert cached.dtype == torch.float16 and torch.equal(cached, live.half())
    live_out, cached_out = live_task.forward_batch(batch), cached_task.forward_batch(cached_batch)
    assert float((live_out.heatmap - cached_out.heatmap).detach().abs().max()) < 2e-3
    live_loss, cached_loss = live_task.loss(live_out, batch), cached_task.loss(cached_out, cached_batch)
    assert float(cached_loss) == pytest.approx(float(live_loss), rel=1e-3)
    live_loss.backward()
    cached_loss.backward()
    for a, b in zip(live_task.ahd.parameters(), cached_task.ahd.parameters()):
        if a.grad is not None:
            assert torch.allclose(a.grad, b.grad, rtol=1e-2, atol=1e-4)


def test_a_changed_backbone_layers_or_frame_size_invalidates_the_cache(filled, small_ubnormal, tiny_qwen_dir, tmp_path):
    cache = str(filled["out"])
    make_task(tiny_qwen_dir, feature_cache=cache).open_feature_cache(make_data(small_ubnormal))  # matches

    with pytest.raises(FeatureCacheError, match=r"stale.*layers: cache \[1, 2, 4\], now \[1, 3\]"):
        make_task(tiny_qwen_dir, feature_cache=cache, backbone={"layers": [1, 3]}).open_feature_cache()
    with pytest.raises(FeatureCacheError, match=r"data\.frame_size: cache \[64, 96\], now \[72, 104\]"):
        make_task(tiny_qwen_dir, feature_cache=cache).open_feature_cache(make_data(small_ubnormal, frame_size=(72, 104)))
    with pytest.raises(FeatureCacheError, match=r"data\.clip_len"):
        make_task(tiny_qwen_dir, feature_cache=cache).open_feature_cache(
            UBnormalDataModule(root=str(small_ubnormal.root), split_dir=str(small_ubnormal.split_dir), clip_len=6,
                               frame_size=tuple(FRAME_SIZE)))
    other_weights = tmp_path / "other_qwen"
    build_tiny_backbone("qwen2_5_vl", other_weights, seed=1)  # same architecture and config, other weights
    with pytest.raises(FeatureCacheError, match=r"backbone\.vision_weights"):
        make_task(other_weights, feature_cache=cache).open_feature_cache()
    # pixel normalisation lives in the processor file, not in the weights
    renormed = tmp_path / "renormed_qwen"
    shutil.copytree(tiny_qwen_dir, renormed)
    pre = json.loads((renormed / "preprocessor_config.json").read_text())
    (renormed / "preprocessor_config.json").write_text(json.dumps({**pre, "image_mean": [0.5, 0.5, 0.5]}))
    with pytest.raises(FeatureCacheError, match=r"backbone\.files\.preprocessor_config\.json"):
        make_task(renormed, feature_cache=cache).open_feature_cache()
    # the vision path is not part of the identity (fast == stock up to rounding)
    make_task(tiny_qwen_dir, feature_cache=cache, backbone={"vision_path": "fast"}).open_feature_cache()


def test_weights_fingerprint_is_stable_across_loads_and_folders(tiny_qwen_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_qwen_dir, copy)
    a, b = make_task(tiny_qwen_dir).backbone, make_task(copy).backbone
    assert backbone_fingerprint(a) == backbone_fingerprint(b)


def test_missing_cache_and_missing_clips(filled, small_ubnormal, tiny_qwen_dir, tmp_path):
    with pytest.raises(FeatureCacheError, match=r"no feature cache at .*tvau cache-features"):
        make_task(tiny_qwen_dir, feature_cache=str(tmp_path / "none")).open_feature_cache()

    partial = tmp_path / "partial"
    shutil.copytree(filled["out"], partial)
    dm = make_data(small_ubnormal)
    val = dm.dataset("val")
    video_id, indices = val.clips[0]
    FeatureCache.open(partial).path_for(video_id, list(indices)).unlink()
    strict = make_task(tiny_qwen_dir, feature_cache=str(partial))
    with pytest.raises(MissingFeaturesError, match=rf"'{video_id}' frames {indices[0]}\.\.{indices[-1]}"):
        strict.forward_batch(collate_clips([val[0]]))
    lenient = make_task(tiny_qwen_dir, feature_cache=str(partial), feature_cache_missing="compute")
    live = make_task(tiny_qwen_dir)
    batch = collate_clips([val[0]])
    assert torch.equal(lenient.forward_batch(batch).heatmap, live(batch.frames).heatmap)  # the tower ran
    assert feature_key(1) not in batch.extras
    with pytest.raises(ValueError, match="feature_cache_missing"):
        make_task(tiny_qwen_dir, feature_cache=str(partial), feature_cache_missing="skip")


def test_cache_features_errors(filled, capsys, tmp_path):
    code, _, err = _run_cache_features(["--config", str(filled["config"])], capsys)
    assert code == 1 and "pass --out DIR" in err
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"x")
    code, _, err = _run_cache_features(["--config", str(filled["config"]), "--out", str(foreign)], capsys)
    assert code == 1 and "not a feature cache" in err
    code, _, err = _run_cache_features(["--out", str(foreign)], capsys)
    assert code == 1 and "--config" in err


def test_fit_reads_the_cache_and_never_runs_the_tower(filled, small_ubnormal, tiny_qwen_dir, tmp_path):
    """`tvau fit` (the same LightningCLI parsing) with model.feature_cache: the tower's patch embedding is never
    called, and the epoch's metrics match a live fit within fp16 rounding."""
    common = ["--config", str(filled["config"]), "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "6",
              "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
              "--trainer.enable_checkpointing", "false", "--trainer.default_root_dir", str(tmp_path)]
    results = {}
    for name, extra in (("live", []), ("cached", ["--model.feature_cache", str(filled["out"])])):
        cli = lightning_cli([*common, *extra], run=False)
        calls: list[int] = []
        cli.model.backbone.visual.patch_embed.register_forward_hook(lambda *_, calls=calls: calls.append(1))
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        results[name] = ({k: float(v) for k, v in cli.trainer.callback_metrics.items()}, len(calls))
    (live, live_calls), (cached, cached_calls) = results["live"], results["cached"]
    assert live_calls > 0 and cached_calls == 0
    assert cached["train/loss"] == pytest.approx(live["train/loss"], rel=1e-2)
    for m in ("val/micro_auc", "val/macro_auc", "val/loss"):
        assert cached[m] == pytest.approx(live[m], abs=1e-2), m


def test_fast_vision_path_gives_the_stock_heatmaps(tiny_qwen_dir, small_ubnormal):
    stock = make_task(tiny_qwen_dir)
    fast = make_task(tiny_qwen_dir, backbone={"vision_path": "fast"})
    assert fast.backbone.config.vision_path == "fast"
    assert list(fast.state_dict()) == list(stock.state_dict())  # checkpoints unchanged
    val = make_data(small_ubnormal).dataset("val")
    batch = collate_clips([val[0], val[1]])
    with torch.no_grad():
        a, b = stock(batch.frames), fast(batch.frames)
    assert float(a.heatmap.std()) > 1e-3  # heatmaps that vary over the grid
    assert float((a.heatmap - b.heatmap).abs().max()) < 1e-4
    assert float((a.logits - b.logits).abs().max()) < 1e-4


@pytest.mark.parametrize("mode", ["input_embeddings", "hidden_states"])
def test_stage_one_never_keeps_the_language_model(tiny_qwen_dir, mode):
    """Either way of computing the prototypes ends with a vision-only backbone: no decoder layer, no LM head."""
    task = make_task(tiny_qwen_dir, text_embedding_mode=mode)
    names = [n for n, _ in task.backbone.model.named_parameters()]
    assert task.backbone.vision_only
    assert not any(".layers." in n or "lm_head" in n for n in names)
    assert any(n.startswith("visual.") for n in names) and any("embed_tokens" in n for n in names)
    assert bool(task.ahd.has_prototypes) and float(task.ahd.prototypes.abs().sum()) > 0
