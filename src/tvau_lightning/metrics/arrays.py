"""Array conversion shared by the metric code: tensors, arrays and nested sequences in, numpy out.

Metrics accept whatever a caller has at hand (a CUDA bf16 tensor from a model, a numpy array from a file, a
list of rows written by hand); everything below :mod:`tvau_lightning.metrics` converts once, here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

#: what the metric functions accept as an array
ArrayLike = np.ndarray | torch.Tensor | Sequence


def to_numpy(x: ArrayLike, dtype: type | None = None) -> np.ndarray:
    """A numpy view/copy of a tensor, array or sequence (half-precision tensors become float32)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.is_floating_point() and x.dtype not in (torch.float32, torch.float64):
            x = x.float()
        x = x.numpy()
    return np.asarray(x, dtype=dtype)
