"""Evaluation clips decoded by threads of the loading process instead of DataLoader worker processes.

A DataLoader worker is a process: every frame it produces crosses into the main process through shared memory,
which the worker fills page by page (new tmpfs pages for every batch: measured ~0.8 ms per 448×672 frame and
~2.4 ms per 720p frame, plus the page faults of every fresh buffer). Decoding and resizing need no Python
while they work — PyAV releases the GIL inside FFmpeg's decoder and swscale, torch inside its resize kernels —
so threads of one process run them in parallel, and the frames never leave the memory they were written to.

:class:`ThreadedEvaluationClips` runs :class:`~tvau_lightning.data.clips.SequentialEvaluationClips` in
``threads`` threads: the videos of this process's shard are dealt to the threads (video ``j`` to thread
``j mod threads``), each thread reads its videos front to back (one decoder per video, no seek) and puts the
clips in a bounded queue, and the iterator yields them as they come. Every clip is yielded exactly once;
clips of different videos interleave (as they do across DataLoader workers), the clips of one video keep their
order. An error in a thread is raised by the iterator; stopping early (``break``, an exception in the
consumer) stops the threads after their current block.

The ``VideoClipDataModule`` evaluation loaders use it by default (``eval_threads``); measured against worker
processes in ``benchmarks/README.md`` (evaluation data path).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from torch.utils.data import IterableDataset

if TYPE_CHECKING:
    from tvau_lightning.data.clips import SequentialEvaluationClips
    from tvau_lightning.data.types import ClipSample

__all__ = ["ThreadedEvaluationClips"]

_DONE = object()  # a thread's last item
_POLL_S = 0.1  # how often a thread waiting on a full queue checks whether the consumer stopped


class _Failed:
    """An exception raised in a decoding thread, carried to the consuming thread."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class ThreadedEvaluationClips(IterableDataset):
    """The clips of :class:`~tvau_lightning.data.clips.SequentialEvaluationClips`, decoded by ``threads`` threads
    of the process that iterates (see the module docstring). ``prefetch`` clips per thread wait in the queue.

    In a DataLoader worker it shards as ``SequentialEvaluationClips`` does and then deals the worker's videos to
    its threads; with ``threads=1`` (or one video) it is ``SequentialEvaluationClips`` itself.
    """

    def __init__(self, clips: SequentialEvaluationClips, threads: int, prefetch: int = 2) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        if prefetch < 1:
            raise ValueError(f"prefetch must be >= 1, got {prefetch}")
        self.clips = clips
        self.threads = int(threads)
        self.prefetch = int(prefetch)

    @property
    def dataset(self) -> Any:
        """The clip dataset read (as ``SequentialEvaluationClips.dataset``)."""
        return self.clips.dataset

    def __len__(self) -> int:
        return len(self.clips)

    def __iter__(self) -> Iterator[ClipSample]:
        videos = self.clips.videos_of_shard()
        shards = [videos[k :: self.threads] for k in range(min(self.threads, len(videos)))]
        if len(shards) <= 1:
            yield from self.clips.iter_videos(videos)
            return
        out: queue.Queue[Any] = queue.Queue(maxsize=self.prefetch * len(shards))
        stop = threading.Event()

        def put(item: Any) -> bool:
            while not stop.is_set():
                try:
                    out.put(item, timeout=_POLL_S)
                    return True
                except queue.Full:
                    continue
            return False

        def decode(shard: list[str]) -> None:
            try:
                for item in self.clips.iter_videos(shard):
                    if not put(item):
                        return
            except BaseException as error:  # noqa: BLE001 - raised again by the consuming thread
                put(_Failed(error))
                return
            put(_DONE)

        threads = [threading.Thread(target=decode, args=(shard,), name=f"tvau-decode-{k}", daemon=True)
                   for k, shard in enumerate(shards)]
        for thread in threads:
            thread.start()
        try:
            running = len(threads)
            while running:
                item = out.get()
                if item is _DONE:
                    running -= 1
                elif isinstance(item, _Failed):
                    raise item.error
                else:
                    yield item
        finally:
            stop.set()
            for thread in threads:
                thread.join()
