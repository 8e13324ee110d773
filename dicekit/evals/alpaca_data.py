"""AlpacaEval 2's input files, read and checked: the eval set / reference outputs and a model's outputs
(JSON lists of {instruction, output, generator, dataset}, joined by instruction text), annotation
files (``preference`` checked per row; raw completions re-parsed on request), the instruction
difficulty table, the gamed baselines and published GLM weights of the length-controlled win rate.
A data file missing locally is fetched from the hub dataset tatsu-lab/alpaca_eval (its data file,
never its loading script). Every problem is a :class:`~dicekit.errors.UserError` naming the file and
row. The metrics and the evaluation that use them: :mod:`dicekit.evals.alpaca`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dicekit.data import read_json
from dicekit.errors import UserError, where
from dicekit.evals import lc_glm
from dicekit.evals.judges import preference_from_raw_completion, top_logprobs_of

HUB_REPO = "tatsu-lab/alpaca_eval"
HUB_FILES = {"reference": "alpaca_eval_gpt4_baseline.json", "difficulty": "instruction_difficulty.csv",
             "gamed": "df_gamed.csv"}
ANNOTATION_FIELDS = ("instruction", "output_1", "generator_1", "output_2", "generator_2", "preference")
STORED_DECIMALS = 10  # alpaca_eval writes annotations with pandas' default double precision


# --- reading ---------------------------------------------------------------------------------------

def hub_file(kind: str, flag: str) -> Path:
    """Download one data file of the hub dataset (cached by huggingface_hub)."""
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo_id=HUB_REPO, filename=HUB_FILES[kind], repo_type="dataset"))
    except Exception as e:  # noqa: BLE001 - offline, missing, auth: all the same advice
        raise UserError(f"cannot fetch {HUB_FILES[kind]} from the hub dataset {HUB_REPO} "
                        f"({type(e).__name__}); pass a local file with {flag}") from None


def read_json_list(path: str | Path, what: str) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {what} file not found")
    data = read_json(path)
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a JSON list of {what} records, got {type(data).__name__}")
    if not data:
        raise UserError(f"{path}: the {what} file is empty")
    for i, row in enumerate(data):
        if not isinstance(row, dict):
            raise UserError(f"{where(path, record=i + 1)}: record is not a JSON object")
    return data


def load_outputs(path: str | Path | None, what: str = "outputs", name: str | None = None) -> list[dict]:
    """Outputs (or the reference outputs; ``path=None`` reads the hub's) with one generator."""
    if path is None:
        path = hub_file("reference", "--reference-outputs")
    rows = read_json_list(path, what)
    seen: set[str] = set()
    for i, row in enumerate(rows):
        for key in ("instruction", "output"):
            if not isinstance(row.get(key), str):
                raise UserError(f"{where(path, field=key, record=i + 1)}: missing or not a string")
        if row["instruction"] in seen:
            raise UserError(f"{where(path, field='instruction', record=i + 1)}: duplicate instruction")
        seen.add(row["instruction"])
        if name is not None:
            row["generator"] = name
        if not isinstance(row.get("generator"), str) or not row["generator"]:
            raise UserError(f"{where(path, field='generator', record=i + 1)}: missing (or pass --name)")
    generators = sorted({r["generator"] for r in rows})
    if len(generators) > 1:
        raise UserError(f"{path}: field 'generator': {len(generators)} generators in one file "
                        f"({', '.join(generators[:3])}); evaluate one model per file")
    return rows


def pair_with_reference(reference: list[dict], outputs: list[dict]) -> list[dict]:
    """Annotation rows (without judgement) for every reference instruction the model answered,
    in reference order."""
    by_instruction = {r["instruction"]: r for r in outputs}
    rows = []
    for ref in reference:
        out = by_instruction.get(ref["instruction"])
        if out is None:
            continue
        rows.append({"instruction": ref["instruction"], "output_1": ref["output"], "generator_1": ref["generator"],
                     "dataset": ref.get("dataset", out.get("dataset")), "output_2": out["output"],
                     "generator_2": out["generator"]})
    if not rows:
        raise UserError("no model output matches an instruction of the reference outputs")
    return rows


def _as_preference(value, path, i) -> float:
    try:
        p = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{where(path, field='preference', record=i + 1)}: not a number ({value!r})") from None
    if math.isnan(p):
        raise UserError(f"{where(path, field='preference', record=i + 1)}: NaN preference (a failed judgement); "
                        "re-annotate or drop the row")
    if p == 0.0:
        p = 1.5  # legacy draw
    if not 1.0 <= p <= 2.0:
        raise UserError(f"{where(path, field='preference', record=i + 1)}: {p} is outside [1, 2]")
    return p


def load_annotations(path: str | Path) -> list[dict]:
    """An annotations.json of one model against one baseline, checked."""
    rows = read_json_list(path, "annotations")
    for i, row in enumerate(rows):
        missing = [k for k in ANNOTATION_FIELDS if k not in row]
        if missing:
            raise UserError(f"{where(path, record=i + 1)}: missing field(s) {', '.join(missing)}")
        for k in ("instruction", "output_1", "output_2"):
            if not isinstance(row[k], str):
                raise UserError(f"{where(path, field=k, record=i + 1)}: not a string")
        row["preference"] = _as_preference(row["preference"], path, i)
    for col in ("generator_2", "generator_1"):
        names = sorted({str(r[col]) for r in rows})
        if len(names) > 1:
            raise UserError(f"{path}: field '{col}': {len(names)} generators in one file "
                            f"({', '.join(names[:3])}); metrics are per model against one baseline")
    return rows


def reparse(rows: list[dict], path: str | Path) -> tuple[list[dict], int, int]:
    """Re-derive each preference from its raw_completion: (rows, n_reparsed, n_mismatch).

    A mismatch is a re-derived value that differs from the stored one after rounding to the
    stored precision (10 decimals). Rows without raw_completion (identical outputs) keep theirs.
    """
    if not any(top_logprobs_of(r.get("raw_completion")) for r in rows):
        raise UserError(f"{path}: --reparse needs the judge's raw_completion (with top_logprobs), "
                        "and no row of this file has one")
    out, n, bad = [], 0, 0
    for i, row in enumerate(rows):
        raw = row.get("raw_completion")
        if top_logprobs_of(raw) is None:
            out.append(row)
            continue
        p = preference_from_raw_completion(raw, row["instruction"])
        if p is None:
            raise UserError(f"{where(path, field='raw_completion', record=i + 1)}: neither 'm' nor 'M' among the top logprobs")
        n += 1
        bad += round(p, STORED_DECIMALS) != round(row["preference"], STORED_DECIMALS)
        out.append({**row, "preference": p})
    return out, n, bad


# --- difficulty, gamed baselines and published GLM weights -----------------------------------------

@dataclass(frozen=True)
class Difficulty:
    by_position: np.ndarray | None = None  # difficulty of the i-th eval-set instruction
    by_instruction: dict | None = None


def _read_csv(path: str | Path, flag: str):
    import pandas as pd

    if str(path) == "hub" and flag in ("--difficulty", "--gamed"):
        path = hub_file(flag.lstrip("-"), flag)
    if not Path(path).is_file():
        raise UserError(f"{path}: {flag} file not found")
    try:
        return pd.read_csv(path)
    except Exception as e:  # noqa: BLE001 - parser errors of every kind
        raise UserError(f"{path}: cannot read CSV ({type(e).__name__}: {e})") from None


def load_difficulty(path: str | Path) -> Difficulty:
    """A CSV with one column named like ``*difficulty*`` and either an ``instruction`` column or the
    eval-set position (an ``index`` column, an unnamed first column, or row order)."""
    df = _read_csv(path, "--difficulty")
    cols = [c for c in df.columns if "difficulty" in str(c)]
    if len(cols) != 1:
        raise UserError(f"{path}: expected one column named like 'instruction_difficulty', got {list(df.columns)}")
    values = df[cols[0]].to_numpy(dtype=float)
    if np.isnan(values).any():
        raise UserError(f"{where(path, int(np.argmax(np.isnan(values))) + 2, cols[0])}: missing value")
    if "instruction" in df.columns:
        return Difficulty(by_instruction=dict(zip(df["instruction"].astype(str), values)))
    pos_col = "index" if "index" in df.columns else (df.columns[0] if str(df.columns[0]).startswith("Unnamed") else None)
    if pos_col is None:
        return Difficulty(by_position=values)
    by_pos = np.full(int(df[pos_col].max()) + 1, np.nan)
    by_pos[df[pos_col].to_numpy(dtype=int)] = values
    return Difficulty(by_position=by_pos)


def load_gamed(path: str | Path) -> tuple[lc_glm.GamedRows, Difficulty]:
    """Upstream's df_gamed.csv: the gamed baselines' rows, and the difficulty by eval-set position."""
    df = _read_csv(path, "--gamed")
    need = ["index", "preference", "std_delta_len", "instruction_difficulty", "not_gamed_baseline"]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}")
    if df["not_gamed_baseline"].astype(bool).any():
        raise UserError(f"{path}: field 'not_gamed_baseline': gamed rows must all be False")
    first = df.drop_duplicates("index")
    by_pos = np.full(int(first["index"].max()) + 1, np.nan)
    by_pos[first["index"].to_numpy(dtype=int)] = first["instruction_difficulty"].to_numpy(dtype=float)
    rows = lc_glm.GamedRows(preference=df["preference"].to_numpy(dtype=float),
                            std_delta_len=df["std_delta_len"].to_numpy(dtype=float),
                            difficulty=df["instruction_difficulty"].to_numpy(dtype=float))
    return rows, Difficulty(by_position=by_pos)


def load_glm_weights(path: str | Path) -> dict[str, dict]:
    df = _read_csv(path, "--glm-weights")
    missing = [c for c in lc_glm.FEATURES if c not in df.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}")
    return {str(r[df.columns[0]]): {c: float(r[c]) for c in lc_glm.FEATURES} for _, r in df.iterrows()}


def difficulty_for_rows(rows: list[dict], difficulty: Difficulty, reference: list[dict] | None,
                        legacy_row_order: bool) -> np.ndarray:
    """Per annotation row: the instruction's difficulty (or, legacy, the row position's)."""
    if legacy_row_order:
        if difficulty.by_position is None:
            raise UserError("--legacy-row-order needs a difficulty table by position, not by instruction")
        if len(difficulty.by_position) < len(rows):
            raise UserError(f"difficulty table has {len(difficulty.by_position)} rows, annotations {len(rows)}")
        return difficulty.by_position[: len(rows)].copy()
    table = difficulty.by_instruction
    if table is None:
        if reference is None:
            raise UserError("joining difficulty by instruction needs the eval-set order: pass "
                            "--reference-outputs (or use --legacy-row-order for upstream's positional join)")
        table = {r["instruction"]: difficulty.by_position[i]
                 for i, r in enumerate(reference) if i < len(difficulty.by_position)}
    out = np.array([table.get(r["instruction"], np.nan) for r in rows], dtype=float)
    if np.isnan(out).any():
        i = int(np.argmax(np.isnan(out)))
        raise UserError(f"annotation row {i}: no difficulty for instruction {rows[i]['instruction'][:60]!r}")
    return out
