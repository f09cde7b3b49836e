"""The adapter contract (backbones/base.py, dialogue.py, lora.py), checked on every family in ``conftest.FAMILIES``.

Each test that takes ``family`` runs once per family on its tiny random backbone (saved once per session).
Expectations are computed independently: embedding rows looked up by hand, per-sample runs against batched
runs, a greedy loop of full forwards against ``generate``, logits before and after LoRA save/load/merge.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from tvau_lightning.backbones.base import default_layers
from tvau_lightning.backbones.dialogue import IGNORE_INDEX
from tvau_lightning.backbones.lora import LoRASettings
from tvau_lightning.backbones.registry import load_backbone
from tvau_lightning.backbones.types import BackboneConfig, BackboneError, ContextOverflowError
from tvau_lightning.data.dialogue_schema import Turn

DIALOGUES = [
    [Turn("user", "Is there any anomaly in this video?"), Turn("assistant", "Yes.", "yesno"),
     Turn("user", "Describe the abnormal target."), Turn("assistant", "A person in a red coat.", "target")],
    [Turn("user", "Is there any anomaly?"), Turn("assistant", "No.", "yesno")],
]
QUESTIONS = [
    [Turn("user", "Is there any anomaly in this video?")],
    [Turn("user", "Is there any anomaly?"), Turn("assistant", "No.", "yesno"), Turn("user", "Where does it move?")],
]
NUM_FRAMES = 4
NUM_PROMPTS = 3


def _encode(adapter, frames):
    video = adapter.preprocess_video(frames)
    return video, adapter.encode_video(video, [1]).visual_tokens


def _prompts(adapter, batch: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, NUM_PROMPTS, adapter.text_hidden_size, generator=g)


def _logits(adapter, dialogues, frames, prompts, padding_side="right"):
    video, tokens = _encode(adapter, frames)
    inputs = adapter.build_dialogue_inputs(dialogues, video=video, num_prompt_tokens=NUM_PROMPTS,
                                           padding_side=padding_side)
    with torch.no_grad():
        loss, logits = adapter.forward_dialogue(inputs, adapter.embed_dialogue(inputs, tokens, prompts))
    return inputs, loss, logits


# ------------------------------------------------------------------------------------------------- loading


def test_default_layers_follow_the_paper():
    assert default_layers(32) == [1, 8, 16, 32]
    assert default_layers(24) == [1, 6, 12, 24]
    assert default_layers(4) == [1, 2, 4]


def test_loading_errors_name_the_folder(family, tiny_backbone_dir, tmp_path):
    with pytest.raises(BackboneError, match="model folder not found"):
        load_backbone(str(tmp_path / "nowhere"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BackboneError, match="has no config.json"):
        load_backbone(str(empty))
    broken = tmp_path / "broken"
    shutil.copytree(tiny_backbone_dir(family), broken)
    cfg = json.loads((broken / "config.json").read_text())
    cfg["model_type"] = "bert"
    (broken / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(BackboneError, match=r"unsupported model family 'bert'; supported: .*" + family):
        load_backbone(str(broken))
    (broken / "config.json").write_text("{not json")
    with pytest.raises(BackboneError, match="not valid JSON"):
        load_backbone(str(broken))


def test_vision_only_has_no_decoder_layers_and_the_same_vision(family, load_tiny, frame_size, make_clips):
    full, vision = load_tiny(family), load_tiny(family, vision_only=True)
    assert not any(".layers." in n and "language_model" in n for n, _ in vision.model.named_parameters())
    assert not any(n.startswith("lm_head") for n, _ in vision.model.named_parameters())
    assert sum(p.numel() for p in vision.model.parameters()) < sum(p.numel() for p in full.model.parameters())
    video = full.preprocess_video(make_clips(1, NUM_FRAMES, frame_size))
    a, b = full.encode_video(video), vision.encode_video(video)
    assert sorted(a.layer_features) == sorted(b.layer_features) == full.default_layers
    for layer in a.layer_features:
        assert torch.equal(a.layer_features[layer], b.layer_features[layer])
    assert torch.equal(a.visual_tokens, b.visual_tokens)
    for call in (lambda: vision.forward_dialogue(None, None), lambda: vision.apply_lora(LoRASettings()),
                 lambda: vision.embed_text(["a"], mode="hidden_states")):
        with pytest.raises(BackboneError, match="vision_only=True"):
            call()


# ------------------------------------------------------------------------------------------------- vision


def test_encode_video_returns_the_requested_layers(family, load_tiny, frame_size, make_clips):
    adapter = load_tiny(family, vision_only=True)
    frames = make_clips(2, NUM_FRAMES, frame_size)
    video = adapter.preprocess_video(frames)
    grid = adapter.feature_grid(NUM_FRAMES, frame_size)
    assert video.grid == grid and video.batch_size == 2
    layers = [adapter.num_vision_layers, 1]
    out = adapter.encode_video(video, layers, visual_tokens=False)
    assert sorted(out.layer_features) == sorted(layers) and out.visual_tokens is None
    for feat in out.layer_features.values():
        assert feat.shape == (2, *grid, adapter.vision_hidden_size)
    out = adapter.encode_video(video, [1])
    assert out.visual_tokens.shape == (2, adapter.num_visual_tokens(video), adapter.text_hidden_size)
    with pytest.raises(BackboneError, match="out of range"):
        adapter.encode_video(video, [adapter.num_vision_layers + 1])


# ------------------------------------------------------------------------------------------------- text


def test_embed_text_modes(family, load_tiny):
    adapter = load_tiny(family)
    sentences = ["a short surveillance clip where a person running occurs", "a normal scene without fire"]
    emb = adapter.embed_text(sentences)
    assert emb.shape == (2, adapter.text_hidden_size)
    table = adapter.get_input_embeddings().weight
    for row, sentence in zip(emb, sentences):
        ids = adapter.tokenizer(sentence, add_special_tokens=False)["input_ids"]
        torch.testing.assert_close(row, table[ids].mean(0))
    hidden = adapter.embed_text(sentences, mode="hidden_states")
    assert hidden.shape == emb.shape and not torch.allclose(hidden, emb)
    # padding never leaks into the pooled vector: a sentence alone equals its row in a batch
    torch.testing.assert_close(adapter.embed_text(sentences[1:], mode="hidden_states")[0], hidden[1], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="unknown embed_text mode"):
        adapter.embed_text(sentences, mode="cls")


# ------------------------------------------------------------------------------------------------- dialogue


def test_labels_cover_assistant_answers_and_their_end_of_turn_only(family, load_tiny, frame_size, make_clips):
    adapter = load_tiny(family)
    video = adapter.preprocess_video(make_clips(2, NUM_FRAMES, frame_size))
    inputs = adapter.build_dialogue_inputs(DIALOGUES, video=video, num_prompt_tokens=NUM_PROMPTS)
    fmt = adapter.chat_format
    end_of_turn = adapter.tokenizer(fmt.assistant_suffix, add_special_tokens=False)["input_ids"][:1]
    for row, turns in enumerate(DIALOGUES):
        expected = []
        for turn in turns:
            if turn.role == "assistant":  # the answer and its end-of-turn token; the space before the answer
                # only where the tokenizer merges it into the answer's first word
                ids = adapter.tokenizer(fmt.answer_separator + turn.content, add_special_tokens=False)["input_ids"]
                if fmt.answer_separator and not adapter.tokenizer.decode(ids[:1]).strip():
                    ids = ids[1:]
                expected += ids + end_of_turn
        labelled = inputs.labels[row][inputs.labels[row] != IGNORE_INDEX]
        assert labelled.tolist() == expected
        assert torch.equal(labelled, inputs.input_ids[row][inputs.labels[row] != IGNORE_INDEX])
    assert int(inputs.visual_mask.sum()) == 2 * adapter.num_visual_tokens(video)
    assert inputs.prompt_mask.sum(1).tolist() == [NUM_PROMPTS, NUM_PROMPTS]
    assert not bool((inputs.labels[inputs.visual_mask | inputs.prompt_mask] != IGNORE_INDEX).any())


def test_padding_sides(family, load_tiny, frame_size, make_clips):
    adapter = load_tiny(family)
    video = adapter.preprocess_video(make_clips(2, NUM_FRAMES, frame_size))
    right = adapter.build_dialogue_inputs(DIALOGUES, video=video)
    left = adapter.build_dialogue_inputs(QUESTIONS, video=video, add_generation_prompt=True, padding_side="left")
    lengths = right.attention_mask.sum(1)
    assert lengths[0] > lengths[1]
    assert right.attention_mask[1, : lengths[1]].all() and not right.attention_mask[1, lengths[1]:].any()
    short = int(left.attention_mask.sum(1).min())
    row = int(left.attention_mask.sum(1).argmin())
    assert left.attention_mask[row, -short:].all() and not left.attention_mask[row, :-short].any()
    header = adapter.tokenizer(adapter.chat_format.assistant_prefix, add_special_tokens=False)["input_ids"]
    if header:  # the prompt ends with the assistant header (Mistral's is empty: "[/INST]" closes the user turn)
        assert left.input_ids[:, -len(header):].tolist() == [header, header]
    with pytest.raises(ValueError, match="end with a user turn"):
        adapter.build_dialogue_inputs(DIALOGUES, video=video, add_generation_prompt=True, padding_side="left")


def test_batched_loss_and_logits_equal_per_sample(family, load_tiny, frame_size, make_clips):
    adapter = load_tiny(family)
    frames, prompts = make_clips(2, NUM_FRAMES, frame_size, seed=1), _prompts(adapter, 2)
    inputs, loss, logits = _logits(adapter, DIALOGUES, frames, prompts)
    total, count = 0.0, 0
    for b in range(2):
        single, single_loss, single_logits = _logits(adapter, DIALOGUES[b:b + 1], frames[b:b + 1], prompts[b:b + 1])
        n = int(single.attention_mask.sum())
        torch.testing.assert_close(logits[b, :n], single_logits[0], atol=1e-4, rtol=0)
        labelled = int((single.labels[0, 1:] != IGNORE_INDEX).sum())
        total, count = total + float(single_loss) * labelled, count + labelled
    assert float(loss) == pytest.approx(total / count, abs=1e-5)


def test_prompt_slots_are_filled_from_the_given_tensor(family, load_tiny, frame_size, make_clips):
    adapter = load_tiny(family)
    frames = make_clips(2, NUM_FRAMES, frame_size, seed=2)
    video, tokens = _encode(adapter, frames)
    inputs = adapter.build_dialogue_inputs(DIALOGUES, video=video, num_prompt_tokens=NUM_PROMPTS)
    prompts = _prompts(adapter, 2, seed=3)
    embeds = adapter.embed_dialogue(inputs, tokens, prompts)
    torch.testing.assert_close(embeds[inputs.prompt_mask], prompts.reshape(-1, prompts.shape[-1]))
    torch.testing.assert_close(embeds[inputs.visual_mask], tokens.reshape(-1, tokens.shape[-1]))
    _, _, a = _logits(adapter, DIALOGUES, frames, prompts)
    _, _, b = _logits(adapter, DIALOGUES, frames, prompts + 1.0)
    assert (a - b).abs().max() > 1e-3
    with pytest.raises(ValueError, match="prompt_embeds"):
        adapter.embed_dialogue(inputs, tokens, prompts[:, :2])


def test_context_overflow(family, load_tiny, frame_size, make_clips):
    adapter = load_tiny(family)
    video = adapter.preprocess_video(make_clips(2, NUM_FRAMES, frame_size))
    needed = int(adapter.build_dialogue_inputs(DIALOGUES, video=video).attention_mask.sum(1).max())
    adapter.build_dialogue_inputs(DIALOGUES, video=video, max_length=needed)
    with pytest.raises(ContextOverflowError, match=rf"needs {needed} tokens .* limit is {needed - 1}"):
        adapter.build_dialogue_inputs(DIALOGUES, video=video, max_length=needed - 1)


def _greedy_by_full_forwards(adapter, inputs, embeds, steps: int) -> list[list[int]]:
    """Greedy decoding with one full (uncached) forward per step: positions recomputed from scratch."""
    eos = set(adapter.generation_eos_token_ids())
    table = adapter.get_input_embeddings()
    out = [[] for _ in range(inputs.input_ids.shape[0])]
    done = [False] * len(out)
    for _ in range(steps):
        with torch.no_grad():
            _, logits = adapter.forward_dialogue(inputs, embeds, compute_loss=False)
        nxt = logits[:, -1].argmax(-1)
        for b, t in enumerate(nxt.tolist()):
            if not done[b]:
                if t in eos:
                    done[b] = True
                else:
                    out[b].append(t)
        if all(done):
            break
        col = nxt.view(-1, 1)
        zeros = torch.zeros_like(col, dtype=torch.bool)
        inputs = type(inputs)(
            input_ids=torch.cat([inputs.input_ids, col], 1),
            attention_mask=torch.cat([inputs.attention_mask, torch.ones_like(col)], 1),
            labels=torch.cat([inputs.labels, torch.full_like(col, IGNORE_INDEX)], 1),
            visual_mask=torch.cat([inputs.visual_mask, zeros], 1),
            prompt_mask=torch.cat([inputs.prompt_mask, zeros], 1),
            token_type_ids=torch.cat([inputs.token_type_ids, torch.zeros_like(col)], 1),
            padding_side=inputs.padding_side,
            video=inputs.video,
        )
        embeds = torch.cat([embeds, table(col)], 1)
    return out


def test_generate_left_padded_batch_equals_per_sample_and_full_forwards(family, load_tiny, frame_size, make_clips):
    adapter = load_tiny(family)
    frames, prompts = make_clips(2, NUM_FRAMES, frame_size, seed=4), _prompts(adapter, 2, seed=5)
    video, tokens = _encode(adapter, frames)
    inputs = adapter.build_dialogue_inputs(QUESTIONS, video=video, num_prompt_tokens=NUM_PROMPTS,
                                           add_generation_prompt=True, padding_side="left")
    embeds = adapter.embed_dialogue(inputs, tokens, prompts)
    batched = adapter.generate(inputs, embeds, max_new_tokens=6)
    expected_ids = _greedy_by_full_forwards(adapter, inputs, embeds, steps=6)
    assert all(len(ids) >= 2 for ids in expected_ids)  # several decoding steps are compared, not just eos
    assert batched == [adapter.tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in expected_ids]
    for b in range(2):
        v, t = _encode(adapter, frames[b:b + 1])
        single = adapter.build_dialogue_inputs(QUESTIONS[b:b + 1], video=v, num_prompt_tokens=NUM_PROMPTS,
                                               add_generation_prompt=True, padding_side="left")
        assert adapter.generate(single, adapter.embed_dialogue(single, t, prompts[b:b + 1]), max_new_tokens=6) == [
            batched[b]
        ]
    with pytest.raises(ValueError, match="padding_side='left'"):
        right = adapter.build_dialogue_inputs(QUESTIONS, video=video, add_generation_prompt=True)
        adapter.generate(right, adapter.embed_dialogue(right, tokens))


# ------------------------------------------------------------------------------------------------- LoRA


def _randomise_lora(adapter, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in adapter.model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def test_lora_targets_language_attention_only(family, load_tiny):
    adapter = load_tiny(family)
    adapter.apply_lora(LoRASettings(rank=4, alpha=8, dropout=0.0))
    trainable = [n for n, p in adapter.model.named_parameters() if p.requires_grad]
    n_layers = adapter.num_language_layers
    assert len(trainable) == n_layers * 2 * 2  # q_proj, v_proj × lora_A, lora_B
    assert all("lora_" in n and ("q_proj" in n or "v_proj" in n) for n in trainable)
    vision_ids = {id(p) for m in adapter.vision_modules() for p in m.parameters()}
    assert not any(p.requires_grad for p in adapter.model.parameters() if id(p) in vision_ids)
    assert not any("lora_" in n for m in adapter.vision_modules() for n, _ in m.named_parameters())

    last = load_tiny(family)
    last.apply_lora(LoRASettings(rank=4, alpha=8, dropout=0.0, last_n_layers=1))
    names = [n for n, p in last.model.named_parameters() if p.requires_grad]
    assert len(names) == 4 and all(f"layers.{n_layers - 1}." in n for n in names)
    with pytest.raises(BackboneError, match="last_n_layers=9"):
        load_tiny(family).apply_lora(LoRASettings(last_n_layers=9))


def test_lora_save_load_merge_and_save_pretrained(family, load_tiny, frame_size, make_clips, tmp_path):
    frames, prompts = make_clips(2, NUM_FRAMES, frame_size, seed=6), _prompts(adapter := load_tiny(family), 2)
    _, _, plain = _logits(adapter, DIALOGUES, frames, prompts)
    adapter.apply_lora(LoRASettings(rank=4, alpha=8, dropout=0.0))
    _randomise_lora(adapter)
    _, _, tuned = _logits(adapter, DIALOGUES, frames, prompts)
    assert (tuned - plain).abs().max() > 1e-3
    adapter.save_lora(tmp_path / "lora")
    assert (tmp_path / "lora" / "adapter_model.safetensors").is_file()
    assert set(adapter.lora_state_dict()) and all("lora_" in k for k in adapter.lora_state_dict())

    reloaded = load_tiny(family)
    reloaded.load_lora(tmp_path / "lora")
    _, _, again = _logits(reloaded, DIALOGUES, frames, prompts)
    torch.testing.assert_close(again, tuned, atol=1e-5, rtol=0)

    adapter.merge_lora()
    assert not adapter.has_lora and not any("lora_" in n for n, _ in adapter.model.named_parameters())
    _, _, merged = _logits(adapter, DIALOGUES, frames, prompts)
    torch.testing.assert_close(merged, tuned, atol=1e-4, rtol=0)
    saved = adapter.save_pretrained(tmp_path / "merged")
    loaded = load_backbone(BackboneConfig(path=str(saved), dtype="float32"))
    assert type(loaded) is type(adapter)
    _, _, from_disk = _logits(loaded, DIALOGUES, frames, prompts)
    torch.testing.assert_close(from_disk, merged, atol=1e-6, rtol=0)
