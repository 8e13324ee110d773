"""Progress bars and one-line stage summaries (rich), silenced by ``quiet``."""

from __future__ import annotations

import sys
from contextlib import contextmanager


@contextmanager
def bar(description: str, total: int, quiet: bool = False):
    """Yields ``advance(n=1)``. Draws to stderr; nothing when quiet or total == 0."""
    if quiet or total == 0:
        yield lambda n=1: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.console import Console

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TimeRemainingColumn(), console=Console(file=sys.stderr), transient=False,
    ) as p:
        task = p.add_task(description, total=total)
        yield lambda n=1: p.advance(task, n)


def say(message: str, quiet: bool = False) -> None:
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def silence_libraries() -> None:
    """Switch off the progress bars that transformers, datasets and huggingface_hub draw themselves
    (weight loading, dataset preparation, downloads): ``--quiet`` means none at all."""
    import os

    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    try:
        from transformers.utils import logging as tlog

        tlog.disable_progress_bar()
        tlog.set_verbosity_error()
    except ImportError:
        pass
    try:
        import datasets

        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
    except ImportError:
        pass
