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

An iteration abandoned before its end (Lightning's sanity check and ``limit_val_batches`` stop early and keep
the iterator until the next evaluation) leaves its threads waiting on the full queue. :func:`stop_decode_threads`
ends every such iteration; :class:`~tvau_lightning.data.loader.ForkSafeDataLoader` calls it before it forks
worker processes, so no worker is forked while decoding threads run, and resuming a stopped iteration raises
instead of waiting forever.

The ``VideoClipDataModule`` evaluation loaders use it by default (``eval_loading``); measured against worker
processes in ``benchmarks/README.md`` (evaluation data path). The thread machinery itself,
:func:`interleave_in_threads`, also lets ``tvau analyze`` decode the next batches while the model runs.
"""

from __future__ import annotations

import functools
import queue
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from torch.utils.data import IterableDataset

if TYPE_CHECKING:
    from tvau_lightning.data.clips import SequentialEvaluationClips
    from tvau_lightning.data.types import ClipSample

__all__ = ["ThreadedEvaluationClips", "interleave_in_threads", "stop_decode_threads"]

T = TypeVar("T")

_DONE = object()  # a thread's last item
_POLL_S = 0.1  # how often a thread waiting on a full queue checks whether the consumer stopped


class _Run:
    """The threads of one iteration and the event that stops them."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def end(self) -> None:
        self.stop.set()
        for thread in self.threads:
            if thread is not threading.current_thread():
                thread.join()


_RUNS: weakref.WeakSet[_Run] = weakref.WeakSet()  # the iterations whose threads may still run


def stop_decode_threads() -> int:
    """Stop the threads of every unfinished :class:`ThreadedEvaluationClips` iteration of this process (each
    thread ends after its current block); returns how many iterations were stopped. Resuming one of them raises
    ``RuntimeError``; a new iteration starts new threads."""
    runs = [run for run in list(_RUNS) if not run.stop.is_set()]
    for run in runs:
        run.end()
    return len(runs)


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
            return self.clips.iter_videos(videos)
        return interleave_in_threads([functools.partial(self.clips.iter_videos, shard) for shard in shards],
                                     prefetch=self.prefetch)


def interleave_in_threads(producers: Sequence[Callable[[], Iterable[T]]], prefetch: int = 2,
                          name: str = "tvau-decode") -> Iterator[T]:
    """The items of every producer (``producers[k]()`` iterated in thread ``name-k``), as they come: each
    producer's items in order, those of different producers interleaved; ``prefetch`` items per producer wait in a
    bounded queue. An exception in a producer is raised here; closing the iterator (or :func:`stop_decode_threads`)
    stops the threads after their current item, and a stopped iterator raises ``RuntimeError`` when resumed."""
    out: queue.Queue[Any] = queue.Queue(maxsize=prefetch * max(1, len(producers)))
    run = _Run()
    stop = run.stop

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce(producer: Callable[[], Iterable[T]]) -> None:
        try:
            for item in producer():
                if not put(item):
                    return
        except BaseException as error:  # noqa: BLE001 - raised again by the consuming thread
            put(_Failed(error))
            return
        put(_DONE)

    run.threads = [threading.Thread(target=produce, args=(producer,), name=f"{name}-{k}", daemon=True)
                   for k, producer in enumerate(producers)]
    _RUNS.add(run)
    for thread in run.threads:
        thread.start()
    try:
        running = len(run.threads)
        while running:
            try:
                item = out.get(timeout=_POLL_S)
            except queue.Empty:
                if stop.is_set():
                    raise RuntimeError("this iteration was stopped (stop_decode_threads: worker processes were "
                                       "started); iterate again") from None
                continue
            if item is _DONE:
                running -= 1
            elif isinstance(item, _Failed):
                raise item.error
            else:
                yield item
    finally:
        run.end()
