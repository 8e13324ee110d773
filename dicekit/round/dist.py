"""Multi-process rounds: which shards this process owns, and waiting for the others' files.

Launched under ``torchrun``/``accelerate launch``, every process runs the same round: generation and
scoring shards are split round-robin by index over ``WORLD_SIZE`` ranks and written to the shared run
folder; rank 0 waits for all of them, merges by (prompt_id, sample_id) and builds the pairs, the
others wait for its files; then all ranks train together (TRL/accelerate handle the process group).
Synchronisation is by files, not by a process group, so the sampling stages need no collective
backend and a single process behaves exactly as before.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from dicekit.errors import UserError


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return rank() == 0


def my_shards(n_shards: int) -> list[int]:
    r, w = rank(), world_size()
    return [i for i in range(n_shards) if i % w == r]


def wait_for(paths: list[Path], what: str, timeout_s: float | None = None, poll_s: float = 0.5) -> None:
    """Block until every path exists. ``timeout_s`` from env DICEKIT_WAIT_TIMEOUT_S (default 24 h)."""
    timeout_s = timeout_s if timeout_s is not None else float(os.environ.get("DICEKIT_WAIT_TIMEOUT_S", 86400))
    deadline = time.monotonic() + timeout_s
    missing = [p for p in paths if not Path(p).exists()]
    while missing:
        if time.monotonic() > deadline:
            raise UserError(f"rank {rank()}: gave up waiting for {what} ({len(missing)} files missing, e.g. {missing[0]})")
        time.sleep(poll_s)
        missing = [p for p in missing if not Path(p).exists()]
