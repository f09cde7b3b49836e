"""Progress bars for the commands: rich, on stderr, so stdout stays for results."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def progress_bar(enabled: bool) -> Iterator[Callable[[str, int], Callable[[int], None]]]:
    """``with progress_bar(on) as task: advance = task("analyzing", total); advance(n)`` — a rich progress bar on
    stderr (``enabled=False`` shows nothing but keeps the same calls)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TimeRemainingColumn(), console=Console(stderr=True), disable=not enabled)

    def add(description: str, total: int) -> Callable[[int], None]:
        task_id = progress.add_task(description, total=total)
        return lambda n: progress.advance(task_id, n)

    with progress:
        yield add
