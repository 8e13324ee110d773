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
