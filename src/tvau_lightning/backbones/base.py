"""The backbone adapter contract (SPEC §2): one interface over Qwen2.5-VL, InternVL and LLaVA.

AHD and RAE code talks to an LVLM only through :class:`BackboneAdapter`; everything family-specific
(pixel layout, token order of intermediate vision features, chat format, which ids the language model
accepts, context limits) lives in the family's subclass. This module holds the vision and text contract and
the functions the families build it from (dtype, model folder, frame conversion); the adapter's other bases
hold the rest once: dialogue assembly, forward with labels and generation (:mod:`.dialogue`) and LoRA on
the language model only (:mod:`.lora`). Its value types and errors are in :mod:`.types`, loading by
``model_type`` in :mod:`.registry`, tiny random models in :mod:`.tiny`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from tvau_lightning.backbones.dialogue import DialogueMixin
from tvau_lightning.backbones.lora import LoRAMixin
from tvau_lightning.backbones.types import BackboneConfig, BackboneError, VideoInputs, VisionOutput

#: processor files of a model folder that hold pixel settings; :meth:`BackboneAdapter.save_pretrained` keeps them
PROCESSOR_FILES: tuple[str, ...] = (
    "preprocessor_config.json",
    "video_preprocessor_config.json",
    "processor_config.json",
    "chat_template.json",
    "chat_template.jinja",
)


# --------------------------------------------------------------------------------------------------
# Helpers shared by the families
# --------------------------------------------------------------------------------------------------


def default_layers(depth: int) -> list[int]:
    """Paper layers 1, 8, 16, 32 for a 32-block ViT; the same quarter spread for any other depth."""
    picks = {1, max(1, round(depth / 4)), max(1, round(depth / 2)), depth}
    return sorted(picks)


def resolve_dtype(name: str | torch.dtype, device: torch.device | str | None = None) -> torch.dtype:
    """``auto`` → bf16 on a CUDA device that supports it, else fp32."""
    if isinstance(name, torch.dtype):
        return name
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if name == "auto":
        dev = torch.device(device) if device is not None else None
        if (dev is None or dev.type == "cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if name not in table:
        raise BackboneError(f"unknown dtype {name!r}; use one of auto, {', '.join(table)}")
    return table[name]


def resolve_model_dir(path: str | os.PathLike[str], *, local_files_only: bool = True) -> Path:
    """A local model folder, or a hub id already in the local cache; a clear error otherwise."""
    p = Path(os.path.expanduser(str(path)))
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise BackboneError(
                f"{p} is a folder but has no config.json — point `path` at a Hugging Face model folder "
                "(the one that holds config.json, *.safetensors and the tokenizer files)"
            )
        return p
    looks_like_hub_id = re.fullmatch(r"[\w.\-]+/[\w.\-]+", str(path)) is not None
    if looks_like_hub_id:
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(str(path), local_files_only=local_files_only))
        except Exception as err:  # noqa: BLE001 - re-raised with advice
            raise BackboneError(
                f"model {path!r} is not a local folder and is not in the local Hugging Face cache ({err}). "
                f"Download it once where you have network access (`huggingface-cli download {path} "
                f"--local-dir /models/{Path(str(path)).name}`) and set `path` to that folder."
            ) from err
    raise BackboneError(f"model folder not found: {p} — set the backbone `path` to a local Hugging Face model folder")


def read_model_type(model_dir: Path) -> str:
    try:
        cfg = json.loads((model_dir / "config.json").read_text())
    except json.JSONDecodeError as err:
        raise BackboneError(f"{model_dir / 'config.json'} is not valid JSON ({err}); the model folder is broken") from err
    model_type = cfg.get("model_type")
    if not model_type:
        raise BackboneError(f"{model_dir / 'config.json'} has no 'model_type'; is this a Hugging Face model folder?")
    return str(model_type)


def resize_float_frames_bicubic(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize float frames ``(N, 3, H, W)`` with antialiased bicubic interpolation (plain torch); the
    families' resize to the tower's input size (uint8 ``(T, H, W, 3)`` clips are resized by
    :func:`tvau_lightning.data.transforms.resize_frames`)."""
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    return F.interpolate(frames, size=size, mode="bicubic", align_corners=False, antialias=True)


def frames_to_float(frames: torch.Tensor) -> torch.Tensor:
    """``(..., H, W, 3)`` uint8 → ``(..., 3, H, W)`` float32 in [0, 1]."""
    if frames.dtype != torch.uint8:
        raise BackboneError(f"expected uint8 frames (…, H, W, 3), got dtype {frames.dtype}")
    if frames.shape[-1] != 3:
        raise BackboneError(f"expected RGB frames with 3 channels last (…, H, W, 3), got shape {tuple(frames.shape)}")
    return frames.movedim(-1, -3).float().div_(255.0)


# --------------------------------------------------------------------------------------------------
# The adapter
# --------------------------------------------------------------------------------------------------


class BackboneAdapter(DialogueMixin, LoRAMixin, nn.Module, ABC):
    """A frozen (optionally LoRA-tuned) LVLM seen through one interface.

    Subclasses set :attr:`family` and :attr:`model_types`, implement the abstract hooks (here and in
    :class:`~tvau_lightning.backbones.dialogue.DialogueMixin`), and are registered with
    :func:`~tvau_lightning.backbones.registry.register_adapter`. The wrapped Hugging Face model is
    :attr:`model`; in ``vision_only`` mode its language model has no decoder layers and no LM head (only the
    input embedding table, for text prototypes), so a 7B LLM never sits in memory during stage 1.
    """

    family: ClassVar[str] = ""
    model_types: ClassVar[tuple[str, ...]] = ()
    #: frames merged into one temporal step of the vision grid (Qwen2.5-VL: 2, per-frame towers: 1)
    temporal_patch_size: ClassVar[int] = 1
    #: the ``BackboneConfig.vision_path`` values the family implements (``fast`` only where it has one)
    vision_paths: ClassVar[tuple[str, ...]] = ("stock",)

    def __init__(self, model: nn.Module, tokenizer: Any, config: BackboneConfig, *, vision_only: bool) -> None:
        super().__init__()
        self.check_vision_path(config)
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.vision_only = vision_only
        self._set_peft(None)

    # ---- loading ---------------------------------------------------------------------------------

    @classmethod
    @abstractmethod
    def from_pretrained(
        cls, config: BackboneConfig, *, vision_only: bool = False, device: torch.device | str | None = None
    ) -> BackboneAdapter:
        """Load from ``config.path`` (local folder or cached hub id). ``vision_only`` skips the LLM."""

    @classmethod
    def check_vision_path(cls, config: BackboneConfig) -> None:
        """Raise :class:`BackboneError` when ``config.vision_path`` / ``compile_vision`` ask for a vision path
        this family does not have (checked before any weight is read)."""
        if config.vision_path not in cls.vision_paths:
            raise BackboneError(
                f"vision_path {config.vision_path!r} is not available for the {cls.family or cls.__name__} backbone "
                f"({config.path}); it offers {', '.join(repr(p) for p in cls.vision_paths)}. Set `vision_path: stock` "
                "in the backbone config (the batched-windows `fast` path exists for Qwen2.5-VL only)"
            )
        if config.compile_vision and config.vision_path == "stock":
            raise BackboneError(
                f"compile_vision: true needs `vision_path: fast` ({config.path}); torch.compile of the stock "
                "towers is not wired (for Qwen2.5-VL it does not help: its per-window Python loop stays). Set "
                "`vision_path: fast` or `compile_vision: false`"
            )

    # ---- geometry --------------------------------------------------------------------------------

    @property
    @abstractmethod
    def num_vision_layers(self) -> int:
        """Number of blocks in the vision tower."""

    @property
    @abstractmethod
    def vision_hidden_size(self) -> int:
        """C_vis, the width of the intermediate vision features."""

    @property
    def text_hidden_size(self) -> int:
        """D, the width of the language model's input embeddings."""
        return int(self.get_input_embeddings().weight.shape[1])

    @property
    def default_layers(self) -> list[int]:
        return default_layers(self.num_vision_layers)

    @property
    def layers(self) -> list[int]:
        """The vision layers the AHD reads: the config's, or the family default."""
        layers = list(self.config.layers) if self.config.layers else self.default_layers
        bad = [i for i in layers if not 1 <= i <= self.num_vision_layers]
        if bad:
            raise BackboneError(
                f"vision layers {bad} out of range: this tower has blocks 1..{self.num_vision_layers} (1-based)"
            )
        return layers

    @abstractmethod
    def feature_grid(self, num_frames: int, frame_size: tuple[int, int]) -> tuple[int, int, int]:
        """``(T', H', W')`` of the feature grid for clips of ``num_frames`` frames of ``frame_size`` (H, W);
        raises :class:`BackboneError` with the fix when the size is not usable."""

    @property
    def max_context_length(self) -> int:
        """The language model's context (positions) limit."""
        text_cfg = getattr(self.model.config, "text_config", self.model.config)
        return int(getattr(text_cfg, "max_position_embeddings", 4096))

    @property
    def device(self) -> torch.device:
        return self.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.get_input_embeddings().weight.dtype

    # ---- vision ----------------------------------------------------------------------------------

    @abstractmethod
    def preprocess_video(
        self, frames: torch.Tensor, *, fps: float | Sequence[float] | torch.Tensor | None = None
    ) -> VideoInputs:
        """uint8 clips ``(B, T, H, W, 3)`` (or one clip ``(T, H, W, 3)``) → model inputs, in plain torch.

        ``fps`` is the frame rate of the frames as given (source fps / frame stride), one number or one per
        clip ``(B,)``; families whose language model encodes real time (Qwen2.5-VL's mRoPE) use it, the others
        ignore it.
        """

    @abstractmethod
    def encode_video(
        self, inputs: VideoInputs, layers: Sequence[int] | None = None, *, visual_tokens: bool = True
    ) -> VisionOutput:
        """One vision pass: the grids of ``layers`` (default :attr:`layers`) and, if asked, LLM tokens."""

    @abstractmethod
    def vision_modules(self) -> list[nn.Module]:
        """The modules of the vision tower and projector (kept frozen; never LoRA targets)."""

    # ---- text ------------------------------------------------------------------------------------

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.get_input_embeddings()

    def tokenize(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def release_input_embeddings(self) -> int:
        """Drop the LLM's input-embedding table of a vision-only backbone (stage 1, once the text prototypes are
        stored in the AHD): 152,064 × 3,584 bf16 = 1.02 GiB for Qwen2.5-VL-7B. It is replaced by an empty
        ``(0, D)`` table on the same device and dtype, so ``device``, ``dtype`` and ``text_hidden_size`` keep
        working; :meth:`embed_text` then raises. Returns the bytes released (0 when already released)."""
        if not self.vision_only:
            raise BackboneError("release_input_embeddings() is for vision-only backbones; the full model's "
                                "language model reads its input embeddings")
        weight = self.get_input_embeddings().weight
        if weight.shape[0] == 0:
            return 0
        freed = weight.numel() * weight.element_size()
        empty = nn.Embedding(0, int(weight.shape[1]), device=weight.device, dtype=weight.dtype).requires_grad_(False)
        self.model.set_input_embeddings(empty)
        return freed

    @torch.no_grad()
    def embed_text(self, sentences: Sequence[str], *, mode: str = "input_embeddings") -> torch.Tensor:
        """Sentence embeddings ``(N, D)``: token vectors mean-pooled over each sentence.

        ``mode="input_embeddings"`` reads the LLM's input embedding table (works in vision-only mode);
        ``mode="hidden_states"`` runs the language model and pools its last hidden states.
        """
        if not sentences:
            raise ValueError("embed_text needs at least one sentence")
        if self.get_input_embeddings().weight.shape[0] == 0:
            raise BackboneError(f"the input-embedding table of {self.config.path} was released after the class "
                                "prototypes were computed (release_input_embeddings); load the backbone again to "
                                "embed text")
        ids = [self.tokenize(s) or [self._placeholder_id] for s in sentences]
        length = max(len(i) for i in ids)
        input_ids = torch.full((len(ids), length), self._placeholder_id, dtype=torch.long)
        mask = torch.zeros((len(ids), length), dtype=torch.long)
        for row, seq in enumerate(ids):
            input_ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        if mode == "input_embeddings":
            hidden = self.get_input_embeddings()(input_ids)
        elif mode == "hidden_states":
            self._require_language_model("embed_text(mode='hidden_states')")
            out = self.language_model_backbone()(
                inputs_embeds=self.get_input_embeddings()(input_ids), attention_mask=mask
            )
            hidden = out.last_hidden_state
        else:
            raise ValueError(f"unknown embed_text mode {mode!r}; use 'input_embeddings' or 'hidden_states'")
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)

    def language_model_backbone(self) -> nn.Module:
        """The decoder stack (without LM head), for hidden-state text embeddings."""
        return self.model.model.language_model

    @property
    def _placeholder_id(self) -> int:
        """The id on padding and on visual / prompt placeholder positions: pad, else unk, else eos."""
        tok = self.tokenizer
        for cand in (tok.pad_token_id, tok.unk_token_id, tok.eos_token_id):
            if cand is not None:
                return int(cand)
        return 0

    # ---- saving ----------------------------------------------------------------------------------

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Save a self-contained Hugging Face folder (model + tokenizer) that
        :func:`~tvau_lightning.backbones.registry.load_backbone` loads."""
        if self._peft_model is not None:
            raise BackboneError("merge the LoRA adapter (merge_lora) before save_pretrained")
        if self.vision_only:
            raise BackboneError("a vision-only backbone cannot be saved as a full model")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(directory))
        self.tokenizer.save_pretrained(str(directory))
        # the pixel settings (mean/std, patching) live in the processor files; carry them over
        source = Path(os.path.expanduser(str(self.config.path)))
        if source.is_dir() and source.resolve() != directory.resolve():
            for name in PROCESSOR_FILES:
                if (source / name).is_file() and not (directory / name).exists():
                    shutil.copyfile(source / name, directory / name)
        return directory

    # ---- misc ------------------------------------------------------------------------------------

    def freeze(self) -> BackboneAdapter:
        """Freeze every parameter (LoRA parameters stay trainable if LoRA is applied)."""
        for name, p in self.model.named_parameters():
            p.requires_grad_("lora_" in name)
        return self

    def _require_language_model(self, what: str) -> None:
        if self.vision_only:
            raise BackboneError(
                f"{what} needs the language model, but this backbone was loaded with vision_only=True "
                "(stage 1 loading); load it with vision_only=False"
            )

    def describe(self) -> str:
        n_params = sum(p.numel() for p in self.model.parameters())
        return (
            f"{type(self).__name__}(family={self.family}, vision_only={self.vision_only}, "
            f"params={n_params / 1e6:.1f}M, vision_layers={self.num_vision_layers}, D={self.text_hidden_size})"
        )
