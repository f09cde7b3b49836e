"""Qwen2.5-VL through the backbone contract (SPEC §2): pixels, vision grids, chat markup, 3-D mRoPE.

Family quirks handled here (checked against transformers 5.23):

* **Pixels.** The HF Qwen2-VL video processor needs torchvision; :meth:`Qwen2_5_VLAdapter.preprocess_video`
  reproduces its output in plain torch: rescale to [0, 1], CLIP mean/std (from the folder's
  ``preprocessor_config.json`` when present), odd ``T`` padded by repeating the last frame, and the flattened
  patch layout ``(grid_t·grid_h·grid_w, C·2·p·p)`` with patches in 2×2-merge-block order
  (``t, h/2, w/2, 2, 2``). Frames are not resized unless ``input_size`` is set; ``H`` and ``W`` must be
  multiples of ``patch_size · spatial_merge_size`` (28 for the released models).
* **Token order.** The vision blocks run in a *window-permuted* order: groups of ``spatial_merge_size²``
  tokens (one 2×2 merge block) sorted window by window. Only the merger output is un-permuted by the stock
  module, so :meth:`~Qwen2_5_VLAdapter.encode_video` un-permutes the block outputs itself (argsort of the
  window index over merge blocks, then the 2×2 order unfolded) to row-major ``(B, T', H', W', C)`` grids.
  Block outputs are taken with forward hooks on the stock blocks (the stock forward stays the single source
  of truth for attention); when no LLM tokens are needed the pass stops after the deepest requested block.
* **Fast vision path.** ``vision_path: fast`` runs the same weights through
  :class:`~tvau_lightning.backbones.qwen2_5_vl_fast.FastQwen2_5VisionTower` (windows of equal length batched
  into one SDPA call, ragged edge windows grouped by length; optional ``torch.compile`` with
  ``compile_vision``): layer grids and merged tokens from one pass, equal to the stock tower up to float
  rounding. The wrapper is held outside the module tree, so the stock tower stays the only owner of the
  weights (state dicts and parameter lists are those of the stock path).
* **Positions.** The language model needs ``input_ids`` and ``mm_token_type_ids`` alongside
  ``inputs_embeds`` or it silently uses 1-D positions; with them (and ``video_grid_thw`` plus the real
  ``second_per_grid_ts`` = 2 / fps) it builds the 3-D mRoPE positions itself. Placeholder ids are
  ``<|video_pad|>``; the precomputed visual tokens sit in ``inputs_embeds`` and no pixels are passed, so the
  tower never runs twice. The cached ``rope_deltas`` are reset before every call.
* **Vision-only loading.** Stage 1 loads ``Qwen2_5_VLModel`` (no LM head) with a text config of zero decoder
  layers: only the vision tower (+ merger), the input embedding table and the final norm are materialised;
  the checkpoint's decoder and LM-head tensors are never read.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from tvau_lightning.backbones.base import (
    BackboneAdapter,
    frames_to_float,
    resize_float_frames_bicubic,
    resolve_dtype,
    resolve_model_dir,
)
from tvau_lightning.backbones.dialogue import ChatFormat, DialogueInputs, _Segment
from tvau_lightning.backbones.normalization import CLIP_MEAN, CLIP_STD, preprocessor_configs
from tvau_lightning.backbones.qwen2_5_vl_fast import FastQwen2_5VisionTower
from tvau_lightning.backbones.registry import register_adapter
from tvau_lightning.backbones.tiny import TINY_SHARED_SETTINGS, TinyHooks, tiny_settings, tiny_text_config
from tvau_lightning.backbones.types import BackboneConfig, BackboneError, VideoInputs, VisionOutput

__all__ = ["QWEN_DEFAULT_FPS", "Qwen2_5_VLAdapter", "window_merge_unit_order"]

#: frame rate assumed when the caller gives none (Qwen's own video sampling default)
QWEN_DEFAULT_FPS = 2.0

_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

#: settings of the tiny random model (``build_tiny_backbone("qwen2_5_vl", **overrides)``)
TINY_QWEN_SETTINGS: dict[str, Any] = {
    **TINY_SHARED_SETTINGS,
    "patch_size": 4,  # 4-px patches: a 64×96 frame gives a 16×24 grid (the released model uses 14)
    "window_size": 32,  # 4×4 merge blocks per window as in the released model → 2×3 windows on 64×96
    "vision_depth": 4,
    "fullatt_block_indexes": [1, 3],  # like 7, 15, 23, 31 of 32: the last block of each group is global
    "tokens_per_second": 2,
}


class _StopVision(Exception):
    """Raised by a block hook to end the vision pass once the deepest requested block has run."""


def window_merge_unit_order(
    grid_thw: Sequence[Sequence[int]], *, spatial_merge_size: int, window_size: int, patch_size: int
) -> torch.Tensor:
    """The order in which Qwen2.5-VL's vision blocks hold merge blocks: ``(num_merge_blocks,)`` long.

    Entry ``k`` is the row-major index (over ``(video, t, h/m, w/m)``) of the merge block at window-order
    position ``k``: windows of ``window_size // (patch_size · m)`` merge blocks per side, row-major over each
    frame, blocks row-major inside a window, edge windows cropped.
    """
    side = window_size // (patch_size * spatial_merge_size)
    if side < 1:
        raise BackboneError(f"window_size {window_size} is smaller than one merge block ({patch_size}·{spatial_merge_size})")
    order, offset = [], 0
    for t, h, w in grid_thw:
        gh, gw = int(h) // spatial_merge_size, int(w) // spatial_merge_size
        index = torch.arange(int(t) * gh * gw).view(int(t), gh, gw)
        pad_h, pad_w = (-gh) % side, (-gw) % side
        index = F.pad(index, (0, pad_w, 0, pad_h), value=-1)
        nh, nw = (gh + pad_h) // side, (gw + pad_w) // side
        index = index.view(int(t), nh, side, nw, side).permute(0, 1, 3, 2, 4).reshape(-1)
        order.append(index[index >= 0] + offset)
        offset += int(t) * gh * gw
    return torch.cat(order)


def _read_pixel_settings(model_dir: Path | None) -> tuple[tuple[float, ...], tuple[float, ...], float]:
    """``(mean, std, rescale_factor)`` from the folder's (video) preprocessor config, else the released models'
    (OpenAI CLIP statistics, 1/255)."""
    mean, std, rescale = CLIP_MEAN, CLIP_STD, 1.0 / 255.0
    if model_dir is None:
        return mean, std, rescale
    for path, cfg in preprocessor_configs(model_dir):
        mean = tuple(float(v) for v in cfg.get("image_mean", mean))
        std = tuple(float(v) for v in cfg.get("image_std", std))
        rescale = float(cfg.get("rescale_factor", rescale))
        if len(mean) != 3 or len(std) != 3:
            raise BackboneError(f"{path}: image_mean and image_std must have 3 values, got {mean} and {std}")
        break
    return mean, std, rescale


def _local_dir(path: str) -> Path | None:
    p = Path(os.path.expanduser(str(path)))
    return p if p.is_dir() else None


@register_adapter
class Qwen2_5_VLAdapter(TinyHooks, BackboneAdapter):
    """Qwen2.5-VL (3B/7B/32B/72B-Instruct) behind :class:`BackboneAdapter`.

    ``model`` is a ``Qwen2_5_VLForConditionalGeneration`` (full) or a ``Qwen2_5_VLModel`` without decoder
    layers (``vision_only``).
    """

    family = "qwen2_5_vl"
    model_types = ("qwen2_5_vl",)
    temporal_patch_size = 2
    vision_paths = ("stock", "fast")

    def __init__(self, model: nn.Module, tokenizer: Any, config: BackboneConfig, *, vision_only: bool) -> None:
        super().__init__(model, tokenizer, config, vision_only=vision_only)
        mean, std, rescale = _read_pixel_settings(_local_dir(config.path))
        self.register_buffer("pixel_mean", torch.tensor(mean, dtype=torch.float32).view(3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std, dtype=torch.float32).view(3, 1, 1), persistent=False)
        self.rescale_factor = rescale
        vc = self.vision_config
        if int(vc.temporal_patch_size) != self.temporal_patch_size:
            raise BackboneError(
                f"{config.path}: vision temporal_patch_size {vc.temporal_patch_size} is not supported (expected 2)"
            )
        self.patch_size = int(vc.patch_size)
        self.spatial_merge_size = int(vc.spatial_merge_size)
        self.window_size = int(vc.window_size)
        if config.visual_token_pool < 1:
            raise BackboneError(f"visual_token_pool must be >= 1, got {config.visual_token_pool}")
        config.compile_options()  # an unknown compile_mode fails at load time, naming the config
        # the fast wrapper shares the stock tower's modules; kept out of the module tree (see _set_peft)
        object.__setattr__(self, "_fast_visual", None)

    # ---- loading ---------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls, config: BackboneConfig, *, vision_only: bool = False, device: torch.device | str | None = None
    ) -> Qwen2_5_VLAdapter:
        """Load from ``config.path``; ``vision_only`` materialises the vision tower, merger and input
        embeddings only (no decoder layer, no LM head is ever read from the checkpoint)."""
        from transformers import (
            AutoConfig,
            AutoTokenizer,
            Qwen2_5_VLForConditionalGeneration,
            Qwen2_5_VLModel,
        )

        model_dir = resolve_model_dir(config.path, local_files_only=config.local_files_only)
        dtype = resolve_dtype(config.dtype, device)
        common: dict[str, Any] = {"local_files_only": True, "trust_remote_code": config.trust_remote_code}
        try:
            hf_config = AutoConfig.from_pretrained(str(model_dir), **common)
        except Exception as err:  # noqa: BLE001 - re-raised with the folder
            raise BackboneError(f"cannot read the model config in {model_dir} ({err})") from err
        if hf_config.model_type not in cls.model_types:
            raise BackboneError(
                f"{model_dir / 'config.json'} has model_type {hf_config.model_type!r}, but {cls.__name__} reads "
                f"{', '.join(cls.model_types)}; use load_backbone() to pick the adapter from the folder"
            )
        load_kwargs: dict[str, Any] = {**common, "dtype": dtype, "output_loading_info": True}
        if config.attn_implementation:
            load_kwargs["attn_implementation"] = config.attn_implementation
        if device is not None:
            load_kwargs["device_map"] = {"": torch.device(device)}
        if vision_only:
            # no decoder layers and no LM head: their checkpoint tensors are skipped, never read
            hf_config.text_config.num_hidden_layers = 0
            hf_config.text_config.layer_types = []
            model_class, skipped = Qwen2_5_VLModel, ("lm_head.", "language_model.layers.", "model.layers.")
            # transformers maps the released (and its own save_pretrained's) keys `visual.*` / `model.*` onto
            # Qwen2_5_VLModel, but files written by transformers 4.5x use the module names `model.visual.*` /
            # `model.language_model.*`, which that mapping mistakes for language-model keys; strip them first
            load_kwargs["key_mapping"] = {r"^model\.visual\.": "visual.", r"^model\.language_model\.": "language_model."}
        else:
            model_class, skipped = Qwen2_5_VLForConditionalGeneration, ()
        try:
            with _transformers_log_level(logging.ERROR if vision_only else None):
                model, info = model_class.from_pretrained(str(model_dir), config=hf_config, **load_kwargs)
        except (OSError, ValueError, RuntimeError) as err:
            raise BackboneError(
                f"cannot load the Qwen2.5-VL weights from {model_dir} ({err}). The folder needs config.json and "
                "the *.safetensors weights of a transformers-format checkpoint; re-download it if files are "
                "missing or truncated."
            ) from err
        missing = sorted(info.get("missing_keys", []))
        unexpected = sorted(k for k in info.get("unexpected_keys", []) if not any(s in k for s in skipped))
        if missing or (vision_only and unexpected):
            raise BackboneError(
                f"the weights in {model_dir} do not match a Qwen2.5-VL model (missing {len(missing)} tensors, "
                f"first: {missing[:4]}; unexpected: {unexpected[:4]}); the checkpoint is incomplete or of "
                "another architecture"
            )
        tokenizer_files = ("tokenizer.json", "tokenizer_config.json", "vocab.json")
        if not any((model_dir / f).is_file() for f in tokenizer_files):
            raise BackboneError(
                f"{model_dir} has no tokenizer files ({', '.join(tokenizer_files)}); copy the tokenizer of the "
                "checkpoint into the folder (tokenizer.save_pretrained) or re-download it"
            )
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(model_dir), **common)
        except Exception as err:  # noqa: BLE001 - re-raised with the folder
            raise BackboneError(f"cannot load the tokenizer from {model_dir} ({err})") from err
        video_id = tokenizer.convert_tokens_to_ids("<|video_pad|>")
        if video_id != int(hf_config.video_token_id):
            raise BackboneError(
                f"the tokenizer in {model_dir} maps '<|video_pad|>' to {video_id}, but the model config reserves "
                f"id {hf_config.video_token_id} for it; the tokenizer files do not belong to this checkpoint"
            )
        model.eval()
        resolved = BackboneConfig(**{**config.__dict__, "path": str(model_dir)})
        adapter = cls(model, tokenizer, resolved, vision_only=vision_only)
        if device is not None:
            adapter.to(device)
        return adapter

    # ---- geometry --------------------------------------------------------------------------------

    @property
    def core(self) -> nn.Module:
        """The ``Qwen2_5_VLModel`` (vision tower + language model without head)."""
        return self.model if self.vision_only else self.model.model

    @property
    def visual(self) -> nn.Module:
        """The stock vision tower (patch embedding, blocks, merger)."""
        return self.core.visual

    @property
    def vision_config(self) -> Any:
        return self.model.config.vision_config

    @property
    def num_vision_layers(self) -> int:
        return int(self.vision_config.depth)

    @property
    def vision_hidden_size(self) -> int:
        return int(self.vision_config.hidden_size)

    def vision_modules(self) -> list[nn.Module]:
        return [self.visual]

    @property
    def _factor(self) -> int:
        return self.patch_size * self.spatial_merge_size

    def feature_grid(self, num_frames: int, frame_size: tuple[int, int]) -> tuple[int, int, int]:
        """``(ceil(T / 2), H / p, W / p)`` for frames of ``frame_size`` (after ``input_size`` if set)."""
        if num_frames < 1:
            raise BackboneError(f"a clip needs at least one frame, got {num_frames}")
        h, w = (int(v) for v in (self.config.input_size or frame_size))
        f = self._factor
        if h % f or w % f or h < f or w < f:
            fix = (max(f, round(h / f) * f), max(f, round(w / f) * f))
            raise BackboneError(
                f"frame size (H, W) = ({h}, {w}) does not fit Qwen2.5-VL's patch grid: H and W must be multiples "
                f"of patch_size·spatial_merge_size = {self.patch_size}·{self.spatial_merge_size} = {f}. Set "
                f"frame_size to {fix} in the data config, or the backbone's input_size to {list(fix)}."
            )
        pool = self.spatial_merge_size * self.config.visual_token_pool
        if (h // self.patch_size) % pool or (w // self.patch_size) % pool:
            raise BackboneError(
                f"visual_token_pool={self.config.visual_token_pool} needs H and W to be multiples of "
                f"{self.patch_size * pool} (got {h}×{w}); change the frame size or the pool factor"
            )
        t = -(-num_frames // self.temporal_patch_size)
        return t, h // self.patch_size, w // self.patch_size

    # ---- vision ----------------------------------------------------------------------------------

    def preprocess_video(
        self, frames: torch.Tensor, *, fps: float | Sequence[float] | torch.Tensor | None = None
    ) -> VideoInputs:
        """uint8 clips ``(B, T, H, W, 3)`` or ``(T, H, W, 3)`` → the HF processor's flattened patches.

        Returns :class:`VideoInputs` with ``pixel_values (B·T'·H'·W', 3·2·p·p)``, ``grid = (T', H', W')`` and
        extras ``video_grid_thw (B, 3)`` (vision tower), ``llm_grid_thw (B, 3)`` (language-model positions,
        after ``visual_token_pool``) and ``second_per_grid_ts (B,)`` = 2 / ``fps`` (default 2 fps).
        """
        if frames.ndim == 4:
            frames = frames.unsqueeze(0)
        if frames.ndim != 5:
            raise BackboneError(f"expected uint8 clips (B, T, H, W, 3) or (T, H, W, 3), got shape {tuple(frames.shape)}")
        b, t = int(frames.shape[0]), int(frames.shape[1])
        if self.config.max_frames is not None and t > self.config.max_frames:
            raise BackboneError(
                f"clips have {t} frames but the backbone's max_frames is {self.config.max_frames}; use a shorter "
                "clip_len or a larger frame_stride, or raise max_frames"
            )
        x = frames_to_float(frames.to(self.pixel_mean.device))  # (B, T, 3, H, W) in [0, 1], on the model's device
        if self.config.input_size is not None:
            size = (int(self.config.input_size[0]), int(self.config.input_size[1]))
            x = resize_float_frames_bicubic(x.flatten(0, 1), size).clamp_(0.0, 1.0).unflatten(0, (b, t))
        h, w = int(x.shape[-2]), int(x.shape[-1])
        gt, gh, gw = self.feature_grid(t, (h, w))
        x = (x * (self.rescale_factor * 255.0) - self.pixel_mean) / self.pixel_std
        tp, p, m = self.temporal_patch_size, self.patch_size, self.spatial_merge_size
        if pad := gt * tp - t:
            x = torch.cat([x, x[:, -1:].expand(-1, pad, -1, -1, -1)], dim=1)
        # the HF Qwen2-VL processor's layout: one row per patch, merge blocks of m×m patches kept together
        patches = rearrange(x, "b (t tp) c (h m1 p1) (w m2 p2) -> (b t h w m1 m2) (c tp p1 p2)",
                            tp=tp, m1=m, m2=m, p1=p, p2=p)

        pool = self.config.visual_token_pool
        grid = torch.tensor([[gt, gh, gw]] * b, dtype=torch.long)
        llm_grid = torch.tensor([[gt, gh // pool, gw // pool]] * b, dtype=torch.long)
        return VideoInputs(
            pixel_values=patches.contiguous(),
            grid=(gt, gh, gw),
            num_frames=gt * tp,
            batch_size=b,
            extras={
                "video_grid_thw": grid,
                "llm_grid_thw": llm_grid,
                "second_per_grid_ts": self._seconds_per_grid(fps, b),
            },
        )

    def _seconds_per_grid(self, fps: float | Sequence[float] | torch.Tensor | None, batch: int) -> torch.Tensor:
        if fps is None:
            fps = QWEN_DEFAULT_FPS
        values = torch.as_tensor(fps, dtype=torch.float32).flatten()
        if values.numel() == 1:
            values = values.expand(batch)
        if values.numel() != batch:
            raise BackboneError(f"fps has {values.numel()} values for a batch of {batch} clips")
        if not bool((values > 0).all()) or not bool(torch.isfinite(values).all()):
            raise BackboneError(f"fps must be positive and finite, got {values.tolist()}")
        return (self.temporal_patch_size / values).contiguous()

    @property
    def fast_visual(self) -> FastQwen2_5VisionTower:
        """The batched-windows tower over the stock tower's weights (built on first use; rebuilt if the stock
        module object was replaced). Not a submodule: the stock tower owns the parameters."""
        fast = self._fast_visual
        if fast is None or fast.visual is not self.visual:
            fast = FastQwen2_5VisionTower(
                self.visual, compile=self.config.compile_vision, compile_options=self.config.compile_options()
            )
            object.__setattr__(self, "_fast_visual", fast)
        return fast

    def encode_video(
        self, inputs: VideoInputs, layers: Sequence[int] | None = None, *, visual_tokens: bool = True
    ) -> VisionOutput:
        """One vision pass (the ``vision_path`` of the config): ``layer_features[i] (B, T', H', W', C_vis)`` in
        row-major order for each requested 1-based block ``i``, and ``visual_tokens (B, N, D)`` (merger output,
        after ``visual_token_pool``) when asked for. Without visual tokens the pass stops after the deepest
        requested block."""
        wanted = sorted(set(int(i) for i in (layers if layers is not None else self.layers)))
        bad = [i for i in wanted if not 1 <= i <= self.num_vision_layers]
        if bad:
            raise BackboneError(
                f"vision layers {bad} out of range: this tower has blocks 1..{self.num_vision_layers} (1-based)"
            )
        if self.config.vision_path == "fast":
            return self._encode_video_fast(inputs, wanted, visual_tokens=visual_tokens)
        visual = self.visual
        grid_thw = inputs.extras["video_grid_thw"]
        param = next(visual.parameters())
        pixels = inputs.pixel_values.to(device=param.device, dtype=param.dtype)
        b, (gt, gh, gw) = inputs.batch_size, inputs.grid
        m = self.spatial_merge_size
        reverse = torch.argsort(
            window_merge_unit_order(
                grid_thw.tolist(), spatial_merge_size=m, window_size=self.window_size, patch_size=self.patch_size
            )
        ).to(param.device)

        captured: dict[int, torch.Tensor] = {}
        last = max(wanted) if wanted else 0

        def make_hook(index: int):  # noqa: ANN202 - a forward hook
            def hook(module: nn.Module, args: Any, output: Any) -> None:
                hidden = output[0] if isinstance(output, tuple) else output
                captured[index] = hidden
                if not visual_tokens and index == last:
                    raise _StopVision

            return hook

        handles = [visual.blocks[i - 1].register_forward_hook(make_hook(i)) for i in wanted]
        merged = None
        try:
            if visual_tokens or wanted:
                out = visual(pixels, grid_thw=grid_thw.to(param.device))
                merged = out.pooler_output
        except _StopVision:
            pass
        finally:
            for handle in handles:
                handle.remove()

        features = {}
        for i in wanted:
            hidden = captured[i]
            units = hidden.view(-1, m * m, hidden.shape[-1])[reverse]  # row-major merge blocks
            features[i] = rearrange(units, "(b t h w) (m1 m2) c -> b t (h m1) (w m2) c",
                                    b=b, t=gt, h=gh // m, w=gw // m, m1=m)
        tokens = None
        if visual_tokens:
            assert merged is not None
            tokens = self._llm_tokens(merged, inputs)
        return VisionOutput(layer_features=features, visual_tokens=tokens)

    def _encode_video_fast(self, inputs: VideoInputs, wanted: list[int], *, visual_tokens: bool) -> VisionOutput:
        """:meth:`encode_video` through :attr:`fast_visual`: grids from the window-ordered block outputs,
        tokens from the (already un-permuted) merger output."""
        if not wanted and not visual_tokens:
            return VisionOutput(layer_features={}, visual_tokens=None)
        fast = self.fast_visual
        param = next(fast.visual.parameters())
        pixels = inputs.pixel_values.to(device=param.device, dtype=param.dtype)
        # the grid from the CPU-side ints of VideoInputs: reading video_grid_thw once it sits on a GPU would be a
        # host sync per forward
        grid_thw = [inputs.grid] * inputs.batch_size
        out = fast(pixels, grid_thw, layers=wanted, return_merged=visual_tokens)
        features = {i: out.stacked_grid(i) for i in wanted}
        tokens = self._llm_tokens(out.pooler_output, inputs) if visual_tokens else None
        return VisionOutput(layer_features=features, visual_tokens=tokens)

    def _llm_tokens(self, merged: torch.Tensor, inputs: VideoInputs) -> torch.Tensor:
        """Merger output ``(B·T'·H'/m·W'/m, D)`` in row-major merge-block order → ``(B, N, D)`` LLM tokens
        (average-pooled by ``visual_token_pool``)."""
        b, (gt, gh, gw), m = inputs.batch_size, inputs.grid, self.spatial_merge_size
        tokens = merged.view(b, gt, gh // m, gw // m, -1)
        pool = self.config.visual_token_pool
        if pool > 1:
            tokens = F.avg_pool2d(tokens.flatten(0, 1).permute(0, 3, 1, 2), pool).permute(0, 2, 3, 1)
        return tokens.reshape(b, -1, tokens.shape[-1])

    # ---- text ------------------------------------------------------------------------------------

    @property
    def chat_format(self) -> ChatFormat:
        return ChatFormat.chatml("You are a helpful assistant.")

    def _token_id(self, token: str) -> int:
        tid = self.tokenizer.convert_tokens_to_ids(token)
        if tid is None or tid == self.tokenizer.unk_token_id:
            raise BackboneError(f"the tokenizer of {self.config.path} has no {token!r} token; is it a Qwen2.5-VL tokenizer?")
        return int(tid)

    def visual_placeholder(self, video: VideoInputs) -> list[_Segment]:
        """``<|vision_start|>`` + N × ``<|video_pad|>`` (mm token type 2) + ``<|vision_end|>``."""
        cfg = self.model.config
        t, h, w = (int(v) for v in video.extras["llm_grid_thw"][0])
        n = t * h * w // self.spatial_merge_size**2
        return [
            _Segment([int(cfg.vision_start_token_id)]),
            _Segment([int(cfg.video_token_id)] * n, "visual", False, 2),
            _Segment([int(cfg.vision_end_token_id)]),
        ]

    # ---- language model --------------------------------------------------------------------------

    def prepare_language_model(self) -> None:
        self.core.rope_deltas = None

    def language_model_kwargs(self, inputs: DialogueInputs) -> dict[str, Any]:
        """``input_ids`` + ``mm_token_type_ids`` (+ the LLM grid and seconds per grid step when the dialogue
        holds a clip), so that the model computes 3-D mRoPE positions (never the 1-D fallback)."""
        kwargs: dict[str, Any] = {"input_ids": inputs.input_ids, "mm_token_type_ids": inputs.token_type_ids}
        if inputs.video is not None and bool(inputs.visual_mask.any()):
            device = inputs.input_ids.device
            kwargs["video_grid_thw"] = inputs.video.extras["llm_grid_thw"].to(device)
            kwargs["second_per_grid_ts"] = inputs.video.extras["second_per_grid_ts"].to(device)
        return kwargs

    def language_model_backbone(self) -> nn.Module:
        return self.core.language_model

    # ---- tiny random model -----------------------------------------------------------------------

    @classmethod
    def tiny_special_tokens(cls) -> dict[str, Any]:
        """Qwen2.5-VL's special tokens (ChatML markup, vision markers); ``<|im_end|>`` ends a message."""
        return {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "additional_special_tokens": list(_SPECIAL_TOKENS)}

    @classmethod
    def tiny_config(cls, tokenizer: Any, **overrides: Any) -> Any:
        """A ``Qwen2_5_VLConfig`` with :data:`TINY_QWEN_SETTINGS` (+ ``overrides``): 4 vision blocks of width 32
        with 4-px patches and 32-px windows, a 2-layer LLM of width 64."""
        from transformers import Qwen2_5_VLConfig

        s = tiny_settings("qwen2_5_vl", TINY_QWEN_SETTINGS, overrides)
        ids = {tok: int(tokenizer.convert_tokens_to_ids(tok)) for tok in _SPECIAL_TOKENS}
        # mRoPE sections (t, h, w) over the head_dim/2 rotary frequencies, in the released 16/24/24 proportions
        half = s["text_hidden_size"] // s["text_heads"] // 2
        mrope = [half // 4, (half - half // 4) // 2]
        mrope.append(half - sum(mrope))
        return Qwen2_5_VLConfig(
            text_config={
                **tiny_text_config(s, tokenizer),
                "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope},
                "bos_token_id": None,
                "eos_token_id": ids["<|im_end|>"],
                "pad_token_id": ids["<|endoftext|>"],
            },
            vision_config={
                "depth": s["vision_depth"],
                "hidden_size": s["vision_hidden_size"],
                "intermediate_size": s["vision_intermediate_size"],
                "num_heads": s["vision_heads"],
                "patch_size": s["patch_size"],
                "spatial_merge_size": 2,
                "temporal_patch_size": 2,
                "window_size": s["window_size"],
                "out_hidden_size": s["text_hidden_size"],
                "fullatt_block_indexes": list(s["fullatt_block_indexes"]),
                "tokens_per_second": s["tokens_per_second"],
                "initializer_range": s["initializer_range"],
            },
            image_token_id=ids["<|image_pad|>"],
            video_token_id=ids["<|video_pad|>"],
            vision_start_token_id=ids["<|vision_start|>"],
            vision_end_token_id=ids["<|vision_end|>"],
            tie_word_embeddings=False,
        )

    @classmethod
    def tiny_processor_files(cls, model: nn.Module) -> dict[str, dict[str, Any]]:
        vc = model.config.vision_config
        return {
            "preprocessor_config.json": {
                "image_processor_type": "Qwen2VLImageProcessor",
                "image_mean": list(CLIP_MEAN),
                "image_std": list(CLIP_STD),
                "rescale_factor": 1.0 / 255.0,
                "do_rescale": True,
                "do_normalize": True,
                "do_resize": False,
                "patch_size": int(vc.patch_size),
                "merge_size": int(vc.spatial_merge_size),
                "temporal_patch_size": int(vc.temporal_patch_size),
            }
        }


@contextmanager
def _transformers_log_level(level: int | None) -> Iterator[None]:
    """Temporarily set the transformers log level (its load report lists every skipped tensor); ``None``
    leaves it alone."""
    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    if level is not None:
        hf_logging.set_verbosity(level)
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)
