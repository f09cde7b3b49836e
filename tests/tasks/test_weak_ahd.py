"""The weakly supervised category AHD: decoder, prototypes, MIL losses, and learning from video labels alone."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from tvau_lightning.modules.ahd import AHDOutput
from tvau_lightning.modules.category_ahd import (
    CategoryHeatmapDecoder,
    _topk_mean,
    augment_prototypes,
    binary_mil_loss,
    category_mil_loss,
    category_sentences,
    category_words,
    temporal_regularisers,
)
from tvau_lightning.modules.prompts import PromptBank

UCF_NAMES = ["Normal", "Abuse", "Arrest", "Arson", "Assault", "Burglary", "Explosion", "Fighting", "RoadAccidents",
             "Robbery", "Shooting", "Shoplifting", "Stealing", "Vandalism"]


def _output(logits: torch.Tensor) -> AHDOutput:
    """An AHDOutput from ``(B, T', K, H', W')`` logits, as the category decoder forms it."""
    heat = 1 - logits.softmax(2)[:, :, 0]
    scores = torch.logsumexp(logits[:, :, 1:], 2) - logits[:, :, 0]
    return AHDOutput(logits, logits, heat, None, torch.ones(1), scores)


def test_decoder_gives_k_classes_and_a_consistent_binary_heatmap():
    torch.manual_seed(0)
    decoder = CategoryHeatmapDecoder([8, 8], 6, num_classes=4, logit_scale=5.0)
    decoder.set_prototypes(torch.randn(4, 6))
    out = decoder([torch.randn(2, 3, 4, 5, 8), torch.randn(2, 3, 4, 5, 8)])
    assert out.logits.shape == (2, 3, 4, 4, 5) and out.heatmap.shape == (2, 3, 4, 5)
    torch.testing.assert_close(out.heatmap, 1 - out.logits.softmax(2)[:, :, 0])
    torch.testing.assert_close(torch.sigmoid(out.scores), out.heatmap)  # scores are the heatmap's logit
    with pytest.raises(ValueError, match="prototypes must have shape"):
        decoder.set_prototypes(torch.randn(2, 6))
    with pytest.raises(ValueError, match="num_classes"):
        CategoryHeatmapDecoder([8], 6, num_classes=1)


def test_category_prompts():
    assert category_words("RoadAccidents") == ["road accidents"]
    assert category_words("Car accident", {"Car accident": ["car crash"]}) == ["car accident", "car crash"]
    bank = PromptBank(events=["anomaly"], phrases=["{}"], abnormal_sentences=["a clip of {}"],
                      normal_sentences=["a clip without {}"])
    assert category_sentences(bank, ["Normal", "Abuse", "RoadAccidents"]) == [
        ["a clip without anomaly"], ["a clip of abuse"], ["a clip of road accidents"]]


def test_label_augmentation_keeps_the_most_similar_descriptions():
    base = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    described = [None, torch.tensor([[0.0, 3.0], [1.0, 0.0], [0.2, 1.0]])]
    out = augment_prototypes(base, described, top_k=2)
    torch.testing.assert_close(out[0], base[0])
    torch.testing.assert_close(out[1], torch.stack([base[1], described[1][0], described[1][2]]).mean(0))


def test_topk_mean_counts_only_valid_cells():
    values = torch.tensor([[5.0, 1.0, 3.0, 9.0], [2.0, 4.0, 6.0, 8.0]])
    valid = torch.tensor([[True, True, True, False], [True, True, True, True]])
    # row 0: 3 valid, k = ⌈0.5·3⌉ = 2 → (5 + 3) / 2; row 1: k = 2 → (8 + 6) / 2
    torch.testing.assert_close(_topk_mean(values, valid, 0.5), torch.tensor([4.0, 7.0]))


def test_mil_losses_on_a_hand_worked_bag():
    logits = torch.zeros(1, 1, 3, 1, 2)  # one step, two cells, classes (normal, a, b)
    logits[0, 0, 1, 0, 1] = math.log(2.0)  # cell 1: class a twice as likely as the others
    out = _output(logits)
    valid = torch.ones(1, 1, dtype=torch.bool)
    # heat per cell: cell 0: 1 − 1/3 = 2/3, cell 1: 1 − 1/4 = 3/4; k = ⌈0.5·2⌉ = 1 → bag 3/4
    assert float(binary_mil_loss(out, valid, torch.tensor([True]), 0.5)) == pytest.approx(-math.log(0.75))
    assert float(binary_mil_loss(out, valid, torch.tensor([False]), 0.5)) == pytest.approx(-math.log(0.25))
    # category bags: normal = weakest normal cell 0, a = log 2, b = 0 → CE for class a
    labels = torch.tensor([[False, True, False]])
    expected = -(math.log(2.0) - math.log(1 + 2 + 1))
    assert float(category_mil_loss(out, valid, labels, 0.5)) == pytest.approx(expected)
    both = torch.tensor([[False, True, True]])  # multi-label: the mean of the two CE terms
    assert float(category_mil_loss(out, valid, both, 0.5)) == pytest.approx(
        (expected - (0 - math.log(4.0))) / 2)


def test_temporal_regularisers():
    heat_logits = torch.zeros(1, 3, 2, 1, 1)
    heat_logits[0, :, 1, 0, 0] = torch.tensor([0.0, math.log(3.0), 0.0])  # heat .5, .75, .5
    out = _output(heat_logits)
    smooth, sparse = temporal_regularisers(out, torch.ones(1, 3, dtype=torch.bool), torch.tensor([True]))
    assert float(smooth) == pytest.approx(2 * 0.25**2) and float(sparse) == pytest.approx(1.75)
    zero = temporal_regularisers(out, torch.ones(1, 3, dtype=torch.bool), torch.tensor([False]))
    assert float(zero[0]) == 0 and float(zero[1]) == 0


@pytest.mark.slow
def test_learns_heatmaps_and_categories_from_video_labels_only(tmp_path, tiny_qwen_dir):
    """Trained on synthetic UCF-Crime with video labels only: frame AUC > 0.85, category accuracy on abnormal
    frames well above chance, and heatmaps peaking on the intruder (pixel AUC against the writer's masks)."""
    from lightning.pytorch import Trainer, seed_everything

    from tvau_lightning.backbones.types import BackboneConfig
    from tvau_lightning.data.synthetic_weak import write_synthetic_ucf_crime
    from tvau_lightning.data.ucf_crime import UCFCrimeDataModule
    from tvau_lightning.modules.grid import upsample_heatmap
    from tvau_lightning.tasks.weak_ahd import WeakAHDTask

    seed_everything(0)
    data = write_synthetic_ucf_crime(tmp_path / "ucf", categories=("Abuse", "Arson", "Explosion"),
                                     train_per_category=4, test_per_category=2, normal_train=6, normal_test=3,
                                     num_frames=16, height=64, width=96, seed=5)
    dm = UCFCrimeDataModule(str(data.root), split_dir=str(data.split_dir), clip_len=16, frame_size=(64, 96),
                            train_clip_step=16, batch_size=2, num_workers=0)
    task = WeakAHDTask(BackboneConfig(path=str(tiny_qwen_dir), dtype="float32"), categories=UCF_NAMES, logit_scale=10.0,
                       lr=3e-3, k_ratio=0.05)
    trainer = Trainer(accelerator="cpu", max_epochs=6, limit_val_batches=0, num_sanity_val_steps=0, logger=False,
                      enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                      default_root_dir=str(tmp_path))
    trainer.fit(task, dm)
    metrics = trainer.test(task, dm, verbose=False)[0]
    assert metrics["test/frame_auc"] > 0.85
    assert metrics["test/category_accuracy"] > 0.6  # chance: 1/13 (argmax over all 13), 1/3 among those drawn
    heat, truth = [], []
    task.eval()
    with torch.no_grad():
        for batch in dm.test_dataloader():
            maps = upsample_heatmap(task(batch.frames).heatmap, num_frames=batch.num_frames,
                                    frame_size=batch.frame_size, temporal_factor=task.temporal_factor)
            for b, video_id in enumerate(batch.video_id):
                masks = data.videos[video_id].masks()
                for t, frame in enumerate(batch.frame_index[b].tolist()):
                    if frame >= 0 and masks[frame].any():
                        heat.append(maps[b, t].numpy().ravel())
                        truth.append(masks[frame].ravel())
    assert roc_auc_score(np.concatenate(truth), np.concatenate(heat)) > 0.8  # pixel AUC on anomalous frames


def test_task_prototypes_and_description_file(tmp_path, tiny_qwen_dir):
    import json

    from tvau_lightning.backbones.types import BackboneConfig
    from tvau_lightning.tasks.weak_ahd import WeakAHDTask

    config = BackboneConfig(path=str(tiny_qwen_dir), dtype="float32")
    plain = WeakAHDTask(config, categories=["Normal", "Abuse", "Arson"])
    assert plain.ahd.prototypes.shape[0] == 3 and bool(plain.ahd.has_prototypes)
    path = tmp_path / "descriptions.json"
    path.write_text(json.dumps({"Arson": ["a man sets a car on fire", "flames spread through a building"]}))
    augmented = WeakAHDTask(config, categories=["Normal", "Abuse", "Arson"], descriptions_file=str(path),
                            description_top_k=1)
    torch.testing.assert_close(augmented.ahd.prototypes[:2], plain.ahd.prototypes[:2])
    assert not torch.allclose(augmented.ahd.prototypes[2], plain.ahd.prototypes[2])
    path.write_text(json.dumps({"Kidnapping": ["…"]}))
    with pytest.raises(ValueError, match="unknown categories \\['Kidnapping'\\]"):
        WeakAHDTask(config, categories=["Normal", "Abuse", "Arson"], descriptions_file=str(path))
    with pytest.raises(ValueError, match="k_ratio"):
        WeakAHDTask(config, categories=["Normal", "Abuse"], k_ratio=0.0)


def test_task_rejects_categories_that_do_not_match_the_datamodule(tmp_path, tiny_qwen_dir):
    from lightning.pytorch import Trainer

    from tvau_lightning.backbones.types import BackboneConfig
    from tvau_lightning.data.synthetic_weak import write_synthetic_ucf_crime
    from tvau_lightning.data.ucf_crime import UCFCrimeDataModule
    from tvau_lightning.tasks.weak_ahd import WeakAHDTask

    data = write_synthetic_ucf_crime(tmp_path / "ucf", categories=("Abuse",), train_per_category=1,
                                     test_per_category=1, normal_train=1, normal_test=1, num_frames=16, height=32,
                                     width=64)
    dm = UCFCrimeDataModule(str(data.root), split_dir=str(data.split_dir), clip_len=8, frame_size=(32, 64),
                            num_workers=0)
    task = WeakAHDTask(BackboneConfig(path=str(tiny_qwen_dir), dtype="float32"), categories=["Normal", "Abuse"])
    trainer = Trainer(accelerator="cpu", fast_dev_run=1, logger=False, enable_progress_bar=False,
                      enable_model_summary=False)
    with pytest.raises(ValueError, match="the task has 2 categories .* but the DataModule's labels have 14 columns"):
        trainer.fit(task, dm)
