"""The run-folder contract (docs/run-folder.md): paths, atomic writes, provenance.

Every file a stage produces is written aside (``.<name>.tmp-<pid>``) and renamed into place, so a
file that exists is complete; a stage whose output exists is skipped on re-run. Work in progress
(generation and scoring shards) lives in ``round_<t>/.work/`` and is removed when the round ends.
No torch here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import yaml

import dicekit


def cache_dir(name: str) -> Path:
    """``$DICEKIT_CACHE/<name>``, default ``~/.cache/dicekit/<name>``: the one cache root (world
    builds, converted models, judge annotations)."""
    base = os.environ.get("DICEKIT_CACHE") or str(Path.home() / ".cache" / "dicekit")
    return Path(base) / name


def round_dir(run_dir: str | Path, t: int) -> Path:
    return Path(run_dir) / f"round_{t}"


def finished_rounds(run_dir: str | Path) -> list[int]:
    """Rounds whose metrics.json exists (the last file a round writes), in order."""
    out = []
    for p in Path(run_dir).glob("round_*"):
        suffix = p.name.split("_", 1)[1]
        if suffix.isdigit() and (p / "metrics.json").is_file():
            out.append(int(suffix))
    return sorted(out)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path; on success rename it to ``path`` (file or folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
    try:
        yield tmp
        if path.exists() and path.is_dir():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=_json_default) + "\n")


def write_jsonl(path: str | Path, rows) -> Path:
    """One JSON object per line, written atomically."""
    return write_text(path, "".join(json.dumps(r, ensure_ascii=False, default=_json_default) + "\n" for r in rows))


def write_yaml(path: str | Path, obj: Any) -> Path:
    return write_text(path, yaml.safe_dump(obj, sort_keys=False))


def write_parquet(path: str | Path, df) -> Path:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return Path(path)


def write_csv(path: str | Path, df) -> Path:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return Path(path)


def _json_default(o):
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def git_sha() -> str | None:
    """The dicekit source tree's commit, if it is a git checkout (else None)."""
    src = Path(dicekit.__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    sha = out.stdout.strip()
    if out.returncode != 0 or not sha:
        return None
    dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=5).stdout.strip()
    return sha + ("-dirty" if dirty else "")


def provenance() -> dict[str, Any]:
    return {"dicekit_version": dicekit.__version__, "git_sha": git_sha()}


def fault_point(name: str) -> None:
    """Crash-testing hook: SIGKILL this process when env DICEKIT_KILL_AT equals ``name``.

    Stages call it right after writing each shard (``gen:<i>``, ``score_policy:<i>``, ...), so tests
    can kill a round at an exact point and check that the resumed run equals an uninterrupted one.
    """
    if os.environ.get("DICEKIT_KILL_AT") == name:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def cleanup_work(rdir: Path) -> None:
    shutil.rmtree(Path(rdir) / ".work", ignore_errors=True)
