"""Stage 2 (RAE + LoRA): what trains, what the prompts do, multi-turn generation, the phase A → B → test →
merge pipeline through `tvau`, every backbone family, DDP, and an overfitting check."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import ModelCheckpoint

from tvau_lightning.backbones.lora import LoRASettings
from tvau_lightning.backbones.registry import load_backbone
from tvau_lightning.backbones.types import BackboneConfig
from tvau_lightning.data.dialogue import DialogueDataset, collate_dialogues
from tvau_lightning.data.dialogue_schema import Turn, load_dialogues
from tvau_lightning.metrics.functional import normalize_yes_no, sentence_bleu4
from tvau_lightning.tasks.ahd import AHDTask
from tvau_lightning.tasks.rae import ANSWERS_FILE, RAETask

FRAME_SIZE = {"qwen2_5_vl": (64, 96), "internvl": (32, 32), "llava": (32, 32), "llava_next": (32, 32)}
NUM_FRAMES = 4


@pytest.fixture(scope="module")
def dialogues(small_ubnormal, tmp_path_factory) -> dict[str, Path]:
    """Dialogue JSONL files of every split of the small synthetic UBnormal (ground-truth annotator)."""
    from tvau_lightning.commands.build_dataset import build_dataset_main

    out = tmp_path_factory.mktemp("dialogues")
    files = {}
    for split in ("training", "validation", "test"):
        code = build_dataset_main(["--source", "ubnormal", "--root", str(small_ubnormal.root),
                                   "--split-dir", str(small_ubnormal.split_dir), "--split", split,
                                   "--annotator", "ground-truth", "--out", str(out / split), "--no-progress",
                                   "--dense-records"])  # ~1 s videos: every frame, not 1 fps
        assert code == 0
        files[split] = out / split
    return files


@pytest.fixture(scope="module")
def ahd_checkpoint(tiny_backbone_dir, tmp_path_factory):
    """``family → path`` of an (untrained) stage-1 checkpoint for that family's tiny backbone."""
    cache: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in cache:
            task = AHDTask(BackboneConfig(path=str(tiny_backbone_dir(family)), dtype="float32"))
            path = tmp_path_factory.mktemp("ahd") / f"{family}.ckpt"
            torch.save({"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams)}, path)
            cache[family] = path
        return cache[family]

    return get


def _task(tiny_backbone_dir, ahd_checkpoint, family="qwen2_5_vl", **kwargs) -> RAETask:
    torch.manual_seed(0)
    kwargs.setdefault("lora", LoRASettings(rank=8, alpha=16, dropout=0.0))
    kwargs.setdefault("use_ahd", True)
    return RAETask(BackboneConfig(path=str(tiny_backbone_dir(family)), dtype="float32"),
                   ahd_checkpoint=str(ahd_checkpoint(family)) if kwargs["use_ahd"] else None, **kwargs)


def _batch(dialogues, family="qwen2_5_vl", split="training", phase="phase_a", n=2):
    ds = DialogueDataset(dialogues[split] / f"{phase}.jsonl", NUM_FRAMES, FRAME_SIZE[family])
    return collate_dialogues([ds[i] for i in range(min(n, len(ds)))])


def test_only_rae_and_lora_receive_gradients(tiny_backbone_dir, ahd_checkpoint, dialogues):
    task = _task(tiny_backbone_dir, ahd_checkpoint)
    task.train()
    task.dialogue_loss(_batch(dialogues)).backward()
    with_grad = {n for n, p in task.named_parameters() if p.grad is not None}
    assert with_grad, "no gradients at all"
    assert all(n.startswith("rae.") or "lora_" in n for n in with_grad), sorted(with_grad)
    assert {n for n, _ in task.rae.named_parameters(prefix="rae")} <= with_grad  # markers included
    lora_b = [p for n, p in task.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.grad.abs().sum() > 0 for p in lora_b)
    trainable = {n for n, p in task.named_parameters() if p.requires_grad}
    assert trainable == with_grad
    assert set(task.state_dict()) == {f"{n}" for n in trainable}  # checkpoints hold trainable weights only


def test_prompt_tokens_change_the_logits(tiny_backbone_dir, ahd_checkpoint, dialogues):
    task = _task(tiny_backbone_dir, ahd_checkpoint).eval()
    batch = _batch(dialogues, n=1)
    video, visual, prompts = task.encode_clips(batch.frames, batch.fps)
    inputs = task.backbone.build_dialogue_inputs(batch.turns, video=video, num_prompt_tokens=prompts.shape[1])
    other = task.rae(torch.rand(1, video.grid[0], 2, *video.grid[1:]))  # different heatmaps, same clip
    with torch.no_grad():
        _, a = task.backbone.forward_dialogue(inputs, task.backbone.embed_dialogue(inputs, visual, prompts))
        _, b = task.backbone.forward_dialogue(inputs, task.backbone.embed_dialogue(inputs, visual, other))
    first_prompt = int(inputs.prompt_mask[0].nonzero()[0])
    assert torch.equal(a[0, :first_prompt], b[0, :first_prompt])  # causal: nothing before the prompts moves
    assert (a[0, first_prompt:] - b[0, first_prompt:]).abs().max() > 1e-4


def test_loss_only_on_assistant_answers(tiny_backbone_dir, ahd_checkpoint, dialogues):
    task = _task(tiny_backbone_dir, ahd_checkpoint)
    batch = _batch(dialogues, n=2)
    video, _, prompts = task.encode_clips(batch.frames, batch.fps)
    inputs = task.backbone.build_dialogue_inputs(batch.turns, video=video, num_prompt_tokens=prompts.shape[1])
    tok = task.backbone.tokenizer
    end_of_turn = task.backbone.tokenize("<|im_end|>")  # Qwen's (ChatML) end of an assistant turn
    for b, turns in enumerate(batch.turns):
        labelled = inputs.labels[b][inputs.labels[b] != -100].tolist()
        expected = []
        for t in turns:
            if t.role == "assistant":
                expected += task.backbone.tokenize(t.content) + end_of_turn
        assert labelled == expected, tok.decode(labelled)
        assert not (inputs.labels[b] != -100)[inputs.visual_mask[b] | inputs.prompt_mask[b]].any()


def test_multi_turn_generation_equals_step_by_step(tiny_backbone_dir, ahd_checkpoint, dialogues):
    task = _task(tiny_backbone_dir, ahd_checkpoint, max_new_tokens=6).eval()
    batch = _batch(dialogues, split="test", phase="phase_b", n=2)
    batched = task.converse(batch)
    for b, turns in enumerate(batch.turns):
        history: list[Turn] = []
        for i, (ref, (ref2, answer)) in enumerate(zip([t for t in turns if t.role == "assistant"], batched[b])):
            question = [t for t in turns if t.role == "user"][i]
            step = task.answer(batch.frames[b:b + 1], batch.fps[b:b + 1], [history + [question]])[0]
            assert ref2 == ref and step == answer
            history += [question, Turn("assistant", step, ref.kind)]


def test_ablations_and_heatmap_free_batches(tiny_backbone_dir, ahd_checkpoint, dialogues):
    batch = _batch(dialogues, n=1)
    no_ahd = _task(tiny_backbone_dir, ahd_checkpoint, use_ahd=False)
    assert no_ahd.ahd is None
    _, _, prompts = no_ahd.encode_clips(batch.frames, batch.fps)
    assert prompts is not None  # zero heatmaps: the RAE is a learned soft prompt
    no_ahd.dialogue_loss(batch).backward()
    no_rae = _task(tiny_backbone_dir, ahd_checkpoint, use_rae=False)
    assert no_rae.encode_clips(batch.frames, batch.fps)[2] is None
    assert torch.isfinite(no_rae.dialogue_loss(batch))
    zero_shot = _task(tiny_backbone_dir, ahd_checkpoint, use_ahd=False, use_rae=False, lora=None)
    with pytest.raises(ValueError, match="nothing to train"):
        zero_shot.configure_optimizers()
    assert isinstance(zero_shot.answer(batch.frames, batch.fps, [[batch.turns[0][0]]])[0], str)
    with pytest.raises(ValueError, match="ahd_checkpoint"):
        RAETask(BackboneConfig(path=str(tiny_backbone_dir("qwen2_5_vl"))), use_ahd=True)


def test_the_ahd_reads_the_layers_it_was_trained_on(tiny_backbone_dir, tmp_path, dialogues):
    backbone = str(tiny_backbone_dir("qwen2_5_vl"))
    stage1 = AHDTask(BackboneConfig(path=backbone, dtype="float32", layers=[1, 4]))
    ckpt = tmp_path / "ahd.ckpt"
    torch.save({"state_dict": stage1.state_dict(), "hyper_parameters": dict(stage1.hparams)}, ckpt)
    task = RAETask(BackboneConfig(path=backbone, dtype="float32"), ahd_checkpoint=str(ckpt))  # default layers 1, 2, 4
    assert task.backbone.layers == [1, 2, 4] and task.layers == [1, 4]
    batch = _batch(dialogues, n=1)
    with torch.no_grad():
        video = task.backbone.preprocess_video(batch.frames, fps=batch.fps)
        feats = task.backbone.encode_video(video, [1, 4], visual_tokens=False).layer_features
        expected = stage1.ahd([feats[1], feats[4]]).class_maps
        maps = task.ahd([task.backbone.encode_video(video, task.layers, visual_tokens=False).layer_features[i]
                         for i in task.layers]).class_maps
    assert torch.allclose(maps, expected, atol=1e-6)


@pytest.mark.parametrize("family", ["internvl", "llava", "llava_next"])
def test_every_family_trains_and_answers(tiny_backbone_dir, ahd_checkpoint, dialogues, family):
    task = _task(tiny_backbone_dir, ahd_checkpoint, family=family, max_new_tokens=4)
    batch = _batch(dialogues, family=family, n=2)
    task.train()
    loss = task.dialogue_loss(batch)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in task.rae.parameters())
    task.eval()
    answers = task.answer(batch.frames, batch.fps, [[t[0]] for t in batch.turns])
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)


def test_overfits_a_handful_of_yes_no_dialogues(tiny_backbone_dir, ahd_checkpoint, dialogues):
    """A tiny model trained on six clips reproduces their yes/no answers from the video alone."""
    frames, fps, questions, labels = [], [], [], []
    for split in ("training", "validation", "test"):
        ds = DialogueDataset(dialogues[split] / "phase_a.jsonl", NUM_FRAMES, FRAME_SIZE["qwen2_5_vl"])
        for i in range(len(ds)):
            s = ds[i]
            frames.append(s.frames)
            fps.append(s.fps)
            questions.append(s.turns[:2])
            labels.append(s.record.label)
    assert sorted(set(labels)) == [0, 1]
    task = _task(tiny_backbone_dir, ahd_checkpoint, lora=LoRASettings(rank=8, alpha=16, dropout=0.0), lr=1e-2)
    frames, fps = torch.stack(frames), torch.tensor(fps)
    from tvau_lightning.data.dialogue import DialogueBatch

    batch = DialogueBatch(frames=frames, turns=questions, records=[None] * len(labels), fps=fps,
                          frame_index=torch.zeros(len(labels), NUM_FRAMES, dtype=torch.long))
    opt = torch.optim.AdamW([p for p in task.parameters() if p.requires_grad], lr=1e-2)
    task.train()
    for _ in range(80):
        loss = task.dialogue_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    task.eval()
    answers = task.answer(frames, fps, [[q[0]] for q in questions])
    assert [normalize_yes_no(a) for a in answers] == ["yes" if y else "no" for y in labels], answers


def _rae_config(family_dir: str, ahd: str, dialogues: dict[str, Path], out: Path, phase: str,
                **model_args) -> dict:
    return {
        "seed_everything": 0,
        "model": {"class_path": "tvau_lightning.tasks.rae.RAETask",
                  "init_args": {"backbone": {"path": family_dir, "dtype": "float32"}, "ahd_checkpoint": ahd,
                                "lora": {"rank": 4, "alpha": 8, "dropout": 0.05}, "lr": 2e-3,
                                "max_new_tokens": 8, **model_args}},
        "data": {"class_path": "tvau_lightning.data.dialogue.DialogueDataModule",
                 "init_args": {"train_file": str(dialogues["training"] / f"{phase}.jsonl"),
                               "val_file": str(dialogues["validation"] / f"{phase}.jsonl"),
                               "test_file": str(dialogues["test"] / f"{phase}.jsonl"),
                               "num_frames": NUM_FRAMES, "frame_size": list(FRAME_SIZE["qwen2_5_vl"])}},
        "trainer": {"accelerator": "cpu", "max_epochs": 1, "enable_progress_bar": False,
                    "enable_model_summary": False, "log_every_n_steps": 1, "default_root_dir": str(out),
                    "callbacks": [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                                   "init_args": {"dirpath": str(out / "ckpt"), "filename": "best",
                                                 "monitor": "val/loss", "mode": "min", "save_last": True,
                                                 "enable_version_counter": False}}]},
    }


def _check_answers_file(run_dir: Path, jsonl: Path, tested: dict[str, float]) -> list[dict]:
    """``tvau test`` wrote ``answers.jsonl`` next to its logs: one row per question of every test record, with the
    question and reference of that turn, and scores that recompute (and average to the logged metrics)."""
    found = list(run_dir.rglob(ANSWERS_FILE))
    assert len(found) == 1, found
    rows = [json.loads(line) for line in found[0].read_text().splitlines()]
    records = load_dialogues(jsonl)
    expected = [(r.video_id, r.video, list(r.frame_range), r.turns[i].content, r.turns[i + 1].content,
                 r.turns[i + 1].kind) for r in records for i in range(0, len(r.turns) - 1, 2)]
    got = [(r["video_id"], r["video"], r["frame_range"], r["question"], r["reference"], r["kind"]) for r in rows]
    assert sorted(got) == sorted(expected)
    by_record = {f"{r.video_id}@{r.frame_range[0]}-{r.frame_range[1]}": r for r in records}
    for row in rows:
        assert isinstance(row["answer"], str) and len(row["sampled_frames"]) == NUM_FRAMES
        record = by_record[row["record"]]
        if row["kind"] == "yesno":
            assert row["bleu4"] is None
            assert row["correct"] == (normalize_yes_no(row["answer"]) == normalize_yes_no(row["reference"]))
        else:
            assert row["correct"] is None
            assert row["bleu4"] == pytest.approx(sentence_bleu4(row["answer"], record.references_for(row["kind"])))
    for kind in ("target", "trajectory"):
        scores = [r["bleu4"] for r in rows if r["kind"] == kind]
        assert tested[f"test/bleu4_{kind}"] == pytest.approx(sum(scores) / len(scores), abs=1e-6)
    correct = [r["correct"] for r in rows if r["kind"] == "yesno"]
    assert tested["test/yes_no_accuracy"] == pytest.approx(sum(correct) / len(correct), abs=1e-6)
    return rows


def test_phase_a_then_b_then_test_then_merge(tiny_backbone_dir, ahd_checkpoint, dialogues, tmp_path, cli_runner):
    from tvau_lightning.cli import main

    qwen, ahd = str(tiny_backbone_dir("qwen2_5_vl")), str(ahd_checkpoint("qwen2_5_vl"))
    cfg_a = tmp_path / "a.yaml"
    cfg_a.write_text(yaml.safe_dump(_rae_config(qwen, ahd, dialogues, tmp_path / "a", "phase_a")))
    fitted_a = cli_runner(["fit", "--config", str(cfg_a)])
    assert "val/loss" in fitted_a
    ckpt_a = tmp_path / "a" / "ckpt" / "best.ckpt"
    state_a = torch.load(ckpt_a, map_location="cpu", weights_only=False)["state_dict"]
    assert {k.split("layers.")[1].split(".")[0] for k in state_a if "lora_" in k} == {"0", "1"}  # phase A: all layers
    assert main(["merge-lora", "--ckpt", str(ckpt_a), "--out", str(tmp_path / "merged_a")]) == 0

    cfg_b = tmp_path / "b.yaml"
    cfg_b.write_text(yaml.safe_dump(_rae_config(
        str(tmp_path / "merged_a"), ahd, dialogues, tmp_path / "b", "phase_b", init_checkpoint=str(ckpt_a),
        lora={"rank": 4, "alpha": 8, "dropout": 0.05, "last_n_layers": 1})))
    cli_runner(["fit", "--config", str(cfg_b)])
    ckpt_b = tmp_path / "b" / "ckpt" / "best.ckpt"
    state_b = torch.load(ckpt_b, map_location="cpu", weights_only=False)["state_dict"]
    lora_layers = {k.split("layers.")[1].split(".")[0] for k in state_b if "lora_" in k}
    assert lora_layers == {"1"}  # phase B: LoRA on the last layer(s) only
    tested = cli_runner(["test", "--config", str(cfg_b), "--ckpt_path", str(ckpt_b)])
    for key in ("test/yes_no_accuracy", "test/yes_no_balanced_accuracy", "test/bleu4_target",
                "test/bleu4_trajectory"):
        assert 0.0 <= tested[key] <= 1.0, key
    tested_rows = _check_answers_file(tmp_path / "b", dialogues["test"] / "phase_b.jsonl", tested)
    # `tvau predict` writes the same file (the predict split is the test split) into its own log folder
    cli_runner(["predict", "--config", str(cfg_b), "--ckpt_path", str(ckpt_b)])
    files = sorted((tmp_path / "b").rglob(ANSWERS_FILE), key=lambda p: p.stat().st_mtime)
    assert len(files) == 2 and [json.loads(x) for x in files[1].read_text().splitlines()] == tested_rows
    # phase A's validation logged sample dialogues (model answer beside the reference) as TensorBoard text
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next((tmp_path / "a").rglob("events.out.tfevents.*")).parent),
                              size_guidance={"tensors": 0})
    events.Reload()
    texts = {tag: events.Tensors(tag)[-1].tensor_proto.string_val[0].decode() for tag in events.Tags()["tensors"]
             if tag.startswith("val/dialogue_")}
    assert sorted(texts) == ["val/dialogue_0/text_summary", "val/dialogue_1/text_summary"]
    first = load_dialogues(dialogues["validation"] / "phase_a.jsonl")[0]
    assert first.turns[0].content in texts["val/dialogue_0/text_summary"]
    assert first.turns[1].content in texts["val/dialogue_0/text_summary"]  # the reference answer

    assert main(["merge-lora", "--ckpt", str(ckpt_b), "--out", str(tmp_path / "merged_b")]) == 0
    merged = load_backbone(str(tmp_path / "merged_b"), dtype="float32")
    # merged weights == base + LoRA: same logits as the LoRA-wrapped phase-B model from its checkpoint
    task = RAETask.load_from_checkpoint(ckpt_b, map_location="cpu").eval()
    ids = torch.tensor([merged.tokenize("is there any anomaly in the video")])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        ref = task.backbone.model(input_ids=ids, attention_mask=mask).logits
        out = merged.model(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(ref, out, atol=1e-4)


@pytest.mark.ddp
def test_ddp_fit_runs(tiny_backbone_dir, ahd_checkpoint, dialogues, tmp_path):
    cfg = tmp_path / "ddp.yaml"
    cfg.write_text(yaml.safe_dump(_rae_config(str(tiny_backbone_dir("qwen2_5_vl")), str(ahd_checkpoint("qwen2_5_vl")),
                                              dialogues, tmp_path / "run", "phase_b")))
    proc = subprocess.run([sys.executable, "-m", "tvau_lightning.cli", "fit", "--config", str(cfg),
                           "--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.limit_train_batches", "2",
                           "--trainer.limit_val_batches", "1"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "run" / "ckpt" / "last.ckpt").is_file()


# ---- schedule (paper §4.1): cosine to min_lr, validation/saving every N optimizer steps, phase A without LoRA ----


class _StepRecorder(Callback):
    """Records the optimizer step of every validation and the learning rate each optimizer step used."""

    def __init__(self) -> None:
        self.validated_at: list[int] = []
        self.lrs: list[float] = []

    def on_validation_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.validated_at.append(trainer.global_step)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.lrs.append(optimizer.param_groups[0]["lr"])


def _repeated_train_file(dialogues, n: int) -> Path:
    """A training file of ``n`` records (the split's records repeated), beside the originals (relative videos)."""
    lines = (dialogues["training"] / "phase_a.jsonl").read_text().splitlines()
    path = dialogues["training"] / f"repeated_{n}.jsonl"
    path.write_text("\n".join(lines[i % len(lines)] for i in range(n)) + "\n")
    return path


def test_validation_and_saving_every_n_optimizer_steps_with_accumulation(tiny_backbone_dir, ahd_checkpoint,
                                                                        dialogues, tmp_path):
    from lightning.pytorch import Trainer

    from tvau_lightning.data.dialogue import DialogueDataModule

    # 10 batches, accumulation 2 → 5 optimizer steps; every 2 steps → validation at steps 2 and 4, and after the
    # last (5). Lightning's batch-counting val_check_interval=2 would validate at steps 1, 2, 3, 4, 5.
    data = DialogueDataModule(train_file=str(_repeated_train_file(dialogues, 10)),
                              val_file=str(dialogues["validation"] / "phase_a.jsonl"), num_frames=NUM_FRAMES,
                              frame_size=FRAME_SIZE["qwen2_5_vl"], num_workers=0)
    task = _task(tiny_backbone_dir, ahd_checkpoint, lr=1e-2, min_lr=1e-3, warmup_ratio=0.0, val_every_n_steps=2)
    recorder = _StepRecorder()
    saver = ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="{step}", monitor="val/loss", mode="min",
                            save_top_k=-1)
    trainer = Trainer(accelerator="cpu", max_epochs=1, accumulate_grad_batches=2, limit_val_batches=1,
                      num_sanity_val_steps=0, logger=False, enable_progress_bar=False, enable_model_summary=False,
                      callbacks=[recorder, saver])
    trainer.fit(task, datamodule=data)
    assert trainer.global_step == 5
    assert recorder.validated_at == [2, 4, 5]
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["step=2.ckpt", "step=4.ckpt", "step=5.ckpt"]
    # cosine from lr to min_lr over the 5 optimizer steps, no other floor: computed here independently
    expected = [1e-3 + (1e-2 - 1e-3) * 0.5 * (1 + math.cos(math.pi * s / 5)) for s in range(5)]
    assert recorder.lrs == pytest.approx(expected, rel=1e-6)

    # the two schedules are exclusive: a batch-counting val_check_interval next to it is refused
    clash = Trainer(accelerator="cpu", max_epochs=1, val_check_interval=2, logger=False, enable_progress_bar=False,
                    enable_model_summary=False)
    with pytest.raises(ValueError, match="val_check_interval"):
        clash.fit(task, datamodule=data)


def test_schedule_arguments_are_checked(tiny_backbone_dir, ahd_checkpoint):
    with pytest.raises(ValueError, match="min_lr"):
        _task(tiny_backbone_dir, ahd_checkpoint, lr=1e-3, min_lr=1e-2)
    with pytest.raises(ValueError, match="val_every_n_steps"):
        _task(tiny_backbone_dir, ahd_checkpoint, val_every_n_steps=0)


def test_phase_a_without_lora_chains_through_merge_and_phase_b(tiny_backbone_dir, ahd_checkpoint, dialogues,
                                                               tmp_path, cli_runner):
    from tvau_lightning.cli import main

    qwen, ahd = str(tiny_backbone_dir("qwen2_5_vl")), str(ahd_checkpoint("qwen2_5_vl"))
    cfg_a = _rae_config(qwen, ahd, dialogues, tmp_path / "a", "phase_a")
    cfg_a["model"]["init_args"]["lora"] = None  # phase_a_lora: false — prompt learner and tokens only
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(cfg_a))
    cli_runner(["fit", "--config", str(tmp_path / "a.yaml")])
    ckpt_a = tmp_path / "a" / "ckpt" / "best.ckpt"
    state_a = torch.load(ckpt_a, map_location="cpu", weights_only=False)["state_dict"]
    assert state_a and all(k.startswith("rae.") for k in state_a)
    assert main(["merge-lora", "--ckpt", str(ckpt_a), "--out", str(tmp_path / "merged_a")]) == 0
    # nothing to merge: the folder is the original language model, weight for weight
    original, merged = load_backbone(qwen, dtype="float32"), load_backbone(str(tmp_path / "merged_a"), dtype="float32")
    merged_state = merged.model.state_dict()
    assert all(torch.equal(v, merged_state[k]) for k, v in original.model.state_dict().items())

    cfg_b = _rae_config(str(tmp_path / "merged_a"), ahd, dialogues, tmp_path / "b", "phase_b",
                        init_checkpoint=str(ckpt_a), lora={"rank": 4, "alpha": 8, "dropout": 0.05, "last_n_layers": 1})
    # phase B starts from phase A's RAE weights on the unchanged backbone
    task = RAETask(BackboneConfig(path=str(tmp_path / "merged_a"), dtype="float32"), ahd_checkpoint=ahd,
                   init_checkpoint=str(ckpt_a), lora=LoRASettings(rank=4, alpha=8, last_n_layers=1))
    assert all(torch.equal(v, state_a[f"rae.{k}"]) for k, v in task.rae.state_dict().items())
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(cfg_b))
    cli_runner(["fit", "--config", str(tmp_path / "b.yaml")])
    state_b = torch.load(tmp_path / "b" / "ckpt" / "best.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    assert {k.split("layers.")[1].split(".")[0] for k in state_b if "lora_" in k} == {"1"}


# ---- one sampling for both stages (issue 13, item 1) ----------------------------------------------------------


def test_dialogue_clips_at_a_fixed_rate(dialogues):
    from tvau_lightning.data.dialogue import DialogueDataset
    from tvau_lightning.data.video import open_video

    path = dialogues["training"] / "phase_a.jsonl"
    record = load_dialogues(path)[0]
    start, end = record.frame_range
    source_fps = float(open_video(record.resolve_video(path.parent)).fps)
    sample = DialogueDataset(path, NUM_FRAMES, FRAME_SIZE["qwen2_5_vl"], sample_fps=source_fps / 3)[0]
    assert sample.frame_index.tolist() == list(range(start, end + 1, 3))  # every third frame, none past the end
    assert sample.fps == pytest.approx(source_fps / 3) and sample.frames.shape[0] == len(range(start, end + 1, 3))
    # a short record repeats its last frame up to min_frames; a long one is refused above max_frames
    short = DialogueDataset(path, NUM_FRAMES, FRAME_SIZE["qwen2_5_vl"], frame_stride=end - start, min_frames=4)[0]
    assert short.frame_index.tolist() == [start, end, end, end]
    with pytest.raises(ValueError, match="max_frames=8"):
        DialogueDataset(path, NUM_FRAMES, FRAME_SIZE["qwen2_5_vl"], frame_stride=1, max_frames=8)[0]


def test_stage2_refuses_an_ahd_trained_on_another_sampling(fitted_ahd, dialogues):
    """fitted_ahd trained on every frame at 64×96: stage 2 must sample its clips the same way, or say so."""
    import warnings

    from lightning.pytorch import Trainer

    from tvau_lightning.data.dialogue import DialogueDataModule

    def fit(allow: bool, **sampling) -> None:
        task = RAETask(BackboneConfig(path=str(fitted_ahd.backbone), dtype="float32"),
                       ahd_checkpoint=str(fitted_ahd.checkpoint), lora=None, val_every_n_steps=None,
                       log_val_dialogues=0, allow_sampling_mismatch=allow, max_length=4096)
        data = DialogueDataModule(train_file=str(dialogues["training"] / "phase_a.jsonl"),
                                  val_file=str(dialogues["validation"] / "phase_a.jsonl"), num_workers=0, **sampling)
        Trainer(accelerator="cpu", fast_dev_run=1, logger=False, enable_progress_bar=False,
                enable_model_summary=False).fit(task, datamodule=data)

    spread = {"num_frames": NUM_FRAMES, "frame_size": (64, 96)}  # 4 frames spread over each 32-frame record
    with pytest.raises(ValueError, match="rate: stage 1 every frame, stage 2 a fixed number .*allow_sampling_mismatch"):
        fit(False, **spread)
    with pytest.raises(ValueError, match=r"frame_size: stage 1 \[64, 96\], stage 2 \[56, 84\]"):
        fit(False, frame_stride=1, max_frames=32, frame_size=(56, 84))
    with pytest.warns(RuntimeWarning, match="allow_sampling_mismatch is set"):
        fit(True, **spread)
    with warnings.catch_warnings(record=True) as caught:  # the same sampling: no error, no warning
        warnings.simplefilter("always")
        fit(False, frame_stride=1, max_frames=32, frame_size=(64, 96))
    assert not [w for w in caught if "sampl" in str(w.message)]


def test_stage2_reads_sample_fps_from_the_ahd_checkpoint(fitted_ahd, dialogues, tmp_path):
    """An AHD whose DataModule took 1 frame per second (``sample_fps: 1`` in its recorded hyper-parameters)
    refuses dialogue clips of every frame, and accepts clips taken at 1 fps."""
    import warnings

    from lightning.pytorch import Trainer

    from tvau_lightning.data.dialogue import DialogueDataModule

    ckpt = torch.load(fitted_ahd.checkpoint, map_location="cpu", weights_only=False)
    ckpt["datamodule_hyper_parameters"]["sample_fps"] = 1.0  # as UBnormalDataModule(sample_fps=1.0) records it
    path = tmp_path / "ahd_1fps.ckpt"
    torch.save(ckpt, path)

    def fit(**sampling) -> None:
        task = RAETask(BackboneConfig(path=str(fitted_ahd.backbone), dtype="float32"), ahd_checkpoint=str(path),
                       lora=None, val_every_n_steps=None, log_val_dialogues=0, max_length=4096)
        data = DialogueDataModule(train_file=str(dialogues["training"] / "phase_a.jsonl"),
                                  val_file=str(dialogues["validation"] / "phase_a.jsonl"), frame_size=(64, 96),
                                  num_workers=0, **sampling)
        Trainer(accelerator="cpu", fast_dev_run=1, logger=False, enable_progress_bar=False,
                enable_model_summary=False).fit(task, datamodule=data)

    with pytest.raises(ValueError, match="rate: stage 1 1 fps, stage 2 every frame.*allow_sampling_mismatch"):
        fit(frame_stride=1, max_frames=32)
    with warnings.catch_warnings(record=True) as caught:  # the same rate: no error, no warning
        warnings.simplefilter("always")
        fit(sample_fps=1.0, min_frames=4, max_frames=40)  # 30 fps records: 2 frames (stride 30), padded to 4
    assert not [w for w in caught if "sampl" in str(w.message)]
