"""A run folder's resumable state, mirrored into a folder that outlives the machine (a repository).

A long recipe on CPUs outlives the machine it runs on. Everything it writes is either a stage's result
(written atomically, skipped when present) or a shard/chunk of an unfinished stage (resumed from), so
a copy of those files — without the model weights and training checkpoints, which are large and can be
recomputed from the files that are copied — lets a run on a new machine go on where the last one
stopped. :func:`publish` copies them out (callable while the run writes: files are taken whole, never
a temporary); :func:`restore` copies back what the run folder lacks, leaving out the files whose
presence would claim that a model exists (a finished round's ``metrics.json`` and ``train_log.jsonl``,
and what the caller names, e.g. π_0's folder), so those stages train again from their restored inputs —
except in the folders the caller calls settled, whose models nothing left to run needs.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

# never mirrored: weights, checkpoints, training work, locks and temporaries
HEAVY_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
MAX_BYTES = 50 * 2**20
_ROUND = re.compile(r"round_\d+")


def _is_work(part: str) -> bool:
    """A stage's work folder: ``.work`` inside a round or an evaluation, ``.<name>.work`` beside a result."""
    return part == ".work" or (part.startswith(".") and part.endswith(".work"))


def _skipped(rel: Path, size: int, skip: tuple[str, ...]) -> bool:
    parts = rel.parts
    training_work = any(_is_work(p) for p in parts) and "train" in parts[:-1]
    return (parts[0] in skip or "model" in parts[:-1] or training_work or any(p.startswith("checkpoint-") for p in parts)
            or rel.name.startswith(".lock") or any(".tmp-" in p for p in parts) or rel.name.endswith(HEAVY_SUFFIXES)
            or size > MAX_BYTES)


def _claims_a_model(rel: Path, keep_out: tuple[str, ...]) -> bool:
    """Files whose presence says a trained model is on disk (kept out of a restore: the model is not):
    a round's ``metrics.json`` / ``train_log.jsonl``, and the caller's ``keep_out`` top-level names."""
    in_round = bool(_ROUND.fullmatch(rel.parent.name)) and rel.name in ("metrics.json", "train_log.jsonl")
    return in_round or rel.parts[0] in keep_out


def _files(root: Path, skip: tuple[str, ...] = ()):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            try:
                size = path.stat().st_size
            except FileNotFoundError:  # replaced while we walked
                continue
            rel = path.relative_to(root)
            if not _skipped(rel, size, skip):
                yield rel, path, size


def _copy(src: Path, dest: Path) -> bool:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    try:
        shutil.copy2(src, tmp)
    except FileNotFoundError:  # the run replaced it meanwhile; the next publish takes the new one
        return False
    os.replace(tmp, dest)
    return True


def _same(a: Path, b: Path) -> bool:
    try:
        sa, sb = a.stat(), b.stat()
    except FileNotFoundError:
        return False
    return sa.st_size == sb.st_size and int(sa.st_mtime) == int(sb.st_mtime)


def publish(run: str | Path, dest: str | Path, skip: tuple[str, ...] = ()) -> list[str]:
    """Copy the run folder's resumable state into ``dest`` (new or changed files only); files that
    vanished from the run folder (a finished stage's work shards) are removed from ``dest``. ``skip``:
    top-level names never mirrored (e.g. a training stage's own work folder). Returns the paths copied."""
    run, dest = Path(run), Path(dest)
    copied, present = [], set()
    for rel, path, _ in _files(run, skip):
        present.add(rel)
        if not _same(path, dest / rel) and _copy(path, dest / rel):
            copied.append(str(rel))
    if dest.is_dir():
        for rel, path, _ in list(_files(dest)):
            if rel not in present and any(_is_work(p) for p in rel.parts):
                path.unlink()
    return copied


def restore(src: str | Path, run: str | Path, keep_out: tuple[str, ...] = (),
            settled: tuple[str, ...] = ()) -> list[str]:
    """Copy into the run folder each mirrored file it lacks, except those that claim a model exists
    (``keep_out``: the caller's top-level names that do, e.g. a trained model's folder and record).
    ``settled``: folders (relative paths, e.g. ``dice/round_1``) whose model nothing left to run needs:
    their records come back whole and their training is not redone. Returns the relative paths restored."""
    src, run = Path(src), Path(run)
    if not src.is_dir():
        return []
    done = []
    for rel, path, _ in _files(src):
        kept = any(rel.parts[:len(Path(f).parts)] == Path(f).parts for f in settled)
        if not (run / rel).exists() and (kept or not _claims_a_model(rel, keep_out)) and _copy(path, run / rel):
            done.append(str(rel))
    return done
