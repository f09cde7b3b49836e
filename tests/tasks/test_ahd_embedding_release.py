"""Stage-1 memory: once the class prototypes are stored in the AHD, the vision-only backbone holds no input
embedding table (1.02 GiB in bf16 for Qwen2.5-VL-7B), and the prototypes are those of the table it had."""

from __future__ import annotations

import pytest
import torch

from tvau_lightning.backbones.registry import load_backbone
from tvau_lightning.backbones.types import BackboneConfig, BackboneError
from tvau_lightning.tasks.ahd import AHDTask


def _prototypes_from_table(backbone, sentences_per_class) -> torch.Tensor:
    """Mean of each sentence's token vectors, averaged per class — read straight from the embedding weights."""
    table = backbone.get_input_embeddings().weight.float()
    rows = []
    for sentences in sentences_per_class:
        per_sentence = [table[torch.tensor(backbone.tokenize(s))].mean(0) for s in sentences]
        rows.append(torch.stack(per_sentence).mean(0))
    return torch.stack(rows)


def test_a_vision_only_stage1_model_holds_no_embedding_table(tiny_backbone_dir):
    folder = str(tiny_backbone_dir("qwen2_5_vl"))
    task = AHDTask(BackboneConfig(path=folder, dtype="float32"))
    reference = load_backbone(folder, dtype="float32", vision_only=True)
    vocab, width = reference.get_input_embeddings().weight.shape
    assert vocab > 100
    held = {n: tuple(p.shape) for n, p in task.named_parameters()}
    held.update({n: tuple(b.shape) for n, b in task.named_buffers()})
    assert not any(shape and shape[0] == vocab for shape in held.values()), "an embedding table is still held"
    assert task.backbone.get_input_embeddings().weight.shape == (0, width)
    assert task.backbone.text_hidden_size == width and task.backbone.dtype == torch.float32
    expected = _prototypes_from_table(reference, task.prompts.class_sentences())
    torch.testing.assert_close(task.ahd.prototypes, expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(BackboneError, match="released after the class prototypes"):
        task.backbone.embed_text(["a person running"])
    assert task.backbone.release_input_embeddings() == 0  # already released


def test_the_full_model_keeps_its_table(tiny_backbone_dir):
    full = load_backbone(str(tiny_backbone_dir("qwen2_5_vl")), dtype="float32")
    with pytest.raises(BackboneError, match="vision-only"):
        full.release_input_embeddings()
