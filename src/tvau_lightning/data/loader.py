"""A ``DataLoader`` whose worker processes cannot hang on decoders they inherited.

DataLoader workers are forked from the training process. A PyAV/FFmpeg decoder that decoded in the parent owns
threads (frame-threaded decoding); a forked worker inherits the decoder's memory but not its threads, so freeing
that decoder in the worker waits forever for threads that do not exist there (``avcodec_free_context`` →
``pthread_cond_destroy``; opening a new container can block on the same state). A decoder is freed in a worker
when the worker's garbage collector reaches one the parent had already dropped but not yet collected (PyAV
containers sit in reference cycles, so they wait for a collection) — a hang that depends on what ran before,
seen in the test suite after the builder tests and reproducible with them.

:class:`ForkSafeDataLoader` therefore, each time it starts workers, first collects the parent's garbage (its
decoders are freed where their threads live) and freezes every surviving object while the workers fork
(``gc.freeze``, as the ``gc`` documentation advises before ``fork``), so no worker's collector walks inherited
objects. The dataset's own readers, which a worker replaces by fresh ones, are kept referenced in the worker
(``data/clips.py:_INHERITED_READERS``) and so are never freed there either.

Before forking it also stops the decoding threads of evaluation iterations that were abandoned before their end
(:func:`~tvau_lightning.data.decode_threads.stop_decode_threads`; Lightning's sanity check leaves one behind
just before the training workers start): a fork copies none of a process's other threads, so a worker must not
be forked while they decode.
"""

from __future__ import annotations

import gc
from typing import Any

from torch.utils.data import DataLoader

from tvau_lightning.data.decode_threads import stop_decode_threads

__all__ = ["ForkSafeDataLoader"]


class ForkSafeDataLoader(DataLoader):
    """:class:`torch.utils.data.DataLoader` that collects the parent's garbage and freezes the heap while its
    worker processes start (see the module docstring); identical otherwise, and with ``num_workers=0``."""

    def _get_iterator(self) -> Any:
        if self.num_workers == 0:
            return super()._get_iterator()
        stop_decode_threads()  # no evaluation thread may be decoding while the workers fork
        gc.collect()  # free the parent's unreachable decoders here, where their threads exist
        gc.freeze()  # and let no forked worker's collector walk what it inherits
        try:
            return super()._get_iterator()  # forks the workers
        finally:
            gc.unfreeze()
