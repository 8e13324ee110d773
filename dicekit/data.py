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
_NOTED: set[str] = set()  # data notes already printed by this process (said once, not per read)


def prompt_key(prompt) -> str:
    """Canonical text of a prompt (text or messages), used for ids and for overlap checks."""
    if isinstance(prompt, str):
        return prompt
    return json.dumps([{"role": m["role"], "content": m["content"]} for m in prompt], ensure_ascii=False)


def make_prompt_id(prompt) -> str:
    return "p-" + hashlib.sha1(prompt_key(prompt).encode()).hexdigest()[:12]


def read_text(path: str | Path) -> str:
    """A UTF-8 text file's content; a byte that is not UTF-8 is a UserError naming the file and line,
    an OS error (missing, unreadable) one naming the file."""
    return decode_utf8(read_bytes(path), path)


def read_bytes(path: str | Path) -> bytes:
    path = Path(path)
    try:
        return path.read_bytes()
    except OSError as e:
        from dicekit.rundir import os_error_message

        raise UserError(os_error_message(e, path)) from None


def decode_utf8(raw: bytes, path: str | Path) -> str:
    """``raw`` decoded as UTF-8 (a BOM is dropped); an invalid byte is a UserError with its line.

    >>> decode_utf8(b"a\\nb\\xff", "f.jsonl")
    Traceback (most recent call last):
    ...
    dicekit.errors.UserError: f.jsonl:2: not UTF-8 text (byte 0xff at column 2); re-save the file as UTF-8
    """
    raw = raw[3:] if raw.startswith(b"\xef\xbb\xbf") else raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise UserError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column {col}); "
                        f"re-save the file as UTF-8") from None


def read_jsonl_rows(path: str | Path) -> list[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSONL file; a malformed line (bad JSON, not
    UTF-8) is a UserError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    rows = []
    for n, line in enumerate(read_text(path).splitlines(), 1):
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


def read_json(path: str | Path):
    """A JSON file's value; bad JSON or text that is not UTF-8 is a UserError with the line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from None


def read_parquet(path: str | Path, **kwargs) -> pd.DataFrame:
    """A parquet file; a file that is not parquet (or unreadable) is a UserError naming it."""
    import pyarrow

    read_bytes(path)[:0]  # OS errors (missing, unreadable) as one line
    try:
        return pd.read_parquet(path, **kwargs)
    except (pyarrow.ArrowException, OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable parquet file ({str(e).splitlines()[0][:120]})") from None


def read_records(source: str, split: str = "train") -> tuple[list[tuple[int | None, dict]], str]:
    """Rows (with their line numbers where meaningful) and a label for messages. A source that looks
    like a local path (dicekit.rundir.is_local_spec) is never looked up on the hub."""
    from dicekit.rundir import is_local_spec

    path = Path(source).expanduser()
    if path.is_file():
        if path.suffix == ".jsonl":
            return read_jsonl_rows(path), str(path)
        if path.suffix == ".json":
            data = read_json(path)
            if isinstance(data, dict):
                data = data.get(split, data.get("data"))
            if not isinstance(data, list):
                raise UserError(f"{path}: expected a JSON list of objects")
            return [(i + 1, r) for i, r in enumerate(data)], str(path)
        if path.suffix == ".parquet":
            df = read_parquet(path)
            return [(i + 1, r) for i, r in enumerate(df.to_dict("records"))], str(path)
        raise UserError(f"{path}: unsupported file type (use {', '.join(sorted(_SUFFIXES))})")
    if is_local_spec(source):
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
    except (ConnectionError, OSError) as e:  # offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE) or no network
        raise UserError(f"{name}: not a local file or folder, and the hub cannot be reached "
                        f"({str(e).splitlines()[0][:120]})") from None
    return [(i + 1, r) for i, r in enumerate(ds)]


def check_limit(limit: int | None, name: str) -> None:
    """A row limit is None (all rows) or >= 1."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise UserError(f"{name} must be >= 1 (or unset for all rows), got {limit!r}")


def _text_or_messages(value, where: str, field: str):
    if isinstance(value, str):
        return value
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list) and value and all(isinstance(m, dict) and "role" in m and "content" in m for m in value):
        return [{"role": str(m["role"]), "content": str(m["content"])} for m in value]
    raise UserError(f"{where}: field '{field}' must be text or a list of {{role, content}} messages")


def within_limit(n_tokens, limit: int | None, policy: str, where, hint: str = "long_prompts: drop") -> list[bool]:
    """Which inputs fit in ``limit`` tokens. ``policy`` "error": the first that does not is a UserError
    naming ``where(i)`` (its file:line); "drop": they are marked False for the caller to drop and count.

    >>> within_limit([3, 9, 4], 5, "drop", str)
    [True, False, True]
    """
    keep = [limit is None or int(n) <= limit for n in n_tokens]
    if policy == "error" and not all(keep):
        i = keep.index(False)
        raise UserError(f"{where(i)}: {int(n_tokens[i])} tokens, more than max_prompt_tokens={limit} (the model's "
                        f"context minus max_new_tokens unless set); shorten it, or drop such inputs ({hint})")
    return keep


def load_prompts(source: str, split: str = "train", limit: int | None = None, lines: bool = False) -> pd.DataFrame:
    """DataFrame(prompt_id, prompt) in file order, duplicates (same id) dropped; at most ``limit``.
    ``lines``: also a ``where`` column (``file:line`` of each prompt, for messages)."""
    check_limit(limit, "max_prompts")
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
        out.append({"prompt_id": pid, "prompt": prompt, "where": where})
        if limit is not None and len(out) >= limit:
            break
    if not out:
        raise UserError(f"{label}: no prompts")
    return pd.DataFrame(out, columns=["prompt_id", "prompt", "where"][:3 if lines else 2])


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


def load_pairs(source: str, split: str = "train", limit: int | None = None, keep: tuple[str, ...] = (),
               lines: bool = False) -> pd.DataFrame:
    """DataFrame(prompt_id, prompt, chosen, rejected) with chosen/rejected as reply text.

    ``keep``: further fields to carry through unchanged when a record has them (e.g. RewardBench's
    ``subset``, or a round's ``chosen_ids``), as extra columns holding None where a record lacks them.
    An empty ``chosen`` reply is an error; empty ``rejected`` replies are kept and counted in a note on
    stderr. ``lines``: also a ``where`` column (each
    pair's ``file:line``, for messages).
    """
    check_limit(limit, "limit")
    rows, label = read_records(source, split)
    keep = tuple(k for k in keep if k not in ("prompt_id", "prompt", "chosen", "rejected"))
    out, empty_rejected = [], []
    for line, r in rows:
        where = f"{label}:{line}" if line else label
        for field in ("chosen", "rejected"):
            if field not in r or r[field] is None:
                raise UserError(f"{where}: missing field '{field}'")
        prompt = r.get("prompt")
        prompt = None if prompt is None else _text_or_messages(prompt, where, "prompt")
        prompt, chosen = _split_reply(r["chosen"], prompt, where, "chosen")
        prompt, rejected = _split_reply(r["rejected"], prompt, where, "rejected")
        if not chosen.strip():
            raise UserError(f"{where}: field 'chosen' is empty (the preferred response of a pair cannot be empty)")
        if not rejected.strip():
            empty_rejected.append(where)
        if prompt is None or not prompt_key(prompt).strip():
            raise UserError(f"{where}: field 'prompt' is empty")
        pid = str(r["prompt_id"]) if r.get("prompt_id") not in (None, "") else make_prompt_id(prompt)
        out.append({"prompt_id": pid, "prompt": prompt, "chosen": chosen, "rejected": rejected,
                    **{k: r.get(k) for k in keep}, "where": where})
        if limit is not None and len(out) >= limit:
            break
    if not out:
        raise UserError(f"{label}: no preference pairs")
    if empty_rejected and empty_rejected[0] not in _NOTED:  # kept (an empty answer can lose), never silently
        import sys

        _NOTED.add(empty_rejected[0])
        print(f"note: {len(empty_rejected)} pairs have an empty 'rejected' response (kept; first at "
              f"{empty_rejected[0]})", file=sys.stderr)
    return pd.DataFrame(out, columns=["prompt_id", "prompt", "chosen", "rejected", *keep, *(["where"] if lines else [])])
