"""Pixel normalisation of the vision towers: the released statistics, and where a model folder states its own.

A model folder's (video) preprocessor config says which mean/std its tower was trained with; the constants
here are the defaults a family falls back on when the folder has none.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tvau_lightning.backbones.types import BackboneError

#: OpenAI CLIP's pixel statistics (Qwen2.5-VL, LLaVA-1.5, LLaVA-NeXT)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
#: ImageNet's pixel statistics (InternVL3-hf)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: the files that may hold a folder's pixel settings, the video one first (it wins when both exist)
PREPROCESSOR_CONFIG_FILES = ("video_preprocessor_config.json", "preprocessor_config.json")


def preprocessor_configs(model_dir: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """``(path, parsed JSON)`` of each of :data:`PREPROCESSOR_CONFIG_FILES` present in ``model_dir``, in
    that order; a file that is not valid JSON raises :class:`BackboneError` naming it."""
    for name in PREPROCESSOR_CONFIG_FILES:
        path = model_dir / name
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise BackboneError(f"{path} is not valid JSON ({err}); fix or delete it") from err
        yield path, data
