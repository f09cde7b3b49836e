"""Stage 2: the RAE task — heatmap-grounded multi-turn anomaly dialogue (SPEC §4, paper §4.1).

The frozen AHD (from a stage-1 checkpoint) turns each clip into class heatmaps; the RAE turns those into
prompt tokens placed after the visual tokens; the language model (LoRA on q_proj/v_proj) learns to answer
on assistant turns only. Trainable: RAE (+ its markers) and LoRA; checkpoints hold exactly those.

Schedule (paper §4.1): AdamW, cosine from ``lr`` to ``min_lr`` (0 by default), validation and checkpointing every
``val_every_n_steps`` *optimizer* steps (:mod:`tvau_lightning.tasks.step_validation`). ``tvau test`` and ``tvau
predict`` write every generated answer to ``<log_dir>/answers.jsonl`` (:meth:`RAETask.answer_rows`); validation
logs a few sample dialogues to TensorBoard.

Ablations (paper Table 4) are switches: ``use_ahd=False`` feeds the RAE zero heatmaps (it degenerates to a
learned soft prompt), ``use_rae=False`` injects no prompt tokens, ``lora=None`` keeps the LLM frozen; all
three off is the zero-shot backbone.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.utilities import rank_zero_info

from tvau_lightning.atomic import write_text_atomic
from tvau_lightning.backbones.base import BackboneAdapter
from tvau_lightning.backbones.lora import LoRASettings
from tvau_lightning.backbones.registry import load_backbone
from tvau_lightning.backbones.types import BackboneConfig, VideoInputs
from tvau_lightning.checkpoints import IDENTITY_KEY, backbone_identity, read_checkpoint
from tvau_lightning.data.dialogue import DialogueBatch
from tvau_lightning.data.dialogue_schema import DialogueRecord, Turn
from tvau_lightning.metrics import BLEU4, YesNoAccuracy
from tvau_lightning.metrics.functional import normalize_yes_no, sentence_bleu4
from tvau_lightning.modules.anomaly_model import load_ahd
from tvau_lightning.modules.rae import RegionAwareAnomalyEncoder
from tvau_lightning.tasks.base import FrozenBackboneTask
from tvau_lightning.tasks.schedules import warmup_cosine
from tvau_lightning.tasks.step_validation import ValidateEveryOptimizerSteps

#: text fields scored with BLEU-4 at test time (the paper reports target and trajectory)
BLEU_KINDS: tuple[str, ...] = ("target", "trajectory", "anchor")

#: the file ``tvau test`` / ``tvau predict`` write next to the logs (``trainer.log_dir``)
ANSWERS_FILE = "answers.jsonl"


class RAETask(FrozenBackboneTask):
    """Train RAE + LoRA on dialogue data; test with multi-turn generation and text metrics.

    Args:
        backbone: the LVLM (full model; for phase B, the merged phase-A folder from ``tvau merge-lora``).
        ahd_checkpoint: stage-1 ``AHDTask`` checkpoint (required when ``use_ahd``).
        use_ahd: feed real heatmaps to the RAE (off: zero heatmaps — the "w/o AHD" ablation).
        use_rae: inject RAE prompt tokens (off: no prompt tokens — "w/o RAE").
        lora: LoRA settings for the language model, ``None`` = no LoRA (frozen LLM).
        init_checkpoint: an earlier ``RAETask`` checkpoint whose RAE weights start this run (phase B starts
            from phase A; its LoRA is expected to be merged into ``backbone`` already — or it had none, the
            ``phase_a_lora: false`` variant, whose ``merge-lora`` folder is the unchanged backbone).
        rae_hidden_channels: ``C_h`` of the RAE conv backbone.
        rae_conv_layers: conv+GELU layers of the RAE.
        num_base_tokens: learnable base prompts (10).
        lr: peak AdamW learning rate (2e-4).
        min_lr: the cosine schedule's final learning rate (the paper states none for stage 2: 0).
        weight_decay: AdamW weight decay.
        warmup_ratio: warm-up fraction of the cosine schedule.
        val_every_n_steps: validate (and so save through ``ModelCheckpoint(monitor="val/loss")``) every this many
            *optimizer* steps, whatever ``accumulate_grad_batches`` is, and after the last step (paper: 100);
            ``None`` leaves the trainer's own ``val_check_interval`` (which counts batches) in charge.
        max_length: maximum sequence length (2048 in the paper).
        gradient_checkpointing: recompute LLM activations in backward to save memory.
        max_new_tokens: generation budget per answer at test time.
        log_val_dialogues: how many validation dialogues (the first ones) are answered by the model and logged
            to TensorBoard as text after each validation (0 = none; generation costs time; skipped under
            sharded strategies such as FSDP).
        force_backbone: use ``ahd_checkpoint`` even when it records another backbone (family or vision
            architecture) than ``backbone`` — a warning instead of the error.
        allow_sampling_mismatch: accept dialogue clips sampled differently (``sample_fps`` / ``frame_stride`` /
            ``frame_size``) from the clips the AHD was trained on — a warning (once) instead of the error; the
            heatmaps and their temporal differences are then out of the AHD's training distribution.
    """

    def __init__(
        self,
        backbone: BackboneConfig,
        ahd_checkpoint: str | None = None,
        use_ahd: bool = True,
        use_rae: bool = True,
        lora: LoRASettings | None = None,
        init_checkpoint: str | None = None,
        rae_hidden_channels: int = 64,
        rae_conv_layers: int = 3,
        num_base_tokens: int = 10,
        lr: float = 2e-4,
        min_lr: float = 0.0,
        weight_decay: float = 0.0,
        warmup_ratio: float = 0.03,
        val_every_n_steps: int | None = 100,
        max_length: int = 2048,
        gradient_checkpointing: bool = False,
        max_new_tokens: int = 48,
        log_val_dialogues: int = 2,
        force_backbone: bool = False,
        allow_sampling_mismatch: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 <= min_lr <= lr:
            raise ValueError(f"min_lr must be in [0, lr={lr}], got {min_lr}")
        if val_every_n_steps is not None and val_every_n_steps < 1:
            raise ValueError(f"val_every_n_steps must be a positive number of optimizer steps (or null), got "
                             f"{val_every_n_steps}")
        if use_ahd and ahd_checkpoint is None:
            raise ValueError("use_ahd=True needs ahd_checkpoint (a stage-1 AHDTask checkpoint); or set use_ahd=false")
        self.save_hyperparameters()
        self.backbone: BackboneAdapter = load_backbone(backbone, vision_only=False).freeze()
        self.backbone.eval()
        # the frozen stage-1 model on this (full) backbone; it reads the layers it was trained on, whatever this
        # config's backbone.layers says
        self.adopt_heatmap_model(load_ahd(ahd_checkpoint, backbone=self.backbone, force_backbone=force_backbone)
                                 if use_ahd else None)
        self._stage1_sampling = stage1_sampling(read_checkpoint(ahd_checkpoint)) if use_ahd else None
        self._sampling_checked = False
        self.rae = RegionAwareAnomalyEncoder(
            self.backbone.text_hidden_size,
            hidden_channels=rae_hidden_channels,
            num_conv_layers=rae_conv_layers,
            num_base_tokens=num_base_tokens,
        ) if use_rae else None
        if init_checkpoint is not None:
            self._load_rae_from(init_checkpoint)
        if lora is not None:
            self.backbone.apply_lora(lora)
        if gradient_checkpointing:
            model = self.backbone.model
            kwargs = {"use_reentrant": False}
            if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5's name
                model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
            else:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        self.bleu = torch.nn.ModuleDict({k: BLEU4() for k in BLEU_KINDS})
        self.yes_no = YesNoAccuracy()
        self._answer_rows: list[dict[str, Any]] = []  # per answer, for answers.jsonl (test and predict)

    # ---- weights ---------------------------------------------------------------------------------

    @property
    def layers(self) -> list[int]:
        """The vision layers the frozen AHD reads (the backbone config's when there is no AHD)."""
        return self.backbone.layers if self.heatmap_model is None else self.heatmap_model.layers

    def _load_rae_from(self, path: str) -> None:
        if self.rae is None:
            return
        ckpt = read_checkpoint(path)
        state = {k[len("rae."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("rae.")}
        if not state:
            raise ValueError(f"{path} holds no RAE weights (keys 'rae.*'); is it an RAETask checkpoint?")
        self.rae.load_state_dict(state)

    def setup(self, stage: str) -> None:
        """Check, once, that the dialogue clips are sampled as the AHD's training clips were."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if self.heatmap_model is None or self._sampling_checked or not hasattr(datamodule, "sampling"):
            return
        self._sampling_checked = True
        ckpt = self.hparams.ahd_checkpoint
        if self._stage1_sampling is None:
            warnings.warn(f"{ckpt} records no stage-1 DataModule settings: the dialogue sampling cannot be checked "
                          "against the AHD's", RuntimeWarning, stacklevel=2)
            return
        differences = sampling_differences(self._stage1_sampling, datamodule.sampling)
        if not differences:
            return
        message = (f"the AHD of {ckpt} was trained on clips sampled differently from the dialogue clips "
                   f"({'; '.join(differences)})")
        if not self.hparams.get("allow_sampling_mismatch", False):
            raise ValueError(f"{message}: set the dialogue DataModule's sample_fps / frame_stride / frame_size to the "
                             "stage-1 values, or model.allow_sampling_mismatch: true to use the AHD anyway")
        warnings.warn(f"{message}; allow_sampling_mismatch is set: its heatmaps are out of distribution",
                      RuntimeWarning, stacklevel=2)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the backbone this RAE and LoRA were trained on (family, vision fingerprint, AHD layers)."""
        checkpoint[IDENTITY_KEY] = backbone_identity(self.backbone, self.layers)

    def keeps_in_checkpoint(self, key: str) -> bool:
        """Only the trainable weights: RAE (with its markers) and LoRA."""
        return key.startswith("rae.") or "lora_" in key

    def train(self, mode: bool = True) -> RAETask:
        super().train(mode)
        if self.backbone.has_lora and mode:
            # LoRA dropout is the only training-mode behaviour inside the frozen LLM
            for name, module in self.backbone.model.named_modules():
                if "lora_dropout" in name:
                    module.train(True)
        if self.ahd is not None:
            self.ahd.eval()
        return self

    # ---- forward pieces --------------------------------------------------------------------------

    def encode_clips(self, frames: torch.Tensor, fps: torch.Tensor) -> tuple[VideoInputs, torch.Tensor, torch.Tensor | None]:
        """One vision pass: ``(video inputs, visual tokens (B, N, D), prompt embeddings (B, K, D) or None)``."""
        class_maps = None
        if self.heatmap_model is not None:
            video, vision = self.heatmap_model.encode(frames, fps=fps, visual_tokens=True)
            with torch.no_grad():
                class_maps = self.heatmap_model(features=self.heatmap_model.layer_features(vision)).class_maps
        else:
            video = self.backbone.preprocess_video(frames, fps=fps).to(self.backbone.device, self.backbone.dtype)
            with torch.no_grad():
                vision = self.backbone.encode_video(video, [1], visual_tokens=True)
        prompts = None
        if self.rae is not None:
            if class_maps is None:
                t, h, w = video.grid
                class_maps = torch.zeros(frames.shape[0], t, 2, h, w, device=self.device)
            prompts = self.rae(class_maps.float())
        return video, vision.visual_tokens, prompts

    def dialogue_loss(self, batch: DialogueBatch) -> torch.Tensor:
        video, visual_tokens, prompts = self.encode_clips(batch.frames, batch.fps)
        inputs = self.backbone.build_dialogue_inputs(
            batch.turns, video=video, num_prompt_tokens=0 if prompts is None else prompts.shape[1],
            padding_side="right", max_length=self.hparams.max_length,
        ).to(self.backbone.device)
        embeds = self.backbone.embed_dialogue(inputs, visual_tokens, prompts)
        loss, _ = self.backbone.forward_dialogue(inputs, embeds)
        if loss is None:
            loss = embeds.sum() * 0.0
        if prompts is None and self.rae is not None:
            # keep every trainable parameter in the graph so DDP never waits for a missing gradient
            loss = loss + sum(p.sum() for p in self.rae.parameters()) * 0.0
        return loss

    def training_step(self, batch: DialogueBatch, batch_idx: int) -> torch.Tensor:
        loss = self.dialogue_loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch.batch_size)
        return loss

    def validation_step(self, batch: DialogueBatch, batch_idx: int) -> None:
        loss = self.dialogue_loss(batch)
        self.log("val/loss", loss, prog_bar=True, batch_size=batch.batch_size, sync_dist=True)
        self._log_sample_dialogues(batch, batch_idx)

    def _log_sample_dialogues(self, batch: DialogueBatch, batch_idx: int) -> None:
        """The first ``log_val_dialogues`` validation dialogues of rank 0, answered turn by turn by the model,
        as TensorBoard text (``val/dialogue_<i>``) beside their references."""
        wanted = self.hparams.get("log_val_dialogues", 0)
        first = batch_idx * batch.batch_size
        # rank 0 generates alone: fine on one device or under DDP (full weights on every rank), not where the
        # weights are sharded (FSDP, DeepSpeed), which would need every rank in each generation step
        sharded = self.trainer.world_size > 1 and not isinstance(self.trainer.strategy, DDPStrategy)
        if (wanted <= first or self.trainer.sanity_checking or self.global_rank != 0 or sharded
                or not any(isinstance(lg, TensorBoardLogger) for lg in self.loggers)):
            return
        n = min(batch.batch_size, wanted - first)
        sub = DialogueBatch(frames=batch.frames[:n], turns=batch.turns[:n], records=batch.records[:n],
                            fps=batch.fps[:n], frame_index=batch.frame_index[:n])
        rows = self.answer_rows(sub, self.converse(sub))
        logger = next(lg for lg in self.loggers if isinstance(lg, TensorBoardLogger))
        for i in range(n):
            mine = [r for r in rows if r["record"] == record_key(sub.records[i])]
            lines = [f"**{mine[0]['video_id']}**, frames {mine[0]['frame_range']}" if mine else ""]
            for r in mine:
                score = (f" — BLEU-4 {r['bleu4']:.3f}" if r["bleu4"] is not None
                         else f" — {'correct' if r['correct'] else 'wrong'}" if r["correct"] is not None else "")
                lines += [f"**Q:** {r['question']}", f"**model:** {r['answer']}",
                          f"**reference:** {r['reference']}{score}"]
            logger.experiment.add_text(f"val/dialogue_{first + i}", "\n\n".join(lines), self.global_step)

    def configure_optimizers(self) -> dict[str, Any]:
        params = [p for p in self.parameters() if p.requires_grad]
        if not params:
            raise ValueError("nothing to train: enable use_rae and/or lora (the zero-shot setting is test-only)")
        optimizer = torch.optim.AdamW(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = warmup_cosine(optimizer, total_steps=total, warmup_ratio=self.hparams.warmup_ratio,
                                  peak_lr=self.hparams.lr, min_lr=self.hparams.min_lr if self.hparams.lr else 0.0)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_callbacks(self) -> list[Callback]:
        """Validation every ``val_every_n_steps`` optimizer steps, when set."""
        every = self.hparams.get("val_every_n_steps")
        return [] if every is None else [ValidateEveryOptimizerSteps(every)]

    # ---- multi-turn generation -------------------------------------------------------------------

    @torch.no_grad()
    def answer(self, frames: torch.Tensor, fps: torch.Tensor, histories: Sequence[Sequence[Turn]]) -> list[str]:
        """The next assistant message for each dialogue history (each ends with a user question)."""
        video, visual_tokens, prompts = self.encode_clips(frames, fps)
        inputs = self.backbone.build_dialogue_inputs(
            histories, video=video, num_prompt_tokens=0 if prompts is None else prompts.shape[1],
            add_generation_prompt=True, padding_side="left", max_length=self.hparams.max_length,
        ).to(self.backbone.device)
        embeds = self.backbone.embed_dialogue(inputs, visual_tokens, prompts)
        return self.backbone.generate(inputs, embeds, max_new_tokens=self.hparams.max_new_tokens)

    @torch.no_grad()
    def converse(self, batch: DialogueBatch) -> list[list[tuple[Turn, str]]]:
        """Multi-turn generation in each dialogue's order (judgment → target → trajectory → anchors):
        every question is asked with the model's own earlier answers as history. Returns, per dialogue,
        (reference assistant turn, generated answer) pairs."""
        histories: list[list[Turn]] = [[] for _ in batch.turns]
        results: list[list[tuple[Turn, str]]] = [[] for _ in batch.turns]
        n_rounds = max(sum(t.role == "assistant" for t in turns) for turns in batch.turns)
        for round_idx in range(n_rounds):
            active, questions, references = [], [], []
            for b, turns in enumerate(batch.turns):
                pairs = [(turns[i], turns[i + 1]) for i in range(0, len(turns) - 1, 2)]
                if round_idx < len(pairs):
                    active.append(b)
                    questions.append(pairs[round_idx][0])
                    references.append(pairs[round_idx][1])
            idx = torch.tensor(active)
            answers = self.answer(batch.frames[idx], batch.fps[idx],
                                  [histories[b] + [q] for b, q in zip(active, questions)])
            for b, q, ref, ans in zip(active, questions, references, answers):
                histories[b] += [q, Turn("assistant", ans, ref.kind)]
                results[b].append((ref, ans))
        return results

    def answer_rows(self, batch: DialogueBatch, conversations: Sequence[Sequence[tuple[Turn, str]]]
                    ) -> list[dict[str, Any]]:
        """One ``answers.jsonl`` row per generated answer: the clip (video, record, frame range, sampled frames),
        the question, the model's answer, the reference, and its score — sentence BLEU-4 (best reference) against
        the record's references of that kind for text answers, yes/no correctness for the judgment (``None``
        where it does not apply)."""
        rows = []
        for b, (record, pairs) in enumerate(zip(batch.records, conversations)):
            turns = batch.turns[b]
            questions = [turns[i] for i in range(0, len(turns) - 1, 2)]
            for turn_idx, ((ref, answer), question) in enumerate(zip(pairs, questions)):
                bleu = correct = None
                if ref.kind == "yesno":
                    correct = normalize_yes_no(answer) == normalize_yes_no(ref.content)
                elif record.references_for(ref.kind):  # every text answer (the test metrics: BLEU_KINDS)
                    bleu = sentence_bleu4(answer, record.references_for(ref.kind))
                rows.append({
                    "video": record.video, "video_id": record.video_id, "record": record_key(record),
                    "frame_range": None if record.frame_range is None else [int(x) for x in record.frame_range],
                    "sampled_frames": [int(x) for x in batch.frame_index[b].tolist()],
                    "turn": turn_idx, "kind": ref.kind, "question": question.content, "answer": answer,
                    "reference": ref.content, "bleu4": bleu, "correct": correct,
                })
        return rows

    def test_step(self, batch: DialogueBatch, batch_idx: int) -> None:
        conversations = self.converse(batch)
        for record, pairs in zip(batch.records, conversations):
            clip = record_key(record)
            for turn_idx, (ref, answer) in enumerate(pairs):
                # sample ids let the metrics drop clips that DistributedSampler repeats to even out ranks
                sample_id = [f"{clip}:{turn_idx}"]
                if ref.kind == "yesno":
                    self.yes_no.update([answer], [ref.content], sample_ids=sample_id)
                elif ref.kind in self.bleu:
                    self.bleu[ref.kind].update([answer], [record.references_for(ref.kind)], sample_ids=sample_id)
        self._answer_rows += self.answer_rows(batch, conversations)

    def on_test_epoch_start(self) -> None:
        self._answer_rows = []

    def on_test_epoch_end(self) -> None:
        values: dict[str, torch.Tensor] = {}
        for kind, metric in self.bleu.items():
            if metric.update_count:
                values[f"test/bleu4_{kind}"] = torch.as_tensor(metric.compute(), dtype=torch.float32)
            metric.reset()
        if self.yes_no.update_count:
            yn = self.yes_no.compute()
            values["test/yes_no_accuracy"] = torch.as_tensor(yn["accuracy"], dtype=torch.float32)
            values["test/yes_no_balanced_accuracy"] = torch.as_tensor(yn["balanced_accuracy"], dtype=torch.float32)
        self.yes_no.reset()
        if values:
            self.log_dict(values)
        self._write_answers()

    def on_predict_epoch_start(self) -> None:
        self._answer_rows = []

    def predict_step(self, batch: DialogueBatch, batch_idx: int) -> list[dict[str, Any]]:
        rows = self.answer_rows(batch, self.converse(batch))
        self._answer_rows += rows
        return rows

    def on_predict_epoch_end(self) -> None:
        self._write_answers()

    def _write_answers(self) -> None:
        """Write the collected rows to ``<log_dir>/answers.jsonl``: every rank's rows gathered (DDP), the
        clips that DistributedSampler repeats dropped, sorted by record and turn, written once by rank 0."""
        log_dir = Path(self.trainer.log_dir or self.trainer.default_root_dir)  # a broadcast under DDP: all ranks
        rows = self._answer_rows
        if torch.distributed.is_available() and torch.distributed.is_initialized() \
                and torch.distributed.get_world_size() > 1:
            gathered: list[list[dict[str, Any]] | None] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, rows)
            rows = [row for part in gathered for row in (part or [])]
        self._answer_rows = []
        if self.global_rank != 0:
            return
        unique = {(r["record"], r["turn"]): r for r in rows}
        ordered = [unique[k] for k in sorted(unique)]
        log_dir.mkdir(parents=True, exist_ok=True)
        path = write_text_atomic(log_dir / ANSWERS_FILE,
                                 "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ordered))
        rank_zero_info(f"{len(ordered)} answers written to {path}")


def stage1_sampling(checkpoint: dict[str, Any]) -> dict[str, Any] | None:
    """The sampling of a stage-1 checkpoint's training clips, from its DataModule hyper-parameters
    (``None`` when it records none): ``sample_fps``, ``frame_stride``, ``frame_size``."""
    hp = checkpoint.get("datamodule_hyper_parameters") or {}
    if "frame_size" not in hp:
        return None
    fps = hp.get("sample_fps")
    return {"sample_fps": fps, "frame_stride": None if fps is not None else int(hp.get("frame_stride") or 1),
            "frame_size": None if hp["frame_size"] is None else tuple(int(v) for v in hp["frame_size"])}


def sampling_differences(stage1: dict[str, Any], stage2: dict[str, Any]) -> list[str]:
    """Human-readable differences between two sampling descriptions (empty when they agree)."""
    def rate(s: dict[str, Any]) -> str:
        if s.get("sample_fps") is not None:
            return f"{s['sample_fps']:g} fps"
        if s.get("frame_stride") is not None:
            return "every frame" if s["frame_stride"] == 1 else f"every {s['frame_stride']}th frame"
        return "a fixed number of frames spread over each record"

    out = []
    if rate(stage1) != rate(stage2):
        out.append(f"rate: stage 1 {rate(stage1)}, stage 2 {rate(stage2)}")
    size1 = stage1.get("frame_size")
    size2 = None if stage2.get("frame_size") is None else tuple(stage2["frame_size"])
    if size1 != size2:
        out.append(f"frame_size: stage 1 {list(size1) if size1 else 'source size'}, stage 2 "
                   f"{list(size2) if size2 else 'source size'}")
    return out


def record_key(record: DialogueRecord) -> str:
    """The record's identity in ``answers.jsonl``: ``<video_id>@<start>-<end>`` (``@all`` without a range)."""
    if record.frame_range is None:
        return f"{record.video_id}@all"
    return f"{record.video_id}@{int(record.frame_range[0])}-{int(record.frame_range[1])}"
