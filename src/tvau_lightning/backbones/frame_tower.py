"""Shared machinery of the per-frame, fixed-resolution towers (InternVL, LLaVA-1.5, LLaVA-NeXT).

These families encode a video as a stack of independent images: every frame is resized to the tower's
square input size, runs through a ViT with a CLS token, and becomes a grid of LLM tokens. So the
spatio-temporal feature grid is simply ``(T, S/p, S/p)`` (one grid step per frame, ``temporal_patch_size=1``),
the intermediate hidden states are plain patch grids once the CLS token is dropped, and what differs per
family is only how the selected hidden state becomes LLM tokens (InternVL: pixel shuffle + MLP; LLaVA:
MLP) and the chat markup. :class:`FrameTowerAdapter` implements loading (full or vision-only), plain-torch
preprocessing, the single vision pass, the frame/token budgets and the context-overflow advice; the family
files (``internvl.py``, ``llava.py``) subclass it.

Preprocessing differs from the Hugging Face processors on purpose in one way: the whole frame is resized
(squashed) to ``S×S`` with antialiased bicubic interpolation in torch, never centre-cropped (LLaVA-1.5's
processor crops the shorter side), so that every feature-grid cell maps back to a known region of the full
frame — the AHD heatmaps are upsampled onto the original frames. HF resizes uint8 images (PIL or
torchvision) and rounds back to uint8 before normalising; we resize the float frame and clamp to [0, 1],
which differs by at most a rounding step per pixel.
"""

from __future__ import annotations

import logging
import math
from abc import abstractmethod
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from tvau_lightning.backbones.base import (
    BackboneAdapter,
    frames_to_float,
    read_model_type,
    resize_float_frames_bicubic,
    resolve_dtype,
    resolve_model_dir,
)
from tvau_lightning.backbones.dialogue import DialogueInputs
from tvau_lightning.backbones.normalization import CLIP_MEAN, CLIP_STD, preprocessor_configs
from tvau_lightning.backbones.types import (
    BackboneConfig,
    BackboneError,
    ContextOverflowError,
    VideoInputs,
    VisionOutput,
)


class _DropLoadReport(logging.Filter):
    """Hide transformers' load report of a vision-only load (it lists every skipped LLM tensor)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "LOAD REPORT" not in record.getMessage()


@contextmanager
def _quiet_load_report():
    log = logging.getLogger("transformers.modeling_utils")
    flt = _DropLoadReport()
    log.addFilter(flt)
    try:
        yield
    finally:
        log.removeFilter(flt)


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    return (int(value[0]), int(value[1]))


def pool_token_grid(tokens: torch.Tensor, grid: tuple[int, int], factor: int) -> torch.Tensor:
    """Average-pool each frame's token grid by ``factor × factor``.

    ``tokens (N, h·w, D)`` in row-major order → ``(N, ⌈h/k⌉·⌈w/k⌉, D)``; windows at the bottom/right edge
    that stick out of the grid average only the tokens they cover.
    """
    if factor == 1:
        return tokens
    n, length, dim = tokens.shape
    h, w = grid
    if length != h * w:
        raise ValueError(f"{length} tokens do not form a {h}×{w} grid")
    x = tokens.transpose(1, 2).reshape(n, dim, h, w)
    x = F.avg_pool2d(x, kernel_size=factor, stride=factor, ceil_mode=True)
    return x.flatten(2).transpose(1, 2)


class FrameTowerAdapter(BackboneAdapter):
    """A backbone whose vision tower sees each frame as one square image with a CLS token.

    Subclasses set the Hugging Face classes, the family's normalisation defaults and implement
    :meth:`_tokens_from_hidden` (selected hidden state → LLM tokens), :meth:`token_grid` and the chat hooks.
    """

    temporal_patch_size: ClassVar[int] = 1
    #: the ``*ForConditionalGeneration`` class (full load) and the base ``*Model`` class (vision-only load)
    full_model_class: ClassVar[Any] = None
    base_model_class: ClassVar[Any] = None
    config_class: ClassVar[Any] = None
    default_mean: ClassVar[tuple[float, float, float]] = CLIP_MEAN
    default_std: ClassVar[tuple[float, float, float]] = CLIP_STD
    #: the placeholder string of one visual token in the chat text (the id comes from the model config)
    image_token: ClassVar[str] = "<image>"

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        config: BackboneConfig,
        *,
        vision_only: bool,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
    ) -> None:
        super().__init__(model, tokenizer, config, vision_only=vision_only)
        self.register_buffer(
            "pixel_mean", torch.tensor(list(image_mean or self.default_mean), dtype=torch.float32).view(3, 1, 1),
            persistent=False,
        )
        self.register_buffer(
            "pixel_std", torch.tensor(list(image_std or self.default_std), dtype=torch.float32).view(3, 1, 1),
            persistent=False,
        )
        self.check_budgets(config, model.config)

    # ---- loading ---------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls, config: BackboneConfig, *, vision_only: bool = False, device: torch.device | str | None = None
    ) -> FrameTowerAdapter:
        """Load the model (or, with ``vision_only``, the vision tower, projector and input embedding table
        only — the LLM decoder layers and LM head are never built) and its tokenizer from a local folder."""
        from transformers import AutoTokenizer

        model_dir = resolve_model_dir(config.path, local_files_only=config.local_files_only)
        model_type = read_model_type(model_dir)
        if model_type not in cls.model_types:
            raise BackboneError(
                f"{model_dir / 'config.json'} has model_type {model_type!r}, but {cls.__name__} reads "
                f"{', '.join(cls.model_types)}; use load_backbone() to pick the adapter from the folder"
            )
        dtype = resolve_dtype(config.dtype, device)
        try:
            hf_config = cls.config_class.from_pretrained(
                str(model_dir), local_files_only=True, trust_remote_code=config.trust_remote_code
            )
        except Exception as err:  # noqa: BLE001 - re-raised with the folder
            raise BackboneError(f"cannot read the model config in {model_dir} ({err})") from err
        # the cheap checks first: a bad setting or a broken tokenizer should not cost a 15 GB weight load
        cls.check_budgets(config, hf_config)
        tokenizer_files = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")
        if not any((model_dir / f).is_file() for f in tokenizer_files):
            # (transformers would silently build an empty tokenizer)
            raise BackboneError(
                f"{model_dir} has no tokenizer files ({', '.join(tokenizer_files)}); copy the tokenizer of the "
                "checkpoint into the folder (tokenizer.save_pretrained) or re-download it"
            )
        try:
            tokenizer = AutoTokenizer.from_pretrained(
                str(model_dir), local_files_only=True, trust_remote_code=config.trust_remote_code
            )
        except Exception as err:  # noqa: BLE001 - re-raised with the folder
            raise BackboneError(
                f"cannot load the tokenizer from {model_dir} ({err}); the folder needs tokenizer.json or the "
                "tokenizer files saved with the model"
            ) from err
        image_id = int(hf_config.image_token_id)
        if tokenizer.convert_tokens_to_ids(cls.image_token) != image_id:
            raise BackboneError(
                f"the tokenizer in {model_dir} maps {cls.image_token!r} to "
                f"{tokenizer.convert_tokens_to_ids(cls.image_token)}, but the model config reserves id {image_id} "
                "for it; the tokenizer files do not belong to this checkpoint"
            )
        mean, std = cls._read_normalization(model_dir)
        kwargs: dict[str, Any] = {
            "dtype": dtype,
            "local_files_only": True,
            "trust_remote_code": config.trust_remote_code,
            "output_loading_info": True,
        }
        if config.attn_implementation:
            kwargs["attn_implementation"] = config.attn_implementation
        if device is not None:  # load straight onto the device (no full copy in CPU memory first)
            kwargs["device_map"] = {"": torch.device(device)}
        if vision_only:
            text_cfg = hf_config.text_config
            text_cfg.num_hidden_layers = 0
            if getattr(text_cfg, "layer_types", None) is not None:
                text_cfg.layer_types = []
            model_class = cls.base_model_class
        else:
            model_class = cls.full_model_class
        try:
            with _quiet_load_report() if vision_only else _null_context():
                model, info = model_class.from_pretrained(str(model_dir), config=hf_config, **kwargs)
        except (OSError, ValueError, RuntimeError) as err:
            raise BackboneError(
                f"cannot load the {cls.family} weights from {model_dir} ({err}). The folder needs config.json "
                "and the *.safetensors weights of a transformers-format checkpoint; re-download it if files "
                "are missing or truncated."
            ) from err
        missing = sorted(info.get("missing_keys", []))
        if missing:
            raise BackboneError(
                f"the weights in {model_dir} lack {len(missing)} tensors the {cls.family} model needs "
                f"(first: {', '.join(missing[:4])}); the checkpoint is incomplete or of another architecture"
            )
        model.eval()
        adapter = cls(model, tokenizer, config, vision_only=vision_only, image_mean=mean, image_std=std)
        if device is not None:
            adapter.to(device)
        return adapter

    @classmethod
    def _read_normalization(cls, model_dir: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Mean/std from the folder's (video) preprocessor config, else the family default."""
        for path, data in preprocessor_configs(model_dir):
            mean, std = data.get("image_mean"), data.get("image_std")
            if mean is not None and std is not None:
                if len(mean) != 3 or len(std) != 3:
                    raise BackboneError(f"{path}: image_mean/image_std must have 3 values, got {mean} / {std}")
                return tuple(float(v) for v in mean), tuple(float(v) for v in std)
        return cls.default_mean, cls.default_std

    # ---- structure -------------------------------------------------------------------------------

    @property
    def core(self) -> nn.Module:
        """The transformers ``*Model`` holding ``vision_tower``, ``multi_modal_projector``, ``language_model``."""
        return self.model if self.vision_only else self.model.model

    @property
    def hf_config(self) -> Any:
        return self.model.config

    @property
    def vision_config(self) -> Any:
        return self.model.config.vision_config

    @property
    def num_vision_layers(self) -> int:
        return int(self.vision_config.num_hidden_layers)

    @property
    def vision_hidden_size(self) -> int:
        return int(self.vision_config.hidden_size)

    @property
    def patch_size(self) -> tuple[int, int]:
        return _pair(self.vision_config.patch_size)

    @property
    def native_size(self) -> tuple[int, int]:
        """The tower's pre-training input size ``(S, S)`` (InternVL3: 448, LLaVA: 336)."""
        return _pair(self.vision_config.image_size)

    @property
    def input_size(self) -> tuple[int, int]:
        """``(H, W)`` every frame is resized to: ``config.input_size`` or the native size."""
        return self.resolve_input_size(self.config, self.hf_config)

    @classmethod
    def grid_multiple(cls, hf_config: Any) -> int:
        """The patch grid must be divisible by this (InternVL's pixel shuffle merges 2×2 patches)."""
        return 1

    @classmethod
    def resolve_input_size(cls, config: BackboneConfig, hf_config: Any) -> tuple[int, int]:
        """``config.input_size`` (or the tower's native size), checked against the patch size and the
        family's token merge; a :class:`BackboneError` names the nearest usable size."""
        native = _pair(hf_config.vision_config.image_size)
        size = tuple(config.input_size) if config.input_size else native
        if len(size) != 2:
            raise BackboneError(f"input_size must be (H, W), got {config.input_size}")
        ph, pw = _pair(hf_config.vision_config.patch_size)
        k = cls.grid_multiple(hf_config)
        mh, mw = ph * k, pw * k
        if size[0] % mh or size[1] % mw or size[0] <= 0 or size[1] <= 0:
            raise BackboneError(
                f"input_size {tuple(size)} is not usable by the {cls.family} tower: height and width must be "
                f"positive multiples of {mh}×{mw} (patch {ph}×{pw}"
                + (f" × the {k}×{k} token merge" if k > 1 else "")
                + f"); e.g. {max(1, round(size[0] / mh)) * mh}×{max(1, round(size[1] / mw)) * mw}, or leave it "
                f"unset for the native {native[0]}×{native[1]}"
            )
        return (int(size[0]), int(size[1]))

    @classmethod
    def check_budgets(cls, config: BackboneConfig, hf_config: Any) -> None:
        """Validate the frame/token budgets of ``config`` (before any weights are loaded)."""
        if config.visual_token_pool < 1:
            raise BackboneError(f"visual_token_pool must be ≥ 1, got {config.visual_token_pool}")
        if config.max_frames is not None and config.max_frames < 1:
            raise BackboneError(f"max_frames must be ≥ 1 or null, got {config.max_frames}")
        cls.resolve_input_size(config, hf_config)

    @property
    def patch_grid(self) -> tuple[int, int]:
        """``(H', W')`` of one frame's intermediate feature grid."""
        (h, w), (ph, pw) = self.input_size, self.patch_size
        return (h // ph, w // pw)

    def feature_grid(self, num_frames: int, frame_size: tuple[int, int]) -> tuple[int, int, int]:
        """``(T, S/p, S/p)``: frames are resized to :attr:`input_size` whatever their size, one step per frame."""
        if num_frames < 1:
            raise BackboneError(f"a clip needs at least one frame, got {num_frames}")
        return (num_frames, *self.patch_grid)

    def token_grid(self) -> tuple[int, int]:
        """``(h, w)`` of one frame's LLM token grid before :attr:`BackboneConfig.visual_token_pool`."""
        return self.patch_grid

    def tokens_per_frame(self, pool: int | None = None) -> int:
        """LLM visual tokens one frame costs after pooling by ``pool`` (default: the config's)."""
        k = self.config.visual_token_pool if pool is None else pool
        h, w = self.token_grid()
        return math.ceil(h / k) * math.ceil(w / k)

    def vision_modules(self) -> list[nn.Module]:
        return [self.core.vision_tower, self.core.multi_modal_projector]

    # ---- vision ----------------------------------------------------------------------------------

    def preprocess_video(
        self, frames: torch.Tensor, *, fps: float | Sequence[float] | torch.Tensor | None = None
    ) -> VideoInputs:
        """uint8 clips ``(B, T, H, W, 3)`` or ``(T, H, W, 3)`` → normalised frames ``(B·T, 3, S_h, S_w)``.

        Each frame is resized to :attr:`input_size` (antialiased bicubic, clamped to [0, 1]) and normalised
        with the folder's mean/std. ``fps`` is accepted for interface parity and unused: these towers
        encode frames independently, with no notion of time.
        """
        if frames.dim() == 4:
            frames = frames.unsqueeze(0)
        if frames.dim() != 5:
            raise BackboneError(f"expected uint8 clips (B, T, H, W, 3) or (T, H, W, 3), got shape {tuple(frames.shape)}")
        b, t = frames.shape[:2]
        if self.config.max_frames is not None and t > self.config.max_frames:
            raise BackboneError(
                f"a clip has {t} frames but the backbone's max_frames is {self.config.max_frames}; sample fewer "
                f"frames per clip (clip_len / frame_stride in the data config) or raise max_frames"
            )
        grid = self.feature_grid(t, (int(frames.shape[2]), int(frames.shape[3])))
        x = frames_to_float(frames.reshape(b * t, *frames.shape[2:]))
        x = resize_float_frames_bicubic(x, self.input_size).clamp_(0.0, 1.0)
        x = (x - self.pixel_mean.to(x.device)) / self.pixel_std.to(x.device)
        return VideoInputs(pixel_values=x, grid=grid, num_frames=t, batch_size=b)

    def _vision_kwargs(self) -> dict[str, Any]:
        """Extra keyword arguments of the vision tower's forward (CLIP: position interpolation)."""
        return {}

    def stock_feature_layers(self) -> list[int]:
        """``hidden_states`` indices (0 = embeddings, i = block i) the stock LLM-token path reads."""
        layer = self.hf_config.vision_feature_layer
        layers = [layer] if isinstance(layer, int) else list(layer)
        n = self.num_vision_layers + 1
        return [i % n for i in layers]

    def encode_video(
        self, inputs: VideoInputs, layers: Sequence[int] | None = None, *, visual_tokens: bool = True
    ) -> VisionOutput:
        """One pass of the vision tower over all frames of the batch.

        Returns the 1-based block outputs in ``layers`` as ``(B, T, H', W', C_vis)`` grids (CLS dropped,
        row-major) and, if ``visual_tokens``, the LLM tokens ``(B, T·n, D)`` (frame-major, row-major
        within a frame, ``n`` = :meth:`tokens_per_frame`) computed exactly as the stock
        ``get_image_features`` does, then pooled by ``visual_token_pool``.
        """
        layers = list(self.layers if layers is None else layers)
        bad = [i for i in layers if not 1 <= i <= self.num_vision_layers]
        if bad:
            raise BackboneError(f"vision layers {bad} out of range: this tower has blocks 1..{self.num_vision_layers}")
        wanted = set(layers) | (set(self.stock_feature_layers()) if visual_tokens else set())
        tower = self.core.vision_tower
        pixels = inputs.pixel_values.to(device=self.device, dtype=self.core.vision_tower.dtype)
        out = tower(pixels, output_hidden_states=sorted(wanted), return_dict=True, **self._vision_kwargs())
        hidden = out.hidden_states
        b, (t, h, w) = inputs.batch_size, inputs.grid
        n_patches = h * w
        features: dict[int, torch.Tensor] = {}
        for i in layers:
            state = hidden[i]
            if state.shape[1] != n_patches + 1:
                raise BackboneError(f"vision block {i} gave {state.shape[1]} tokens, expected 1 CLS + {h}×{w}")
            features[i] = state[:, 1:].reshape(b, t, h, w, state.shape[-1])  # drop the CLS token
        tokens = None
        if visual_tokens:
            per_frame = self._tokens_from_hidden(out)  # (B·T, n, D)
            th, tw = self.token_grid()
            has_cls = per_frame.shape[1] == th * tw + 1
            if has_cls:  # select strategy "full": keep the CLS token first, pool the grid only
                cls_tok, grid_tok = per_frame[:, :1], per_frame[:, 1:]
                per_frame = torch.cat([cls_tok, pool_token_grid(grid_tok, (th, tw), self.config.visual_token_pool)], 1)
            else:
                per_frame = pool_token_grid(per_frame, (th, tw), self.config.visual_token_pool)
            tokens = per_frame.reshape(b, t * per_frame.shape[1], per_frame.shape[-1])
        return VisionOutput(layer_features=features, visual_tokens=tokens)

    @abstractmethod
    def _tokens_from_hidden(self, vision_out: Any) -> torch.Tensor:
        """Stock projection of one vision pass to LLM tokens ``(B·T, n, D)`` (family-specific)."""

    def visual_tokens_per_clip(self, video: VideoInputs) -> int:
        """LLM tokens one clip of ``video`` occupies (visual tokens only, no markup)."""
        per = self.tokens_per_frame()
        if getattr(self.hf_config, "vision_feature_select_strategy", "default") == "full":
            per += 1
        return video.grid[0] * per

    # ---- dialogue --------------------------------------------------------------------------------

    @property
    def image_token_id(self) -> int:
        """The id the model config reserves for visual-token positions (used as their placeholder)."""
        return int(self.hf_config.image_token_id)

    def build_dialogue_inputs(self, dialogues: Sequence[Any], **kwargs: Any) -> DialogueInputs:
        """As :meth:`BackboneAdapter.build_dialogue_inputs`; an overflow names the per-frame token cost and
        the frame counts / pooling factors that would fit."""
        try:
            return super().build_dialogue_inputs(dialogues, **kwargs)
        except ContextOverflowError as err:
            video: VideoInputs | None = kwargs.get("video")
            if video is None:
                raise
            limit = min(kwargs.get("max_length") or self.max_context_length, self.max_context_length)
            k = self.config.visual_token_pool
            per = self.tokens_per_frame()
            options = []
            for pool in sorted({k, 2, 3, 4}):
                if pool < k:
                    continue
                cost = self.tokens_per_frame(pool)
                options.append(f"visual_token_pool={pool}: {cost} tokens/frame → at most {limit // cost} frames")
            raise ContextOverflowError(
                f"{err} [{self.family}: {video.grid[0]} frames × {per} visual tokens/frame "
                f"(grid {self.token_grid()[0]}×{self.token_grid()[1]}, visual_token_pool={k}) = "
                f"{video.grid[0] * per} visual tokens against a limit of {limit}. Options, before text: "
                + "; ".join(options) + ". Set max_frames / visual_token_pool in the backbone config and "
                "clip_len in the data config.]"
            ) from err


@contextmanager
def _null_context():
    yield
