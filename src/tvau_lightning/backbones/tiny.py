"""Tiny random backbones built offline, for every family (SPEC §2) — for tests, the demo and users.

:func:`build_tiny_backbone` makes a small random model of a family (a few vision blocks, a 2-layer LLM,
small widths; the family's adapter says how, through the :class:`TinyHooks` classmethods it overrides:
``tiny_special_tokens`` / ``tiny_config`` / ``tiny_model`` / ``tiny_processor_files``) and a small
byte-level BPE tokenizer trained on the fly with the ``tokenizers`` library on a built-in English corpus
(anomaly and dialogue vocabulary: yes/no, colours, directions, objects, the AHD prompt templates, the
dialogue questions) plus the family's special tokens.
Nothing is downloaded. The same seed gives the same weights in any process.

With ``out_dir`` the model, tokenizer and processor files are saved (atomically: a half-written folder never
appears under the final name) and loaded back through :func:`~tvau_lightning.backbones.registry.load_backbone`, so the
real loading path is exercised. ``tvau make-tiny-backbone --family qwen2_5_vl --out DIR`` does the same from
the shell.

Tiny models use a small patch size (Qwen2.5-VL: 4 px instead of 14, so frames must be multiples of
4 × 2 = 8 px and a 64×96 frame gives a 16×24 feature grid); see each family's ``tiny_model``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from tvau_lightning.atomic import atomic_directory
from tvau_lightning.backbones.base import BackboneAdapter
from tvau_lightning.backbones.registry import load_backbone, registered_model_types
from tvau_lightning.backbones.types import BackboneConfig, BackboneError

__all__ = [
    "TINY_SHARED_SETTINGS",
    "TINY_VOCAB_SIZE",
    "TinyHooks",
    "adapter_class_for_family",
    "build_tiny_backbone",
    "tiny_corpus",
    "tiny_families",
    "tiny_settings",
    "tiny_text_config",
    "train_tiny_tokenizer",
]

#: target vocabulary of the tiny BPE tokenizers (256 byte symbols + merges + special tokens)
TINY_VOCAB_SIZE = 1024


# --------------------------------------------------------------------------------------------------
# The hooks a family implements
# --------------------------------------------------------------------------------------------------

#: tiny-model sizes every family shares (vision and text widths, depth of the 2-layer LLM, …); each family's
#: ``TINY_*_SETTINGS`` adds its own keys (patch size, window, image size) on top
TINY_SHARED_SETTINGS: dict[str, Any] = {
    "vision_hidden_size": 32,
    "vision_heads": 2,
    "vision_intermediate_size": 64,
    "text_hidden_size": 64,
    "text_layers": 2,
    "text_heads": 4,
    "text_kv_heads": 2,
    "text_intermediate_size": 128,
    "max_position_embeddings": 4096,
    "initializer_range": 0.1,  # larger than the usual 0.02 so greedy decoding has clear winners
}


def tiny_settings(family: str, defaults: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A family's tiny settings with ``overrides`` applied; an unknown override key raises TypeError."""
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise TypeError(f"unknown tiny {family} settings {unknown}; known: {sorted(defaults)}")
    return {**defaults, **overrides}


def tiny_text_config(settings: dict[str, Any], tokenizer: Any) -> dict[str, Any]:
    """The language-model config entries every family's tiny model shares: widths, depth, heads, context and
    init from ``settings`` (the :data:`TINY_SHARED_SETTINGS` keys), the vocabulary size from ``tokenizer``; the
    family adds its model type and special-token ids."""
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": settings["text_hidden_size"],
        "intermediate_size": settings["text_intermediate_size"],
        "num_hidden_layers": settings["text_layers"],
        "num_attention_heads": settings["text_heads"],
        "num_key_value_heads": settings["text_kv_heads"],
        "max_position_embeddings": settings["max_position_embeddings"],
        "initializer_range": settings["initializer_range"],
    }


def _no_tiny_model(cls: type) -> BackboneError:
    return BackboneError(f"{cls.__name__} ({cls.family}) has no tiny model; implement tiny_special_tokens and "
                         "tiny_config to use build_tiny_backbone with it (see backbones/tiny.py)")


class TinyHooks:
    """How a family builds its tiny random model: a base of the family's adapter class (next to
    :class:`~tvau_lightning.backbones.base.BackboneAdapter`), whose classmethods the family overrides."""

    family: ClassVar[str]

    @classmethod
    def tiny_special_tokens(cls) -> dict[str, Any]:
        """Keyword arguments of the family's tiny tokenizer: the named tokens it has (``bos_token``,
        ``eos_token``, ``unk_token``, ``pad_token``) and ``additional_special_tokens`` (every special token,
        named ones included, in a fixed order: they get the first ids of the vocabulary)."""
        raise _no_tiny_model(cls)

    @classmethod
    def tiny_config(cls, tokenizer: Any, **overrides: Any) -> Any:
        """The Hugging Face config of a tiny random model of the family (a few vision blocks, a 2-layer LLM,
        small widths) whose special-token ids come from ``tokenizer``; unknown ``overrides`` raise TypeError."""
        raise _no_tiny_model(cls)

    @classmethod
    def tiny_model(cls, seed: int, tokenizer: Any, **overrides: Any) -> nn.Module:
        """A tiny random model from :meth:`tiny_config` (called under ``torch.manual_seed(seed)``)."""
        from transformers import AutoModelForImageTextToText

        return AutoModelForImageTextToText.from_config(cls.tiny_config(tokenizer, **overrides))

    @classmethod
    def tiny_processor_files(cls, model: nn.Module) -> dict[str, dict[str, Any]]:
        """Extra JSON files (``preprocessor_config.json`` …) saved beside a tiny model; name → content."""
        return {}



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
    return sorted({cls.family for cls in registered_model_types().values() if _has_tiny_model(cls)})


def _has_tiny_model(cls: type) -> bool:
    """Whether ``cls`` has :class:`TinyHooks` and overrides its ``tiny_config``."""
    if not issubclass(cls, TinyHooks):
        return False
    return cls.tiny_config.__func__ is not TinyHooks.tiny_config.__func__  # type: ignore[attr-defined]


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
    if not issubclass(cls, TinyHooks):
        raise _no_tiny_model(cls)
    tokenizer = train_tiny_tokenizer(cls.tiny_special_tokens())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls.tiny_model(seed, tokenizer, **overrides)
    model = model.float().eval()
    config = BackboneConfig(path=f"<tiny {family} seed={seed}>", dtype="float32")
    adapter = cls(model, tokenizer, config, vision_only=False)
    # the family's chat markup as the tokenizer's chat template, as real checkpoints ship one
    tokenizer.chat_template = adapter.chat_format.jinja()
    if out_dir is None:
        return adapter

    out_dir = Path(out_dir)
    extra_files = cls.tiny_processor_files(model)
    with atomic_directory(out_dir, overwrite=True) as tmp:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        for name, content in extra_files.items():
            (tmp / name).write_text(json.dumps(content, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return load_backbone(BackboneConfig(path=str(out_dir), dtype="float32"))


# --------------------------------------------------------------------------------------------------
# tvau make-tiny-backbone
# --------------------------------------------------------------------------------------------------
