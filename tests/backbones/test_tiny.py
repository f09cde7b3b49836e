"""Offline tiny backbones (backbones/tiny.py): determinism, the trained tokenizer, overrides, the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tvau_lightning.backbones import registry
from tvau_lightning.backbones.base import BackboneAdapter
from tvau_lightning.backbones.registry import load_backbone
from tvau_lightning.backbones.tiny import (
    TinyHooks,
    build_tiny_backbone,
    tiny_corpus,
    tiny_families,
    train_tiny_tokenizer,
)
from tvau_lightning.backbones.types import BackboneError
from tvau_lightning.cli import main


def _weights(adapter) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in adapter.model.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_every_family_has_a_tiny_model(family):
    assert family in tiny_families()


def test_same_seed_same_model_in_memory_and_on_disk(family, tmp_path):
    first = build_tiny_backbone(family, tmp_path / "a", seed=0)
    second = build_tiny_backbone(family, tmp_path / "b", seed=0)
    in_memory = build_tiny_backbone(family, seed=0)
    assert _same(_weights(first), _weights(second)) and _same(_weights(first), _weights(in_memory))
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (tmp_path / "b" / "tokenizer.json").read_bytes()
    assert first.tokenizer.get_vocab() == in_memory.tokenizer.get_vocab()
    other = build_tiny_backbone(family, seed=1)
    assert not _same(_weights(first), _weights(other))
    assert type(first).family == family and not first.vision_only


def test_same_seed_same_weights_in_another_process(tmp_path):
    here = tmp_path / "here"
    build_tiny_backbone("qwen2_5_vl", here, seed=3)
    there = tmp_path / "there"
    code = f"from tvau_lightning.backbones.tiny import build_tiny_backbone; build_tiny_backbone('qwen2_5_vl', {str(there)!r}, seed=3)"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=300)
    a, b = load_file(str(here / "model.safetensors")), load_file(str(there / "model.safetensors"))
    assert _same(a, b)
    assert (here / "tokenizer.json").read_bytes() == (there / "tokenizer.json").read_bytes()


def test_tokenizer_keeps_special_tokens_whole_and_round_trips_text(family):
    adapter = build_tiny_backbone(family, seed=0)
    tok = adapter.tokenizer
    spec = type(adapter).tiny_special_tokens()
    specials = list(dict.fromkeys(
        [spec[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token") if spec.get(k)]
        + list(spec["additional_special_tokens"])
    ))
    ids = [tok.convert_tokens_to_ids(t) for t in specials]
    assert sorted(ids) == list(range(len(specials)))  # the first ids, one each
    for t, i in zip(specials, ids):
        assert tok(t, add_special_tokens=False)["input_ids"] == [i]
    assert 256 < len(tok) <= 1024
    for sentence in tiny_corpus()[::97]:
        assert tok.decode(tok(sentence, add_special_tokens=False)["input_ids"]) == sentence
    # the corpus vocabulary is learnt: common words are single tokens
    for word in (" anomaly", " person", " red", " left"):
        assert len(tok(word, add_special_tokens=False)["input_ids"]) == 1
    assert adapter.get_input_embeddings().weight.shape[0] >= len(tok)


def test_tokenizer_spec_errors():
    with pytest.raises(ValueError, match="unknown tiny tokenizer settings"):
        train_tiny_tokenizer({"eos_token": "</s>", "sep_token": "<sep>"})


def test_qwen_overrides_and_errors():
    small = build_tiny_backbone("qwen2_5_vl", vision_depth=2, fullatt_block_indexes=[1], text_layers=1)
    assert small.num_vision_layers == 2 and small.num_language_layers == 1 and small.default_layers == [1, 2]
    with pytest.raises(TypeError, match="unknown tiny qwen2_5_vl settings"):
        build_tiny_backbone("qwen2_5_vl", vision_layers=2)
    with pytest.raises(BackboneError, match="unknown backbone family 'qwen3'"):
        build_tiny_backbone("qwen3")


@pytest.mark.parametrize("with_hooks", [False, True])
def test_a_registered_family_without_tiny_hooks_is_refused(monkeypatch, with_hooks):
    """A family that does not implement the tiny hooks (without ``TinyHooks`` in its bases, or with it but no
    ``tiny_config``) is not listed by tiny_families, and building it says what to implement."""
    bases = (TinyHooks, BackboneAdapter) if with_hooks else (BackboneAdapter,)
    cls = type("NoTinyAdapter", bases, {"family": "no_tiny", "model_types": ("no_tiny",)})  # never instantiated
    monkeypatch.setitem(registry._ADAPTERS, "no_tiny", cls)
    assert "no_tiny" not in tiny_families() and "qwen2_5_vl" in tiny_families()
    with pytest.raises(BackboneError, match=r"NoTinyAdapter \(no_tiny\) has no tiny model; implement tiny_special_tokens"):
        build_tiny_backbone("no_tiny")


def test_make_tiny_backbone_command_writes_a_loadable_folder(tmp_path, capsys):
    out = tmp_path / "tiny"
    assert main(["make-tiny-backbone", "--family", "qwen2_5_vl", "--out", str(out), "--seed", "2"]) == 0
    assert "wrote" in capsys.readouterr().out
    first = load_backbone(str(out), dtype="float32")
    assert _same(_weights(first), _weights(build_tiny_backbone("qwen2_5_vl", seed=2)))
    # writing again replaces the folder as a whole (no leftovers, nothing half-written beside it)
    (out / "stale.txt").write_text("old")
    assert main(["make-tiny-backbone", "--family", "qwen2_5_vl", "--out", str(out), "--seed", "5"]) == 0
    assert not (out / "stale.txt").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["tiny"]
    adapter = load_backbone(str(out), dtype="float32")
    assert _same(_weights(adapter), _weights(build_tiny_backbone("qwen2_5_vl", seed=5)))
    with pytest.raises(SystemExit):
        main(["make-tiny-backbone", "--family", "gpt2", "--out", str(out)])


def test_a_failed_build_leaves_the_previous_folder(tmp_path, monkeypatch):
    from tvau_lightning.backbones.qwen2_5_vl import Qwen2_5_VLAdapter

    out = tmp_path / "tiny"
    build_tiny_backbone("qwen2_5_vl", out, seed=0)
    before = (out / "model.safetensors").read_bytes()
    # fails after the model and tokenizer files are written, while the processor config is serialised
    monkeypatch.setattr(Qwen2_5_VLAdapter, "tiny_processor_files", classmethod(lambda cls, model: {"x.json": object}))
    with pytest.raises(TypeError, match="not JSON serializable"):
        build_tiny_backbone("qwen2_5_vl", out, seed=1)
    assert (out / "model.safetensors").read_bytes() == before
    assert [p.name for p in Path(tmp_path).iterdir()] == ["tiny"]
