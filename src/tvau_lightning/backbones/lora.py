"""LoRA on the language model only (SPEC §2): target selection, apply, save, load and merge (peft).

:class:`LoRAMixin` is one of the bases of :class:`~tvau_lightning.backbones.base.BackboneAdapter`; it wraps the
adapter's ``model`` (checked with its ``_require_language_model``) and keeps the peft wrapper outside the
module tree (see :meth:`LoRAMixin._set_peft`). A family whose decoder layers are not under
``model.language_model.layers`` overrides :attr:`LoRAMixin.language_layers_prefix`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tvau_lightning.backbones.types import BackboneError


@dataclass
class LoRASettings:
    """LoRA on the language model's attention projections only (never the vision tower)."""

    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    last_n_layers: int | None = None


class LoRAMixin:
    """LoRA adapters on the language model's attention projections of a :class:`BackboneAdapter`."""

    _peft_model: Any

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
