"""A content-keyed cache of judge annotations, so a crashed or repeated evaluation never pays twice.

Layout: ``CACHE_DIR/<judge_key>/`` holds ``judge.json`` (what the judge is: protocol, model, endpoint,
template hash — never a credential) and ``annotations.jsonl`` (one JSON object per judged item,
appended and flushed as each call returns, so a crash loses at most the calls in flight). An entry's
key is the SHA-256 of the judge identity, the instruction and both outputs in the order given
(output_1 = baseline, output_2 = model). A truncated last line (a crash mid-write) is ignored.

Only successful judgements (a preference) are stored; a failed call is retried on the next run.
The default folder is ``$DICEKIT_CACHE/judge_annotations`` or ``~/.cache/dicekit/judge_annotations``.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

from dicekit import rundir
from dicekit.evals.judges import Comparison, Judgement


def default_cache_dir() -> Path:
    from dicekit.rundir import cache_dir

    return cache_dir("judge_annotations")


def _sha256(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


class AnnotationCache:
    """Judgements of one judge, keyed by content; thread-safe appends."""

    def __init__(self, folder: str | Path, judge_identity: dict):
        self.judge_key = _sha256(judge_identity)[:20]
        self.folder = Path(folder) / self.judge_key
        self.folder.mkdir(parents=True, exist_ok=True)
        ident = self.folder / "judge.json"
        if not ident.exists():
            rundir.write_text(ident, json.dumps(judge_identity, indent=2, sort_keys=True) + "\n")
        self.path = self.folder / "annotations.jsonl"
        self._identity = judge_identity
        self._lock = threading.Lock()
        self._entries: dict[str, dict] = {}
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8") as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a crash
                if isinstance(entry, dict) and "key" in entry:
                    self._entries[entry["key"]] = entry

    def key(self, item: Comparison) -> str:
        return _sha256([self._identity, item.instruction, item.output_1, item.output_2])

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, item: Comparison) -> Judgement | None:
        entry = self._entries.get(self.key(item))
        if entry is None:
            return None
        return Judgement(preference=entry["preference"], raw_completion=entry.get("raw_completion"),
                         price=float(entry.get("price", 0.0)), time=float(entry.get("time", 0.0)))

    def put(self, item: Comparison, judgement: Judgement) -> None:
        if judgement.preference is None:
            return
        entry = {"key": self.key(item), "preference": judgement.preference,
                 "raw_completion": judgement.raw_completion, "price": judgement.price, "time": judgement.time}
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        with self._lock:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
            self._entries[entry["key"]] = entry
