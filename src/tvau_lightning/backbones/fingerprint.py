"""Fingerprints of a loaded backbone: what identifies its vision features.

Two different questions, two functions:

* :func:`architecture_fingerprint` — *which kind of tower* (family, names and shapes of every vision tensor).
  Trained heads record it, so a stage-1 checkpoint refuses a backbone whose widths merely happen to match
  (LLaVA-1.5 vs LLaVA-NeXT, a tiny LLaVA for a Qwen-trained AHD). Independent of the weights' values and of
  where the folder lives.
* :func:`weights_fingerprint` — *exactly these features* (plus sampled weight values, config and processor
  files, compute dtype, input size). The stage-1 feature cache keys on it: any retrained or re-normalised
  tower invalidates the cache.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from tvau_lightning.backbones.base import PROCESSOR_FILES, BackboneAdapter

#: elements sampled from each end of every vision tensor for the weights fingerprint
_SAMPLED_ELEMENTS = 2048


def architecture_fingerprint(backbone: BackboneAdapter) -> str:
    """SHA-256 (hex) of the family and the name and shape of every parameter of ``vision_modules()``."""
    digest = hashlib.sha256(backbone.family.encode())
    for module in backbone.vision_modules():
        for name, p in module.named_parameters():
            digest.update(f"{name}:{tuple(p.shape)}".encode())
    return digest.hexdigest()


def weights_fingerprint(backbone: BackboneAdapter) -> dict[str, Any]:
    """What about a loaded backbone changes its vision features: the family, a digest of the vision weights
    (name, shape and the first/last :data:`_SAMPLED_ELEMENTS` values of every tensor of ``vision_modules()``
    — cheap, independent of where the folder lives, different for any re-trained or other checkpoint),
    SHA-256 of the folder's ``config.json`` and processor files (pixel normalisation), the compute dtype and
    ``input_size``. The vision path (stock / fast) is left out: both give the same features up to rounding."""
    digest = hashlib.sha256()
    for module in backbone.vision_modules():
        for name, p in module.named_parameters():
            flat = p.detach().reshape(-1)
            sample = torch.cat([flat[:_SAMPLED_ELEMENTS], flat[-_SAMPLED_ELEMENTS:]]).float().cpu()
            digest.update(f"{name}:{tuple(p.shape)}:{p.dtype}".encode())
            digest.update(sample.numpy().tobytes())
    files = {}
    folder = Path(str(backbone.config.path)).expanduser()
    for name in ("config.json", *PROCESSOR_FILES):
        path = folder / name
        if path.is_file():
            files[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    input_size = backbone.config.input_size
    return {
        "family": backbone.family,
        "vision_weights": digest.hexdigest(),
        "files": files,
        "compute_dtype": str(backbone.dtype).removeprefix("torch."),
        "input_size": None if input_size is None else [int(v) for v in input_size],
    }
