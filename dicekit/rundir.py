"""The run-folder contract (docs/run-folder.md): paths, atomic writes, the run lock, provenance.

Every file a stage produces is written aside (``.<name>.tmp-<pid>``) and renamed into place, so a
file that exists is complete; a stage whose output exists is skipped on re-run. Work in progress
(generation and scoring shards) lives in ``round_<t>/.work/`` and is removed when the round ends.

**One writer at a time.** Every command that writes into a run folder holds :func:`run_lock`
(``RUN_DIR/.lock``, an advisory ``flock`` that the kernel releases when its process dies, so a lock
left by a killed process is taken over without asking). A second writer stops at once with exit 2
naming the holder (pid, host, since, command). Under torchrun, rank 0 holds the lock for all ranks;
the others check that it is their own launch's rank 0 that holds it.

**Portable run folders.** Paths are stored relative to the run folder when they point inside it and
absolute otherwise (:func:`stored_path`), and read back against wherever the folder is now
(:func:`resolved_path`), so a run folder can be moved or copied. Reports show paths with
:func:`shown_path` (relative to the run folder, or ``~``), never a machine's absolute path.
No torch here.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import yaml

import dicekit
from dicekit.errors import UserError

LOCK_NAME = ".lock"


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


# ---------------------------------------------------------------------------------------------
# the run lock


_HELD: dict[str, tuple[int, int]] = {}  # resolved lock path -> (fd, depth): re-entrant within a process


def launch_id() -> str | None:
    """Identifies one torchrun / accelerate launch (shared by its ranks), None outside one."""
    if "WORLD_SIZE" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    parts = [os.environ.get(k, "") for k in ("TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT")]
    return ":".join(parts)


def lock_holder(run_dir: str | Path) -> dict | None:
    """The holder recorded in ``RUN_DIR/.lock`` (pid, host, since, command, launch), or None."""
    try:
        return json.loads((Path(run_dir) / LOCK_NAME).read_text(encoding="utf-8") or "null")
    except (OSError, ValueError):
        return None


def describe_holder(h: dict | None) -> str:
    if not h:
        return "another process (no holder recorded yet)"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(h.get("since", 0)))
    return f"pid {h.get('pid')} on {h.get('host')} since {since} ({h.get('command', '?')})"


def _writable_dir(path: Path) -> None:
    """Create ``path`` (and parents); a read-only, missing-parent or full file system is a UserError."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UserError(f"{path}: exists and is not a folder") from None
    except OSError as e:
        raise UserError(os_error_message(e, path)) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"{path}: run folder is not writable")


@contextmanager
def run_lock(run_dir: str | Path, command: str | None = None) -> Iterator[dict]:
    """Hold the run folder's write lock for the ``with`` block (creating the folder if needed).

    Re-entrant within one process (the demo's report inside its rounds). Under a multi-process launch
    only rank 0 takes the lock; the other ranks wait until their own launch holds it (a different
    holder is an error). Yields the holder record.
    """
    run_dir = Path(run_dir)
    _writable_dir(run_dir)
    path = run_dir / LOCK_NAME
    key = str(path.resolve())
    if key in _HELD:
        fd, depth = _HELD[key]
        _HELD[key] = (fd, depth + 1)
        try:
            yield lock_holder(run_dir) or {}
        finally:
            fd, depth = _HELD[key]
            _HELD[key] = (fd, depth - 1)
        return
    launch, rank = launch_id(), int(os.environ.get("RANK", "0"))
    if launch is not None and rank != 0:
        yield _follow_rank0(run_dir, launch)
        return
    fd, stale = _acquire(path)
    info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(),
            "command": command or " ".join(["dicekit", *sys.argv[1:]])[:200], "launch": launch}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)
    os.fsync(fd)
    if stale:
        print(f"{run_dir}: took over the lock left by {describe_holder(stale)}, which is no longer running",
              file=sys.stderr)
    _HELD[key] = (fd, 1)
    try:
        yield info
    finally:
        del _HELD[key]
        _release(path, fd)


def lock_if_inside(run_dir: str | Path, out: str | Path, command: str):
    """:func:`run_lock` of ``run_dir`` when ``out`` lies inside it (a report or figures written into
    the run), else a no-op context (writing elsewhere does not touch the run)."""
    from contextlib import nullcontext

    base = os.path.abspath(run_dir).rstrip(os.sep) + os.sep
    return run_lock(run_dir, command) if os.path.abspath(out).startswith(base) else nullcontext()


def _acquire(path: Path) -> tuple[int, dict | None]:
    """(fd holding an exclusive flock on ``path``, stale holder record or None). Loops until the fd
    locked is the inode at ``path`` (a releasing holder unlinks the file)."""
    import fcntl

    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise UserError(os_error_message(e, path)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise UserError(f"{path.parent}: in use by {describe_holder(lock_holder(path.parent))}; "
                            f"wait for it to finish (one writer per run folder)") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            stale = None
            raw = os.pread(fd, 4096, 0)
            if raw.strip():
                try:
                    stale = json.loads(raw)
                except ValueError:
                    stale = {"pid": "?", "host": "?", "since": 0}
            return fd, stale
        os.close(fd)  # the holder released (and unlinked) it between our open and flock: retry


def _release(path: Path, fd: int) -> None:
    """Empty and unlink the lock file, then unlock (a waiter that opened the old inode retries)."""
    try:
        os.ftruncate(fd, 0)
        path.unlink(missing_ok=True)
    except OSError:
        pass
    finally:
        os.close(fd)


def _follow_rank0(run_dir: Path, launch: str, poll_s: float = 0.2) -> dict:
    """Rank r > 0: wait until this launch's rank 0 holds the lock; another holder is an error."""
    timeout = float(os.environ.get("DICEKIT_WAIT_TIMEOUT_S", 86400))
    deadline = time.monotonic() + timeout
    while True:
        h = lock_holder(run_dir)
        if h and h.get("launch") == launch:
            return h
        if h and _is_locked(run_dir / LOCK_NAME):
            raise UserError(f"{run_dir}: in use by {describe_holder(h)}; wait for it to finish "
                            f"(one writer per run folder)")
        if time.monotonic() > deadline:
            raise UserError(f"{run_dir}: rank 0 of this launch never took the run lock")
        time.sleep(poll_s)


def _is_locked(path: Path) -> bool:
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def os_error_message(e: OSError, path: str | Path | None = None) -> str:
    """One line for an OS error on a file: ``PATH: permission denied`` / ``no space left`` / ..."""
    where_ = e.filename or path or "?"
    what = {errno.EACCES: "permission denied", errno.EPERM: "permission denied", errno.EROFS: "read-only file system",
            errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
            errno.ENOENT: "not found", errno.ENOTDIR: "a parent is not a folder",
            errno.EISDIR: "is a folder"}.get(e.errno, e.strerror or str(e))
    return f"{where_}: {what}"


# ---------------------------------------------------------------------------------------------
# paths stored in a run folder


# keys of run.yaml / round_<t>/config.yaml that hold model or data paths (stored as stored_path)
PATH_KEYS = ("policy", "reference", "run_policy", "run_reference", "prompts", "offline_data")


def resolved_config(run_dir: str | Path, conf: dict) -> dict:
    """A run.yaml / config.yaml mapping with its PATH_KEYS resolved against the run folder."""
    return {k: resolved_path(run_dir, v) if k in PATH_KEYS and isinstance(v, str) else v for k, v in conf.items()}


def stored_path(run_dir: str | Path, spec: str | None) -> str | None:
    """How a model/data path is recorded in the run folder: ``./``-relative to the run folder (posix)
    when it lies inside it, absolute when it is a local path outside, unchanged when it is not a
    local path (a hub id). The ``./`` keeps a stored path from ever reading as a hub id.

    >>> stored_path("/r", "/r/round_1/model"), stored_path("/r", "/data/pi0"), stored_path("/r", "org/m")
    ('./round_1/model', '/data/pi0', 'org/m')
    """
    if spec is None or not is_local_spec(spec):
        return spec
    p = Path(os.path.abspath(Path(spec).expanduser()))
    base = Path(os.path.abspath(run_dir))
    try:
        return "./" + p.relative_to(base).as_posix()
    except ValueError:
        return str(p)


def resolved_path(run_dir: str | Path, stored: str | None) -> str | None:
    """A path read from a run folder's files, as usable from here: ``./``-relative paths are resolved
    against the run folder (wherever it is now); absolute paths and hub ids are returned as they are.

    >>> resolved_path("/new/place", "./round_1/model"), resolved_path("/new/place", "org/name")
    ('/new/place/round_1/model', 'org/name')
    """
    if stored is None or not str(stored).startswith(("./", "../")):
        return stored
    return os.path.normpath(os.path.join(str(run_dir), stored))


def shown_path(path: str | Path | None, run_dir: str | Path | None = None) -> str | None:
    """A path as a report shows it: relative to the run folder when inside it, ``$DICEKIT_CACHE/...``
    inside dicekit's cache root when DICEKIT_CACHE is set, ``~/...`` under the home folder, else
    relative to the run folder (``../...``) — never this machine's absolute path;
    hub ids unchanged.

    >>> shown_path("/r/round_1/model", "/r"), shown_path("/elsewhere/m", "/r")
    ('round_1/model', '../elsewhere/m')
    """
    if path is None or not is_local_spec(str(path)):
        return None if path is None else str(path)
    p = os.path.abspath(Path(path).expanduser())
    if run_dir is not None:
        base = os.path.abspath(run_dir)
        if p == base or p.startswith(base.rstrip(os.sep) + os.sep):
            return os.path.relpath(p, base)
    cache = os.environ.get("DICEKIT_CACHE")
    if cache and p.startswith(os.path.abspath(cache).rstrip(os.sep) + os.sep):  # a world model, say
        return "$DICEKIT_CACHE/" + os.path.relpath(p, os.path.abspath(cache))
    home = str(Path.home())
    if p.startswith(home.rstrip(os.sep) + os.sep):
        return "~/" + os.path.relpath(p, home)
    return os.path.relpath(p, os.path.abspath(run_dir)) if run_dir is not None else os.path.basename(p)


LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet", ".gguf", ".yaml", ".yml", ".csv", ".safetensors", ".bin", ".txt")


def _looks_like_hub_id(spec: str) -> bool:
    """``name`` or ``org/name`` (optionally ``@revision``), with the characters the hub allows."""
    import re

    name = spec.split("@", 1)[0]
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?", name)) and not name.endswith(LOCAL_SUFFIXES)


def is_local_spec(spec: str, check_exists: bool = True) -> bool:
    """Does ``spec`` name a local file or folder rather than a hub id? True when it exists, starts with
    ``.``, ``/`` or ``~``, ends in a file suffix (.jsonl, .json, .parquet, .gguf, ...), has more than one
    path separator or a backslash, or its first component exists here as a folder (``models/pi0`` with
    a ``models/`` folder). Everything else must look like a hub id (``org/name[@rev]``) to be one.

    >>> is_local_spec("HuggingFaceH4/zephyr-7b-beta", False), is_local_spec("data/x.jsonl", False)
    (False, True)
    """
    if check_exists and Path(spec).expanduser().exists():
        return True
    if spec.startswith((".", "/", "~")) or "\\" in spec or spec.split("@", 1)[0].count("/") > 1:
        return True
    if spec.lower().split("@", 1)[0].endswith(LOCAL_SUFFIXES):
        return True
    first = spec.split("/", 1)[0]
    if "/" in spec and Path(first).is_dir():
        return True
    return not _looks_like_hub_id(spec)
