"""The plain data of the backbone contract (SPEC §2): its errors, its config and the vision inputs/outputs.

They sit below :mod:`~tvau_lightning.backbones.base` (the adapter) and the modules it is built from
(:mod:`~tvau_lightning.backbones.dialogue`, :mod:`~tvau_lightning.backbones.lora`,
:mod:`~tvau_lightning.backbones.tiny`), so that every one of those can use them without importing the adapter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


class BackboneError(RuntimeError):
    """A backbone that cannot be loaded or used as asked; the message says what to do."""


class ContextOverflowError(BackboneError):
    """A dialogue (visual tokens + prompts + text) longer than the model's context or the set maximum."""


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
        compile_vision: wrap the vision path in ``torch.compile`` (falls back to eager with a warning when
            compiling fails or is unavailable).
        compile_mode: ``torch.compile`` mode (``None`` = the default; ``reduce-overhead``, ``max-autotune``,
            ``max-autotune-no-cudagraphs``).
        compile_dynamic: ``torch.compile``'s ``dynamic``; ``False`` (default) compiles once per input shape and
            dtype, with no dynamic-shape recompile when a second clip size appears.
        compile_fullgraph: ask for one graph per block (an error instead of a graph break).
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
    compile_mode: str | None = None
    compile_dynamic: bool | None = False
    compile_fullgraph: bool = False

    def compile_options(self) -> dict[str, object]:
        """The ``torch.compile`` keyword arguments of :attr:`compile_mode`, :attr:`compile_dynamic` and
        :attr:`compile_fullgraph`; raises :class:`BackboneError` for an unknown mode."""
        if self.compile_mode not in COMPILE_MODES:
            raise BackboneError(
                f"compile_mode {self.compile_mode!r} ({self.path}) is not a torch.compile mode; use one of "
                f"{', '.join(repr(m) for m in COMPILE_MODES)}"
            )
        options: dict[str, object] = {"dynamic": self.compile_dynamic, "fullgraph": bool(self.compile_fullgraph)}
        if self.compile_mode not in (None, "default"):
            options["mode"] = self.compile_mode
        return options


#: the ``compile_mode`` values (``None`` = torch.compile's default)
COMPILE_MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


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

