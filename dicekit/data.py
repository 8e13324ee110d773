"""Prompt sets and offline preference pairs: loading and validation.

Sources: a local ``.jsonl`` / ``.json`` / ``.parquet`` file, a local folder of such files (read
with ``datasets``, as a hub dataset would be), or a hub dataset id (``org/name`` or
``org/name@revision``, with a split). Fields:

* prompts: ``prompt`` (text, or a chat message list), optional ``prompt_id``;
* pairs: ``prompt``, ``chosen``, ``rejected``. ``chosen``/``rejected`` are response text, or chat
  message lists whose last message is the assistant's reply (UltraFeedback-binarized's shape; a
  ``prompt`` missing there is taken from the messages before the reply).

A prompt without ``prompt_id`` gets ``p-`` + the first 12 hex digits of the SHA-1 of its text, so ids
are stable when a file is reordered. Every problem is a UserError naming file, line and field.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd

from dicekit.errors import UserError

_SUFFIXES = {".jsonl", ".json", ".parquet"}


def prompt_key(prompt) -> str:
    """Canonical text of a prompt (text or messages), used for ids and for overlap checks."""
    if isinstance(prompt, str):
        return prompt
    return json.dumps([{"role": m["role"], "content": m["content"]} for m in prompt], ensure_ascii=False)


def make_prompt_id(prompt) -> str:
    return "p-" + hashlib.sha1(prompt_key(prompt).encode()).hexdigest()[:12]


def read_jsonl_rows(path: str | Path) -> list[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSONL file; a malformed or non-UTF-8 line is
    a UserError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    rows = []
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise UserError(f"{path}:{n}: not UTF-8 text (byte {e.start + 1} of the line)") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{n}: malformed JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise UserError(f"{path}:{n}: expected a JSON object")
            rows.append((n, obj))
    return rows


def read_jsonl(path: str | Path) -> list[dict]:
    """The objects of a JSONL file (see :func:`read_jsonl_rows`)."""
    return [obj for _, obj in read_jsonl_rows(path)]


def read_records(source: str, split: str = "train") -> tuple[list[tuple[int | None, dict]], str]:
    """Rows (with their line numbers where meaningful) and a label for messages."""
    path = Path(source)
    if path.is_file():
        if path.suffix == ".jsonl":
            return read_jsonl_rows(path), str(path)
        if path.suffix == ".json":
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from None
            if isinstance(data, dict):
                data = data.get(split, data.get("data"))
            if not isinstance(data, list):
                raise UserError(f"{path}: expected a JSON list of objects")
            return [(i + 1, r) for i, r in enumerate(data)], str(path)
        if path.suffix == ".parquet":
            df = pd.read_parquet(path)
            return [(i + 1, r) for i, r in enumerate(df.to_dict("records"))], str(path)
        raise UserError(f"{path}: unsupported file type (use {', '.join(sorted(_SUFFIXES))})")
    if path.exists() or source.startswith((".", "/", "~")):
        if not path.is_dir():
            raise UserError(f"{source}: file not found")
        return _read_dataset(str(path), None, split), str(path)
    name, _, rev = source.partition("@")
    return _read_dataset(name, rev or None, split), source


def _read_dataset(name: str, revision: str | None, split: str) -> list[tuple[int | None, dict]]:
    import datasets

    try:
        ds = datasets.load_dataset(name, split=split, revision=revision)
    except ValueError as e:
        raise UserError(f"{name}: {str(e).splitlines()[0]}") from None
    except (FileNotFoundError, datasets.exceptions.DatasetNotFoundError) as e:
        raise UserError(f"{name}: dataset not found ({str(e).splitlines()[0]})") from None
    return [(i + 1, r) for i, r in enumerate(ds)]


def _text_or_messages(value, where: str, field: str):
    if isinstance(value, str):
        return value
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list) and value and all(isinstance(m, dict) and "role" in m and "content" in m for m in value):
        return [{"role": str(m["role"]), "content": str(m["content"])} for m in value]
    raise UserError(f"{where}: field '{field}' must be text or a list of {{role, content}} messages")


def load_prompts(source: str, split: str = "train", limit: int | None = None) -> pd.DataFrame:
    """DataFrame(prompt_id, prompt) in file order, duplicates (same id) dropped."""
    rows, label = read_records(source, split)
    out, seen = [], set()
    for line, r in rows:
        where = f"{label}:{line}" if line else label
        if "prompt" not in r or r["prompt"] is None:
            raise UserError(f"{where}: missing field 'prompt'")
        prompt = _text_or_messages(r["prompt"], where, "prompt")
        if not prompt_key(prompt).strip():
            raise UserError(f"{where}: field 'prompt' is empty")
        pid = str(r["prompt_id"]) if r.get("prompt_id") not in (None, "") else make_prompt_id(prompt)
        if pid in seen:
            continue
        seen.add(pid)
        out.append({"prompt_id": pid, "prompt": prompt})
        if limit is not None and len(out) >= limit:
            break
    if not out:
        raise UserError(f"{label}: no prompts")
    return pd.DataFrame(out, columns=["prompt_id", "prompt"])


def _split_reply(value, prompt, where: str, field: str):
    """(prompt, reply text) from a text reply or a message list ending in the assistant's reply."""
    value = _text_or_messages(value, where, field)
    if isinstance(value, str):
        return prompt, value
    if value[-1]["role"] != "assistant":
        raise UserError(f"{where}: field '{field}': last message must be the assistant's reply")
    context = value[:-1]
    if prompt is None:
        if not context:
            raise UserError(f"{where}: missing field 'prompt'")
        prompt = context if len(context) > 1 or context[0]["role"] != "user" else context[0]["content"]
    return prompt, value[-1]["content"]


def load_pairs(source: str, split: str = "train", limit: int | None = None, keep: tuple[str, ...] = ()) -> pd.DataFrame:
    """DataFrame(prompt_id, prompt, chosen, rejected) with chosen/rejected as reply text.

    ``keep``: further fields to carry through unchanged when a record has them (e.g. RewardBench's
    ``subset``, or a round's ``chosen_ids``), as extra columns holding None where a record lacks them.
    """
    rows, label = read_records(source, split)
    keep = tuple(k for k in keep if k not in ("prompt_id", "prompt", "chosen", "rejected"))
    out = []
    for line, r in rows:
        where = f"{label}:{line}" if line else label
        for field in ("chosen", "rejected"):
            if field not in r or r[field] is None:
                raise UserError(f"{where}: missing field '{field}'")
        prompt = r.get("prompt")
        prompt = None if prompt is None else _text_or_messages(prompt, where, "prompt")
        prompt, chosen = _split_reply(r["chosen"], prompt, where, "chosen")
        prompt, rejected = _split_reply(r["rejected"], prompt, where, "rejected")
        if prompt is None or not prompt_key(prompt).strip():
            raise UserError(f"{where}: field 'prompt' is empty")
        pid = str(r["prompt_id"]) if r.get("prompt_id") not in (None, "") else make_prompt_id(prompt)
        out.append({"prompt_id": pid, "prompt": prompt, "chosen": chosen, "rejected": rejected,
                    **{k: r.get(k) for k in keep}})
        if limit is not None and len(out) >= limit:
            break
    if not out:
        raise UserError(f"{label}: no preference pairs")
    return pd.DataFrame(out, columns=["prompt_id", "prompt", "chosen", "rejected", *keep])
