"""Tiny random backbones built offline, for every family (SPEC §2) — for tests, the demo and users.

:func:`build_tiny_backbone` makes a small random model of a family (a few vision blocks, a 2-layer LLM,
small widths; the family's adapter says how, through its ``tiny_model`` / ``tiny_special_tokens`` /
``tiny_processor_files`` classmethods) and a small byte-level BPE tokenizer trained on the fly with the
``tokenizers`` library on a built-in English corpus (anomaly and dialogue vocabulary: yes/no, colours,
directions, objects, the AHD prompt templates, the dialogue questions) plus the family's special tokens.
Nothing is downloaded. The same seed gives the same weights in any process.

With ``out_dir`` the model, tokenizer and processor files are saved (atomically: a half-written folder never
appears under the final name) and loaded back through :func:`~tvau_lightning.backbones.load_backbone`, so the
real loading path is exercised. ``tvau make-tiny-backbone --family qwen2_5_vl --out DIR`` does the same from
the shell.

Tiny models use a small patch size (Qwen2.5-VL: 4 px instead of 14, so frames must be multiples of
4 × 2 = 8 px and a 64×96 frame gives a 16×24 feature grid); see each family's ``tiny_model``.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from tvau_lightning.atomic import atomic_directory
from tvau_lightning.backbones.base import (
    BackboneAdapter,
    BackboneConfig,
    BackboneError,
    load_backbone,
    registered_model_types,
)

__all__ = [
    "TINY_VOCAB_SIZE",
    "adapter_class_for_family",
    "build_tiny_backbone",
    "make_tiny_backbone_main",
    "tiny_corpus",
    "tiny_families",
    "train_tiny_tokenizer",
]

#: target vocabulary of the tiny BPE tokenizers (256 byte symbols + merges + special tokens)
TINY_VOCAB_SIZE = 1024


# --------------------------------------------------------------------------------------------------
# The corpus and the tokenizer
# --------------------------------------------------------------------------------------------------

_COLOURS = ("red", "blue", "green", "yellow", "black", "white", "grey", "orange", "purple", "brown", "pink", "dark")
_OBJECTS = (
    "person", "man", "woman", "child", "people", "car", "truck", "bicycle", "motorcycle", "skateboard", "bag",
    "backpack", "dog", "ball", "umbrella", "stroller", "scooter", "van", "bus", "cart",
)
_GARMENTS = ("coat", "jacket", "shirt", "dress", "hoodie", "trousers", "hat", "skirt")
_ACTIONS = (
    "running", "jumping", "falling", "fighting", "dancing", "walking", "stealing", "jaywalking", "riding",
    "throwing an object", "chasing someone", "lying on the ground", "loitering", "crawling", "driving",
)
_DIRECTIONS = (
    "left", "right", "top", "bottom", "center", "top left", "top right", "bottom left", "bottom right",
    "upper", "lower", "middle",
)
_EVENTS = (
    "anomaly", "abnormal event", "person running", "person jumping", "person falling", "people fighting",
    "car accident", "vehicle in a pedestrian area", "car driving on the sidewalk", "fire", "smoke",
    "person riding a bicycle", "person riding a skateboard", "person throwing an object",
)
_QUESTIONS = (
    "Is there any anomaly in this video?",
    "Is there an abnormal event in the video? Answer yes or no.",
    "Describe the appearance of the abnormal target.",
    "What does the anomalous object look like?",
    "Describe the trajectory of the abnormal target.",
    "Where does it move, and how fast?",
    "When does the anomaly start and end?",
    "Give the temporal anchors of the anomaly.",
    "What happens in this surveillance clip?",
)


def tiny_corpus() -> list[str]:
    """The built-in English training text of the tiny tokenizers (deterministic, a few thousand lines)."""
    lines: list[str] = list(_QUESTIONS)
    lines += ["Yes.", "No.", "yes", "no", "Yes, there is an anomaly.", "No, the video is normal.", "unknown"]
    # words of the families' chat markup (the special tokens themselves are never BPE-merged)
    lines += ["system", "user", "assistant", "USER:", "ASSISTANT:", "You are a helpful assistant.",
              "Answer the questions.", "Frame1: Frame2: Frame3: Frame4:", "A chat between a curious human and an "
              "artificial intelligence assistant."]
    for event in _EVENTS:
        for phrase in ("{}", "surveillance video of {}", "a camera recording of {}"):
            p = phrase.format(event)
            lines += [
                f"a short surveillance clip where {p} occurs",
                f"a surveillance video in which {p} happens",
                f"an abnormal scene with {p}",
                f"a short surveillance clip where {p} not occurs",
                f"a short surveillance clip without {p}",
                f"a normal scene without {p}",
            ]
    for i, colour in enumerate(_COLOURS):
        for j, obj in enumerate(_OBJECTS):
            garment = _GARMENTS[(i + j) % len(_GARMENTS)]
            action = _ACTIONS[(i * 3 + j) % len(_ACTIONS)]
            a, b = _DIRECTIONS[(i + j) % len(_DIRECTIONS)], _DIRECTIONS[(2 * i + j + 1) % len(_DIRECTIONS)]
            lines += [
                f"A {obj} in a {colour} {garment} is {action}.",
                f"The {colour} {obj} moves from the {a} to the {b} of the frame, quickly.",
                f"The {obj} enters at the {a}, stops in the {b} region and leaves slowly.",
            ]
    for start in range(0, 96, 7):
        lines.append(f"The anomaly starts at frame {start} and ends at frame {start + 23}, "
                     f"from {start / 30:.1f} to {(start + 23) / 30:.1f} seconds.")
    lines += [str(n) for n in range(100)]
    return lines


def train_tiny_tokenizer(
    special_tokens: dict[str, Any], *, vocab_size: int = TINY_VOCAB_SIZE, corpus: Sequence[str] | None = None
) -> Any:
    """A byte-level BPE tokenizer trained on :func:`tiny_corpus`, wrapped as a ``PreTrainedTokenizerFast``.

    Args:
        special_tokens: a family's :meth:`~BackboneAdapter.tiny_special_tokens`: ``bos_token`` /
            ``eos_token`` / ``unk_token`` / ``pad_token`` (those it has) and ``additional_special_tokens``.
            Every special token gets one of the first ids (named tokens first, then the others, in order).
        vocab_size: target vocabulary size (byte alphabet + merges + special tokens).
        corpus: training text instead of :func:`tiny_corpus`.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    spec = dict(special_tokens)
    named = {k: spec.pop(k) for k in ("bos_token", "eos_token", "unk_token", "pad_token") if spec.get(k)}
    extra = list(spec.pop("additional_special_tokens", []))
    if spec:
        raise ValueError(f"unknown tiny tokenizer settings {sorted(spec)}")
    ordered = list(dict.fromkeys([*named.values(), *extra]))

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=ordered,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus) if corpus is not None else tiny_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        **named,
        extra_special_tokens=[t for t in ordered if t not in named.values()],
        clean_up_tokenization_spaces=False,
    )


# --------------------------------------------------------------------------------------------------
# Families and the builder
# --------------------------------------------------------------------------------------------------


def tiny_families() -> list[str]:
    """Families (``BackboneAdapter.family``) that can build a tiny model."""
    families = set()
    for cls in registered_model_types().values():
        if cls.tiny_config.__func__ is not BackboneAdapter.tiny_config.__func__:  # type: ignore[attr-defined]
            families.add(cls.family)
    return sorted(families)


def adapter_class_for_family(family: str) -> type[BackboneAdapter]:
    """The registered adapter class whose ``family`` is ``family``."""
    for cls in registered_model_types().values():
        if cls.family == family:
            return cls
    known = sorted({c.family for c in registered_model_types().values()})
    raise BackboneError(f"unknown backbone family {family!r}; known families: {', '.join(known)}")


def build_tiny_backbone(
    family: str, out_dir: str | os.PathLike[str] | None = None, *, seed: int = 0, **overrides: Any
) -> BackboneAdapter:
    """A tiny random backbone of ``family`` (fp32, CPU), deterministic for a given ``seed``.

    Args:
        family: an adapter's ``family`` (``qwen2_5_vl``, …; see :func:`tiny_families`).
        out_dir: if given, save a self-contained Hugging Face folder there (replacing an existing one) and
            return the adapter loaded back from it with :func:`load_backbone`; else build it in memory.
        seed: weight initialisation seed (the tokenizer does not depend on it).
        overrides: the family's tiny settings to change (e.g. ``vision_depth=2``); see its ``tiny_model``.
    """
    cls = adapter_class_for_family(family)
    tokenizer = train_tiny_tokenizer(cls.tiny_special_tokens())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls.tiny_model(seed, tokenizer, **overrides)
    model = model.float().eval()
    if out_dir is None:
        config = BackboneConfig(path=f"<tiny {family} seed={seed}>", dtype="float32")
        return cls(model, tokenizer, config, vision_only=False)

    out_dir = Path(out_dir)
    extra_files = cls.tiny_processor_files(model)
    with atomic_directory(out_dir) as tmp:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        for name, content in extra_files.items():
            (tmp / name).write_text(json.dumps(content, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return load_backbone(BackboneConfig(path=str(out_dir), dtype="float32"))


# --------------------------------------------------------------------------------------------------
# tvau make-tiny-backbone
# --------------------------------------------------------------------------------------------------


def make_tiny_backbone_main(argv: Sequence[str] | None = None) -> int:
    """``tvau make-tiny-backbone --family qwen2_5_vl --out DIR [--seed 0]``: write a tiny random model folder."""
    families = tiny_families()
    parser = argparse.ArgumentParser(
        prog="tvau make-tiny-backbone",
        description="Write a tiny random backbone (model + tokenizer, built offline) that load_backbone loads; "
        "for demos and tests, not for real results.",
    )
    parser.add_argument("--family", required=True, choices=families, help="backbone family")
    parser.add_argument("--out", required=True, type=Path, help="output folder (replaced if it exists)")
    parser.add_argument("--seed", type=int, default=0, help="weight initialisation seed (default 0)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        adapter = build_tiny_backbone(args.family, args.out, seed=args.seed)
    except BackboneError as err:
        print(f"tvau make-tiny-backbone: {err}")
        return 1
    print(f"wrote {args.out}: {adapter.describe()}")
    return 0
