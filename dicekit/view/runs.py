"""Read-only loaders of run folders (docs/run-folder.md), for plots, the report and the dashboard.

Only pandas, pyarrow, json and yaml: never torch, transformers or the code that writes the files.
Every loader takes ``(run_dir, t)`` and returns the file's content, or ``None`` when an optional
file is absent (a round still in progress, or an artifact nobody computed). A file that exists but
cannot be read raises :class:`~dicekit.errors.UserError` naming it.

Files read, per round folder ``round_<t>/``: ``config.yaml``, ``samples.parquet``,
``pairs.parquet``, ``alpha_sweep.csv``, ``train_log.jsonl``, ``metrics.json``, ``evals/*.json``
(any JSON objects; their scalar fields become columns) and ``token_credit.parquet``; per run,
``evals/ifeval/<model name>/`` (``metrics.json``, ``results.jsonl``: :func:`load_ifeval_evals`).
``token_credit.parquet``:

    prompt_id (str), sample_id (int), token_ids (list[int]), tokens (list[str]: the decoded text
    piece of each token), logratio (list[float]: log π_policy − log π_ref per token, nats; its sum
    is the sample's ``reward``)

:func:`pair_table` adds the derived columns readers need (lengths, length difference, reward
margins, judge agreement) to a pairs frame, whatever optional columns its writer included.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from dicekit.errors import UserError
from dicekit.rundir import round_dir


def rounds(run_dir: str | Path) -> list[int]:
    """Rounds t ≥ 1 that have a ``round_<t>/`` folder, finished or not, in order."""
    out = []
    for p in Path(run_dir).glob("round_*"):
        suffix = p.name.split("_", 1)[1]
        if p.is_dir() and suffix.isdigit() and int(suffix) >= 1:
            out.append(int(suffix))
    return sorted(out)


def check_run_dir(run_dir: str | Path) -> Path:
    """The run folder as a Path; UserError unless it is a folder with at least one round folder."""
    path = Path(run_dir)
    if not path.is_dir():
        raise UserError(f"{path}: not a folder (expected a run folder with round_<t>/ inside)")
    if not rounds(path):
        raise UserError(f"{path}: no round_<t>/ folder inside; is this a dicekit run folder?")
    return path


def _read(path: Path, reader):
    if not path.exists():
        return None
    try:
        return reader(path)
    except Exception as err:  # a damaged file is the user's to fix: name it
        raise UserError(f"{path}: cannot be read ({type(err).__name__}: {err})") from err


def _yaml(path: Path) -> dict:
    obj = yaml.safe_load(path.read_text()) or {}
    if not isinstance(obj, dict):
        raise ValueError("not a mapping")
    return obj


def _json_lines(path: Path) -> pd.DataFrame:
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"line {i}: {err}") from err
    return pd.DataFrame(rows)


def load_run_config(run_dir: str | Path) -> dict | None:
    """``run.yaml``: the resolved config of the whole run."""
    return _read(Path(run_dir) / "run.yaml", _yaml)


def load_config(run_dir: str | Path, t: int) -> dict | None:
    """``round_<t>/config.yaml``: the round's resolved config (``alpha`` is the α used)."""
    return _read(round_dir(run_dir, t) / "config.yaml", _yaml)


def load_samples(run_dir: str | Path, t: int, columns: list[str] | None = None,
                 prompt_ids: list[str] | None = None) -> pd.DataFrame | None:
    """``samples.parquet``; optionally only ``columns`` (e.g. without the token-ID lists) and only the
    rows of ``prompt_ids`` (read with a parquet filter, not by loading everything)."""
    filters = None if prompt_ids is None else [("prompt_id", "in", list(prompt_ids))]
    return _read(round_dir(run_dir, t) / "samples.parquet",
                 lambda p: pd.read_parquet(p, columns=columns, filters=filters))


def load_pairs(run_dir: str | Path, t: int, columns: list[str] | None = None) -> pd.DataFrame | None:
    """``pairs.parquet`` as written (see :func:`pair_table` for the derived columns), plus
    ``judge_agrees`` from the round diagnostic's ``diagnostic_pairs.parquet`` (its ``pairs_alpha_star``
    set) when that file exists and the pairs do not carry the column themselves."""
    pairs = _read(round_dir(run_dir, t) / "pairs.parquet", lambda p: pd.read_parquet(p, columns=columns))
    judged = load_diagnostic_pairs(run_dir, t)
    if pairs is None or judged is None or "judge_agrees" in pairs or columns is not None:
        return pairs
    j = judged[judged["set"] == "pairs_alpha_star"]
    j = j.rename(columns={"sample_id_a": "rejected_sample_id", "sample_id_b": "chosen_sample_id"})
    keys = ["prompt_id", "chosen_sample_id", "rejected_sample_id"]
    j = j[keys + ["judge_agrees"]].astype({"chosen_sample_id": "Int64", "rejected_sample_id": "Int64"})
    out = pairs.astype({"chosen_sample_id": "Int64", "rejected_sample_id": "Int64"}).merge(j, on=keys, how="left")
    out["judge_agrees"] = out["judge_agrees"].astype("boolean")
    return out


def load_diagnostic_pairs(run_dir: str | Path, t: int) -> pd.DataFrame | None:
    """``diagnostic_pairs.parquet`` (written by the round diagnostic): set, prompt_id, sample_id_a,
    sample_id_b, preference (judge's, of b over a), judge_agrees (with the implicit reward)."""
    return _read(round_dir(run_dir, t) / "diagnostic_pairs.parquet", pd.read_parquet)


def load_alpha_sweep(run_dir: str | Path, t: int) -> pd.DataFrame | None:
    """``alpha_sweep.csv``: alpha, mean_len_diff, n_pairs — one row per α tried."""
    return _read(round_dir(run_dir, t) / "alpha_sweep.csv", pd.read_csv)


def load_train_log(run_dir: str | Path, t: int) -> pd.DataFrame | None:
    """``train_log.jsonl`` as a frame, one row per logged step (columns as the trainer logged them)."""
    return _read(round_dir(run_dir, t) / "train_log.jsonl", _json_lines)


def load_metrics(run_dir: str | Path, t: int) -> dict | None:
    """``metrics.json``: the round's summary numbers (present once the round is finished)."""
    return _read(round_dir(run_dir, t) / "metrics.json", lambda p: json.loads(p.read_text()))


def load_token_credit(run_dir: str | Path, t: int) -> pd.DataFrame | None:
    """``token_credit.parquet``: per-token log-ratios of some responses (schema in the module doc)."""
    return _read(round_dir(run_dir, t) / "token_credit.parquet", pd.read_parquet)


def load_evals(run_dir: str | Path, t: int) -> pd.DataFrame | None:
    """``round_<t>/evals/*.json`` as one row per file: ``name`` (file stem) + its scalar fields.

    Nested objects are flattened with dots (``{"judge": {"model": m}}`` → ``judge.model``); lists
    are left out. ``t = 0`` reads ``round_0/evals/`` (evaluations of π_0), when present.
    """
    folder = round_dir(run_dir, t) / "evals"
    if not folder.is_dir():
        return None
    rows = []
    for path in sorted(folder.glob("*.json")):
        obj = _read(path, lambda p: json.loads(p.read_text()))
        if isinstance(obj, dict):
            rows.append({"name": path.stem, **_flatten(obj)})
    return pd.DataFrame(rows) if rows else None


def load_ifeval_evals(run_dir: str | Path) -> list[dict]:
    """IFEval evaluations of the run's models: ``evals/ifeval/<name>/metrics.json`` (written by
    ``dicekit eval ifeval --out``), one dict per folder in name order, with ``name`` (the folder) and
    ``results_path`` (its per-prompt ``results.jsonl``, or None when absent) added."""
    folder = Path(run_dir) / "evals" / "ifeval"
    out = []
    for path in sorted(folder.glob("*/metrics.json")) if folder.is_dir() else []:
        obj = _read(path, lambda p: json.loads(p.read_text()))
        if isinstance(obj, dict):
            results = path.parent / "results.jsonl"
            out.append({**obj, "name": path.parent.name, "results_path": results if results.is_file() else None})
    return out


def load_ifeval_results(path: str | Path) -> list[dict]:
    """The per-prompt results (``results.jsonl``) of one IFEval evaluation."""
    df = _read(Path(path), _json_lines)
    return [] if df is None else df.to_dict("records")


def _flatten(obj: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in obj.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        elif value is None or isinstance(value, (str, int, float, bool)):
            out[f"{prefix}{key}"] = value
    return out


def eval_table(run_dir: str | Path) -> pd.DataFrame | None:
    """All rounds' evaluations (round 0 included when present), with a ``round`` column."""
    frames = []
    for t in sorted({0, *rounds(run_dir)}):
        df = load_evals(run_dir, t)
        if df is not None:
            frames.append(df.assign(round=t))
    return pd.concat(frames, ignore_index=True) if frames else None


def sample_length(samples: pd.DataFrame, unit: str) -> pd.Series:
    """Each sample's length in ``unit`` (``chars`` → n_chars, ``tokens`` → n_tokens)."""
    from dicekit.core.pairs import sample_lengths

    return pd.Series(sample_lengths(samples, unit), index=samples.index)


def pair_table(pairs: pd.DataFrame, samples: pd.DataFrame | None = None, unit: str = "chars") -> pd.DataFrame:
    """``pairs`` with derived columns, the written ones kept where present.

    Adds ``chosen_length``/``rejected_length`` (from samples by ``(prompt_id, sample_id)`` for
    generated pairs, else the text's characters when ``unit`` is chars), ``len_diff`` = chosen −
    rejected length, ``chosen_reward``/``rejected_reward`` (from samples), ``reward_margin`` and
    ``reward_lr_margin`` (chosen − rejected; null for offline pairs), and ``judge_agrees`` when
    samples carry ``judge_quality``: True/False where the judge ranks the chosen response above /
    below the rejected one, null on ties and for offline pairs. A written ``judge_agrees`` wins.
    """
    df = pairs.copy()
    lookup = None
    if samples is not None and len(samples):
        cols = ["reward", "n_chars", "n_tokens", "judge_quality"]
        lookup = samples.set_index(["prompt_id", "sample_id"])[[c for c in cols if c in samples.columns]]
        if lookup.index.has_duplicates:
            pid, sid = lookup.index[lookup.index.duplicated()][0]
            raise UserError(f"samples.parquet: prompt_id {pid!r}, sample_id {int(sid)} appears more than once")
        if "n_chars" in lookup and "n_tokens" in lookup:
            lookup = lookup.assign(length=sample_length(lookup, unit))
    for side in ("chosen", "rejected"):
        sid = df[f"{side}_sample_id"] if f"{side}_sample_id" in df else pd.Series(pd.NA, index=df.index)
        found = None
        if lookup is not None:
            keys = pd.MultiIndex.from_arrays([df["prompt_id"], sid.astype("Int64")])
            found = lookup.reindex(keys).set_axis(df.index)
        if f"{side}_length" not in df:
            text_len = df[side].str.len().astype("float64") if unit == "chars" else np.nan
            from_samples = found["length"] if found is not None and "length" in found else np.nan
            df[f"{side}_length"] = pd.Series(from_samples, index=df.index).fillna(pd.Series(text_len, index=df.index))
        if f"{side}_reward" not in df:
            df[f"{side}_reward"] = found["reward"] if found is not None and "reward" in found else np.nan
        if found is not None and "judge_quality" in found:
            df[f"{side}_judge_quality"] = found["judge_quality"]
    df["len_diff"] = df["chosen_length"] - df["rejected_length"]
    df["reward_margin"] = df["chosen_reward"] - df["rejected_reward"]
    df["reward_lr_margin"] = df["chosen_reward_lr"] - df["rejected_reward_lr"]
    if "judge_agrees" not in df and "chosen_judge_quality" in df:
        diff = df["chosen_judge_quality"] - df["rejected_judge_quality"]
        df["judge_agrees"] = pd.array(np.where(diff.isna() | (diff == 0), None, diff > 0), dtype="boolean")
    return df
