"""The backbone adapter contract (SPEC §2): one interface over Qwen2.5-VL, InternVL and LLaVA.

AHD and RAE code talks to an LVLM only through :class:`BackboneAdapter`; everything family-specific
(pixel layout, token order of intermediate vision features, chat format, which ids the language model
accepts, context limits) lives in the family's subclass. The generic machinery — loading from a local
folder, text embeddings, assembling dialogue inputs with visual tokens and K prompt slots, forward with
labels, generation, LoRA on the language model only — is implemented here once.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from tvau_lightning.data.dialogue_schema import Turn

IGNORE_INDEX = -100

#: processor files of a model folder that hold pixel settings; :meth:`BackboneAdapter.save_pretrained` keeps them
PROCESSOR_FILES: tuple[str, ...] = (
    "preprocessor_config.json",
    "video_preprocessor_config.json",
    "processor_config.json",
    "chat_template.json",
    "chat_template.jinja",
)


class BackboneError(RuntimeError):
    """A backbone that cannot be loaded or used as asked; the message says what to do."""


class ContextOverflowError(BackboneError):
    """A dialogue (visual tokens + prompts + text) longer than the model's context or the set maximum."""


# --------------------------------------------------------------------------------------------------
# Configuration and value types
# --------------------------------------------------------------------------------------------------


@dataclass
class BackboneConfig:
    """Where a backbone lives and how to run it; one YAML under ``configs/backbones/``.

    Attributes:
        path: a local Hugging Face model folder (``config.json`` + weights + tokenizer), or a hub id that is
            already in the local hub cache.
        dtype: ``auto`` (bf16 on a GPU that supports it, else fp32), ``float32``, ``bfloat16`` or ``float16``.
        layers: 1-based vision block outputs used by the AHD; ``None`` → the family's default spread.
        local_files_only: never reach a network (default); turn off only if you want hub downloads.
        trust_remote_code: off by default; the supported families are native in transformers.
        attn_implementation: passed to ``from_pretrained`` (``sdpa``, ``eager``, ``flash_attention_2``).
        max_frames: the most frames one clip may have (a frame budget); ``None`` = no extra limit.
        input_size: ``(H, W)`` the adapter resizes frames to before patching; ``None`` = the family's
            native size for fixed-resolution towers (LLaVA 336, InternVL 448) and "as given" for
            Qwen2.5-VL (which needs multiples of 28).
        visual_token_pool: average-pool factor applied to each frame's LLM visual tokens (2 → 4× fewer),
            to fit many frames in small contexts (LLaVA-1.5 has 4,096 tokens).
        vision_path: ``stock`` (the transformers module) or ``fast`` (windows batched as dense attention,
            Qwen2.5-VL only; see ``backbones/qwen2_5_vl_fast.py``).
        compile_vision: wrap the vision path in ``torch.compile``.
    """

    path: str
    dtype: str = "auto"
    layers: list[int] | None = None
    local_files_only: bool = True
    trust_remote_code: bool = False
    attn_implementation: str | None = None
    max_frames: int | None = None
    input_size: tuple[int, int] | None = None
    visual_token_pool: int = 1
    vision_path: str = "stock"
    compile_vision: bool = False


@dataclass
class LoRASettings:
    """LoRA on the language model's attention projections only (never the vision tower)."""

    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    last_n_layers: int | None = None


@dataclass
class VideoInputs:
    """Model-ready pixels for a batch of clips (from :meth:`BackboneAdapter.preprocess_video`).

    Attributes:
        pixel_values: the family's pixel layout (Qwen2.5-VL: flattened patches ``(B·N, C·2·14·14)``;
            InternVL/LLaVA: frames ``(B·T, 3, S, S)``).
        grid: ``(T', H', W')`` of one clip's per-layer vision feature grid.
        num_frames: frames per clip after any temporal padding the family needs.
        batch_size: clips in the batch.
        extras: other tensors the family needs (``video_grid_thw``, ``second_per_grid_ts`` …).
    """

    pixel_values: torch.Tensor
    grid: tuple[int, int, int]
    num_frames: int
    batch_size: int
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> VideoInputs:
        pv = self.pixel_values.to(device=device, dtype=dtype) if dtype else self.pixel_values.to(device)
        return VideoInputs(
            pixel_values=pv,
            grid=self.grid,
            num_frames=self.num_frames,
            batch_size=self.batch_size,
            extras={k: v.to(device) for k, v in self.extras.items()},
        )


@dataclass
class VisionOutput:
    """One vision pass.

    Attributes:
        layer_features: 1-based block index → ``(B, T', H', W', C_vis)`` hidden states in row-major
            spatial order (``[:, t, h, w]`` is the patch at row ``h``, column ``w`` of time step ``t``).
        visual_tokens: ``(B, N_vis, D)`` tokens ready for the language model, or ``None`` if not asked for.
    """

    layer_features: dict[int, torch.Tensor]
    visual_tokens: torch.Tensor | None = None


@dataclass
class DialogueInputs:
    """Token-level inputs of a batch of dialogues, before embeddings are filled in.

    Attributes:
        input_ids: ``(B, L)``; visual and prompt positions hold placeholder ids.
        attention_mask: ``(B, L)`` 1 on real tokens, 0 on padding.
        labels: ``(B, L)`` token ids on assistant answers (and their end-of-turn token), ``-100`` elsewhere.
        visual_mask: ``(B, L)`` bool, positions that receive visual tokens.
        prompt_mask: ``(B, L)`` bool, positions that receive anomaly-prompt embeddings.
        token_type_ids: ``(B, L)`` 0 text, 1 image, 2 video (Qwen2.5-VL's ``mm_token_type_ids``).
        padding_side: ``right`` (training) or ``left`` (generation).
        video: the :class:`VideoInputs` the visual placeholders were laid out for (or ``None``).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    visual_mask: torch.Tensor
    prompt_mask: torch.Tensor
    token_type_ids: torch.Tensor
    padding_side: str
    video: VideoInputs | None = None

    def to(self, device: torch.device | str) -> DialogueInputs:
        return DialogueInputs(
            input_ids=self.input_ids.to(device),
            attention_mask=self.attention_mask.to(device),
            labels=self.labels.to(device),
            visual_mask=self.visual_mask.to(device),
            prompt_mask=self.prompt_mask.to(device),
            token_type_ids=self.token_type_ids.to(device),
            padding_side=self.padding_side,
            video=self.video.to(device) if self.video is not None else None,
        )


@dataclass(frozen=True)
class ChatFormat:
    """The family's chat markup, as literal strings around each message (special tokens included)."""

    system: str | None
    user_prefix: str
    user_suffix: str
    assistant_prefix: str
    assistant_suffix: str


@dataclass
class _Segment:
    ids: list[int]
    kind: Literal["text", "visual", "prompt"] = "text"
    trainable: bool = False
    token_type: int = 0


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


def resize_frames(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize float frames ``(N, 3, H, W)`` with antialiased bicubic interpolation (plain torch)."""
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


# --------------------------------------------------------------------------------------------------
# The adapter
# --------------------------------------------------------------------------------------------------


class BackboneAdapter(nn.Module, ABC):
    """A frozen (optionally LoRA-tuned) LVLM seen through one interface.

    Subclasses set :attr:`family` and :attr:`model_types`, implement the abstract hooks, and are registered
    with :func:`register_adapter`. The wrapped Hugging Face model is :attr:`model`; in ``vision_only``
    mode its language model has no decoder layers and no LM head (only the input embedding table, for
    text prototypes), so a 7B LLM never sits in memory during stage 1.
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

    # ---- tiny random models (backbones/tiny.py) --------------------------------------------------

    @classmethod
    def tiny_special_tokens(cls) -> dict[str, Any]:
        """Keyword arguments of the family's tiny tokenizer: the named tokens it has (``bos_token``,
        ``eos_token``, ``unk_token``, ``pad_token``) and ``additional_special_tokens`` (every special token,
        named ones included, in a fixed order: they get the first ids of the vocabulary)."""
        raise BackboneError(f"{cls.__name__} ({cls.family}) has no tiny model; implement tiny_special_tokens and "
                           "tiny_config to use build_tiny_backbone with it (see backbones/tiny.py)")

    @classmethod
    def tiny_config(cls, tokenizer: Any, **overrides: Any) -> Any:
        """The Hugging Face config of a tiny random model of the family (a few vision blocks, a 2-layer LLM,
        small widths) whose special-token ids come from ``tokenizer``; unknown ``overrides`` raise TypeError."""
        raise BackboneError(f"{cls.__name__} ({cls.family}) has no tiny model; implement tiny_special_tokens and "
                           "tiny_config to use build_tiny_backbone with it (see backbones/tiny.py)")

    @classmethod
    def tiny_model(cls, seed: int, tokenizer: Any, **overrides: Any) -> nn.Module:
        """A tiny random model from :meth:`tiny_config` (called under ``torch.manual_seed(seed)``)."""
        from transformers import AutoModelForImageTextToText

        return AutoModelForImageTextToText.from_config(cls.tiny_config(tokenizer, **overrides))

    @classmethod
    def tiny_processor_files(cls, model: nn.Module) -> dict[str, dict[str, Any]]:
        """Extra JSON files (``preprocessor_config.json`` …) saved beside a tiny model; name → content."""
        return {}

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

    @torch.no_grad()
    def embed_text(self, sentences: Sequence[str], *, mode: str = "input_embeddings") -> torch.Tensor:
        """Sentence embeddings ``(N, D)``: token vectors mean-pooled over each sentence.

        ``mode="input_embeddings"`` reads the LLM's input embedding table (works in vision-only mode);
        ``mode="hidden_states"`` runs the language model and pools its last hidden states.
        """
        if not sentences:
            raise ValueError("embed_text needs at least one sentence")
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

    # ---- dialogue --------------------------------------------------------------------------------

    @property
    @abstractmethod
    def chat_format(self) -> ChatFormat:
        """The family's chat markup."""

    @abstractmethod
    def visual_placeholder(self, video: VideoInputs) -> list[_Segment]:
        """The segments that stand for one clip's visual tokens (markers as text, tokens as ``visual``)."""

    @property
    def _placeholder_id(self) -> int:
        tok = self.tokenizer
        for cand in (tok.pad_token_id, tok.unk_token_id, tok.eos_token_id):
            if cand is not None:
                return int(cand)
        return 0

    def num_visual_tokens(self, video: VideoInputs) -> int:
        return sum(len(s.ids) for s in self.visual_placeholder(video) if s.kind == "visual")

    def build_dialogue_inputs(
        self,
        dialogues: Sequence[Sequence[Turn]],
        *,
        video: VideoInputs | None = None,
        num_prompt_tokens: int = 0,
        add_generation_prompt: bool = False,
        padding_side: str = "right",
        max_length: int | None = None,
    ) -> DialogueInputs:
        """Lay out a batch of dialogues as ``[visual tokens, K prompt slots, Q1, A1, …]`` token ids.

        The visual block and the ``num_prompt_tokens`` slots sit at the start of the first user message.
        Labels cover assistant answers and their end-of-turn markup only. With ``add_generation_prompt``
        each dialogue must end with a user turn and the assistant header is appended (for ``generate``).

        Raises:
            ContextOverflowError: a dialogue longer than ``max_length`` or the model's context.
        """
        if padding_side not in ("right", "left"):
            raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
        if video is not None and video.batch_size != len(dialogues):
            raise ValueError(f"{len(dialogues)} dialogues but the video batch has {video.batch_size} clips")
        fmt = self.chat_format
        visual = self.visual_placeholder(video) if video is not None else []
        rows: list[list[_Segment]] = []
        for turns in dialogues:
            if not turns or turns[0].role != "user":
                raise ValueError("a dialogue must start with a user turn")
            if add_generation_prompt and turns[-1].role != "user":
                raise ValueError("add_generation_prompt=True needs dialogues that end with a user turn")
            segs: list[_Segment] = []
            if fmt.system is not None:
                segs.append(_Segment(self.tokenize(fmt.system)))
            for i, turn in enumerate(turns):
                if turn.role == "user":
                    segs.append(_Segment(self.tokenize(fmt.user_prefix)))
                    if i == 0:
                        segs.extend(_Segment(list(s.ids), s.kind, False, s.token_type) for s in visual)
                        if num_prompt_tokens:
                            segs.append(_Segment([self._placeholder_id] * num_prompt_tokens, "prompt"))
                    segs.append(_Segment(self.tokenize(turn.content + fmt.user_suffix)))
                else:
                    segs.append(_Segment(self.tokenize(fmt.assistant_prefix)))
                    segs.append(_Segment(self.tokenize(turn.content + fmt.assistant_suffix), trainable=True))
            if add_generation_prompt:
                segs.append(_Segment(self.tokenize(fmt.assistant_prefix)))
            rows.append(segs)

        limit = min(max_length or self.max_context_length, self.max_context_length)
        lengths = [sum(len(s.ids) for s in segs) for segs in rows]
        longest = max(lengths)
        if longest > limit:
            n_vis = self.num_visual_tokens(video) if video is not None else 0
            raise ContextOverflowError(
                f"a dialogue needs {longest} tokens ({n_vis} visual, {num_prompt_tokens} anomaly-prompt, "
                f"{longest - n_vis - num_prompt_tokens} text) but the limit is {limit} "
                f"(model context {self.max_context_length}). Use fewer frames (max_frames / clip_len), a "
                "smaller frame size, visual_token_pool > 1, or shorter dialogues."
            )

        pad = self._placeholder_id
        shape = (len(rows), longest)
        input_ids = torch.full(shape, pad, dtype=torch.long)
        attention = torch.zeros(shape, dtype=torch.long)
        labels = torch.full(shape, IGNORE_INDEX, dtype=torch.long)
        visual_mask = torch.zeros(shape, dtype=torch.bool)
        prompt_mask = torch.zeros(shape, dtype=torch.bool)
        token_types = torch.zeros(shape, dtype=torch.long)
        for b, segs in enumerate(rows):
            pos = 0 if padding_side == "right" else longest - lengths[b]
            for s in segs:
                n = len(s.ids)
                sl = slice(pos, pos + n)
                input_ids[b, sl] = torch.tensor(s.ids, dtype=torch.long)
                attention[b, sl] = 1
                if s.trainable:
                    labels[b, sl] = input_ids[b, sl]
                visual_mask[b, sl] = s.kind == "visual"
                prompt_mask[b, sl] = s.kind == "prompt"
                token_types[b, sl] = s.token_type
                pos += n
        return DialogueInputs(
            input_ids=input_ids,
            attention_mask=attention,
            labels=labels,
            visual_mask=visual_mask,
            prompt_mask=prompt_mask,
            token_type_ids=token_types,
            padding_side=padding_side,
            video=video,
        )

    def embed_dialogue(
        self,
        inputs: DialogueInputs,
        visual_tokens: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``inputs_embeds (B, L, D)``: token embeddings with visual tokens ``(B, N, D)`` and prompt
        embeddings ``(B, K, D)`` scattered into their placeholder positions (differentiable in both)."""
        embeds = self.get_input_embeddings()(inputs.input_ids)
        for name, mask, source in (
            ("visual_tokens", inputs.visual_mask, visual_tokens),
            ("prompt_embeds", inputs.prompt_mask, prompt_embeds),
        ):
            n_slots = int(mask.sum())
            if n_slots == 0:
                continue
            if source is None:
                raise ValueError(f"the dialogue has {n_slots} {name} slots but no {name} were given")
            if source.numel() // source.shape[-1] != n_slots:
                raise ValueError(
                    f"{name} has {source.numel() // source.shape[-1]} vectors for {n_slots} slots "
                    f"(shape {tuple(source.shape)})"
                )
            embeds = embeds.masked_scatter(mask.unsqueeze(-1), source.to(embeds.dtype).reshape(-1, embeds.shape[-1]))
        return embeds

    def language_model_kwargs(self, inputs: DialogueInputs) -> dict[str, Any]:
        """Extra keyword arguments the family's language-model forward needs besides ``inputs_embeds``
        and ``attention_mask`` (Qwen2.5-VL: ``input_ids`` and mm-token types for 3-D positions)."""
        return {}

    def prepare_language_model(self) -> None:
        """Reset per-call state before a language-model forward (Qwen2.5-VL's cached rope deltas)."""

    def language_model_backbone(self) -> nn.Module:
        """The decoder stack (without LM head), for hidden-state text embeddings."""
        return self.model.model.language_model

    def forward_dialogue(
        self, inputs: DialogueInputs, inputs_embeds: torch.Tensor, *, compute_loss: bool = True
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Language-model forward. Returns ``(loss, logits)``; the loss is the mean token cross-entropy
        over labelled (assistant) positions, ``None`` when there are none or ``compute_loss`` is off."""
        self._require_language_model("forward_dialogue")
        self.prepare_language_model()
        out = self.model(
            inputs_embeds=inputs_embeds,
            attention_mask=inputs.attention_mask,
            use_cache=False,
            **self.language_model_kwargs(inputs),
        )
        logits = out.logits
        loss = None
        if compute_loss and bool((inputs.labels != IGNORE_INDEX).any()):
            shift_logits = logits[:, :-1].float()
            shift_labels = inputs.labels[:, 1:]
            loss = F.cross_entropy(
                shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1), ignore_index=IGNORE_INDEX
            )
        return loss, logits

    @torch.no_grad()
    def generate(
        self, inputs: DialogueInputs, inputs_embeds: torch.Tensor, *, max_new_tokens: int = 64, **kwargs: Any
    ) -> list[str]:
        """Greedy (by default) generation of the next assistant message for each dialogue.

        ``inputs`` must be laid out with ``padding_side="left"`` and ``add_generation_prompt=True``.
        """
        self._require_language_model("generate")
        if inputs.padding_side != "left":
            raise ValueError("generate needs dialogue inputs built with padding_side='left'")
        self.prepare_language_model()
        gen_kwargs: dict[str, Any] = {"do_sample": False, "max_new_tokens": max_new_tokens}
        eos = self.generation_eos_token_ids()
        if eos:
            gen_kwargs["eos_token_id"] = eos
        gen_kwargs["pad_token_id"] = self._placeholder_id
        gen_kwargs.update(kwargs)
        out = self.model.generate(
            inputs_embeds=inputs_embeds,
            attention_mask=inputs.attention_mask,
            **self.generation_kwargs(inputs),
            **gen_kwargs,
        )
        new_tokens = self.new_generated_tokens(out, inputs)
        return [self.tokenizer.decode(t, skip_special_tokens=True).strip() for t in new_tokens]

    def generation_kwargs(self, inputs: DialogueInputs) -> dict[str, Any]:
        """Extra ``generate`` keyword arguments (defaults to :meth:`language_model_kwargs`)."""
        return self.language_model_kwargs(inputs)

    def new_generated_tokens(self, output: torch.Tensor, inputs: DialogueInputs) -> list[torch.Tensor]:
        """The newly generated ids per sample, cut at the first end-of-turn token.

        With ``inputs_embeds`` only, ``generate`` returns the new tokens alone; when the family also passes
        ``input_ids`` the prompt is echoed first and is cut here.
        """
        if "input_ids" in self.generation_kwargs(inputs):
            output = output[:, inputs.input_ids.shape[1]:]
        eos = set(self.generation_eos_token_ids())
        rows = []
        for row in output:
            ids = row.tolist()
            for i, t in enumerate(ids):
                if t in eos:
                    ids = ids[:i]
                    break
            rows.append(torch.tensor(ids, dtype=torch.long))
        return rows

    def generation_eos_token_ids(self) -> list[int]:
        """Token ids that end an assistant message (from the chat format's assistant suffix + eos)."""
        ids = [i for i in self.tokenize(self.chat_format.assistant_suffix.strip()) if i in self._special_ids()]
        if self.tokenizer.eos_token_id is not None:
            ids.append(int(self.tokenizer.eos_token_id))
        return sorted(set(ids))

    def _special_ids(self) -> set[int]:
        return set(getattr(self.tokenizer, "all_special_ids", []))

    # ---- LoRA ------------------------------------------------------------------------------------

    @property
    def language_layers_prefix(self) -> str:
        """Module-name prefix of the decoder layers (a regex fragment)."""
        return r"model\.language_model\.layers"

    @property
    def num_language_layers(self) -> int:
        text_cfg = getattr(self.model.config, "text_config", self.model.config)
        return int(text_cfg.num_hidden_layers)

    def lora_target_regex(self, settings: LoRASettings) -> str:
        """A regex that matches only the language model's attention projections (never the vision tower,
        whose attention also has ``q_proj``/``v_proj`` in CLIP and InternViT)."""
        n = self.num_language_layers
        if settings.last_n_layers is not None:
            if not 1 <= settings.last_n_layers <= n:
                raise BackboneError(f"lora last_n_layers={settings.last_n_layers} but the LLM has {n} layers")
            layer_alt = "|".join(str(i) for i in range(n - settings.last_n_layers, n))
        else:
            layer_alt = r"\d+"
        targets = "|".join(re.escape(t) for t in settings.target_modules)
        return rf"(?:.*\.)?{self.language_layers_prefix}\.(?:{layer_alt})\.self_attn\.(?:{targets})"

    def apply_lora(self, settings: LoRASettings) -> None:
        """Wrap the language model's attention projections with LoRA (peft); freezes everything else."""
        from peft import LoraConfig, get_peft_model

        self._require_language_model("apply_lora")
        if self._peft_model is not None:
            raise BackboneError("LoRA is already applied to this backbone")
        cfg = LoraConfig(
            r=settings.rank,
            lora_alpha=settings.alpha,
            lora_dropout=settings.dropout,
            target_modules=self.lora_target_regex(settings),
            bias="none",
        )
        self._set_peft(get_peft_model(self.model, cfg))

    def _set_peft(self, peft_model: Any) -> None:
        # The peft wrapper shares its modules with ``self.model``; keep it out of the module tree so that
        # state dicts and parameter lists see each weight once, under ``model.``.
        object.__setattr__(self, "_peft_model", peft_model)

    @property
    def has_lora(self) -> bool:
        return self._peft_model is not None

    def lora_state_dict(self) -> dict[str, torch.Tensor]:
        """Adapter-only weights (``lora_A`` / ``lora_B``), keyed by module name."""
        if self._peft_model is None:
            return {}
        return {k: v for k, v in self.model.state_dict().items() if "lora_" in k}

    def save_lora(self, directory: str | os.PathLike[str]) -> Path:
        """Save adapter-only weights in peft's format (``adapter_model.safetensors``)."""
        if self._peft_model is None:
            raise BackboneError("no LoRA adapter to save; call apply_lora first")
        self._peft_model.save_pretrained(str(directory))
        return Path(directory)

    def load_lora(self, directory: str | os.PathLike[str], *, trainable: bool = False) -> None:
        """Attach a saved peft adapter to the language model."""
        from peft import PeftModel

        self._require_language_model("load_lora")
        if self._peft_model is not None:
            raise BackboneError("LoRA is already applied to this backbone")
        self._set_peft(PeftModel.from_pretrained(self.model, str(directory), is_trainable=trainable))

    def merge_lora(self) -> None:
        """Fold the LoRA weights into the base weights (the model stays a plain transformers model)."""
        if self._peft_model is None:
            raise BackboneError("no LoRA adapter to merge")
        self.model = self._peft_model.merge_and_unload()
        self._set_peft(None)

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Save a self-contained Hugging Face folder (model + tokenizer) that :func:`load_backbone` loads."""
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


# --------------------------------------------------------------------------------------------------
# Registry and loading
# --------------------------------------------------------------------------------------------------

_ADAPTERS: dict[str, type[BackboneAdapter]] = {}


def register_adapter(cls: type[BackboneAdapter]) -> type[BackboneAdapter]:
    """Class decorator: make ``cls`` the adapter for its ``model_types``."""
    if not cls.model_types:
        raise TypeError(f"{cls.__name__} must set model_types")
    for mt in cls.model_types:
        _ADAPTERS[mt] = cls
    return cls


def registered_model_types() -> dict[str, type[BackboneAdapter]]:
    from tvau_lightning import backbones  # noqa: F401  (registers the families)

    return dict(_ADAPTERS)


def adapter_class_for(model_type: str) -> type[BackboneAdapter]:
    adapters = registered_model_types()
    if model_type not in adapters:
        raise BackboneError(
            f"unsupported model family {model_type!r}; supported: {', '.join(sorted(adapters))}. "
            "To add a family, subclass BackboneAdapter (see README, 'Backbones')."
        )
    return adapters[model_type]


def load_backbone(
    config: BackboneConfig | str | os.PathLike[str],
    *,
    vision_only: bool = False,
    device: torch.device | str | None = None,
    **overrides: Any,
) -> BackboneAdapter:
    """Load the adapter for a local model folder, choosing the family from ``config.json``'s
    ``model_type``. ``config`` is a :class:`BackboneConfig` or just the path."""
    if not isinstance(config, BackboneConfig):
        config = BackboneConfig(path=str(config), **overrides)
    elif overrides:
        config = BackboneConfig(**{**config.__dict__, **overrides})
    model_dir = resolve_model_dir(config.path, local_files_only=config.local_files_only)
    cls = adapter_class_for(read_model_type(model_dir))
    resolved = BackboneConfig(**{**config.__dict__, "path": str(model_dir)})
    cls.check_vision_path(resolved)
    return cls.from_pretrained(resolved, vision_only=vision_only, device=device)


def ceil_to_multiple(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)
