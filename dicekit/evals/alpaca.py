"""AlpacaEval 2: its data, the annotation loop, the metrics from annotations, its file formats, and
:func:`evaluate_alpaca` (generate -> judge -> metrics, what `dicekit eval alpaca` runs).

Files follow alpaca_eval's formats so its tools read ours and ours read theirs:
- outputs (``model_outputs.json``; the eval set / reference outputs have the same shape): a JSON list
  of {instruction, output, generator, dataset};
- ``annotations.json``: a JSON list of {instruction, output_1 (baseline), generator_1, dataset,
  output_2 (model), generator_2, annotator, preference, price_per_example, time_per_example,
  raw_completion};
- ``leaderboard.csv``: one row per model (first column the name) with win_rate, standard_error,
  n_wins, n_wins_base, n_draws, n_total, discrete_win_rate, mode, avg_length,
  length_controlled_winrate, lc_standard_error.

The eval set with the gpt4_1106_preview reference outputs is read from a local file or from the hub
dataset tatsu-lab/alpaca_eval's data file (never through its loading script, which datasets ≥ 4
rejects). Model outputs are joined to the reference by instruction text.

Instruction difficulty (for the LC GLM) is joined to annotation rows by instruction text; upstream
joins by row position (``legacy_row_order``), which shifts the difficulty vector for files with
missing rows — its published LC numbers include that shift.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from dicekit import rundir
from dicekit.errors import JudgeCallsFailed, UserError, where
from dicekit.evals import lc_glm
from dicekit.evals.generation import GenerationSettings, generate_answers, model_name
from dicekit.evals.judges import Comparison, Judgement, PairwiseJudge, preference_from_raw_completion, top_logprobs_of
from dicekit.evals.metrics import alpaca_metrics
from dicekit.progress import say

HUB_REPO = "tatsu-lab/alpaca_eval"
HUB_FILES = {"reference": "alpaca_eval_gpt4_baseline.json", "difficulty": "instruction_difficulty.csv",
             "gamed": "df_gamed.csv"}
ANNOTATION_FIELDS = ("instruction", "output_1", "generator_1", "output_2", "generator_2", "preference")
LEADERBOARD_COLUMNS = ("win_rate", "standard_error", "n_wins", "n_wins_base", "n_draws", "n_total",
                       "discrete_win_rate", "mode", "avg_length", "length_controlled_winrate", "lc_standard_error")
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
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a JSON list of {what} records, got {type(data).__name__}")
    if not data:
        raise UserError(f"{path}: the {what} file is empty")
    for i, row in enumerate(data):
        if not isinstance(row, dict):
            raise UserError(f"{where(path, i)}: record is not a JSON object")
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
                raise UserError(f"{where(path, i, key)}: missing or not a string")
        if row["instruction"] in seen:
            raise UserError(f"{where(path, i, 'instruction')}: duplicate instruction")
        seen.add(row["instruction"])
        if name is not None:
            row["generator"] = name
        if not isinstance(row.get("generator"), str) or not row["generator"]:
            raise UserError(f"{where(path, i, 'generator')}: missing (or pass --name)")
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
        raise UserError(f"{where(path, i, 'preference')}: not a number ({value!r})") from None
    if math.isnan(p):
        raise UserError(f"{where(path, i, 'preference')}: NaN preference (a failed judgement); "
                        "re-annotate or drop the row")
    if p == 0.0:
        p = 1.5  # legacy draw
    if not 1.0 <= p <= 2.0:
        raise UserError(f"{where(path, i, 'preference')}: {p} is outside [1, 2]")
    return p


def load_annotations(path: str | Path) -> list[dict]:
    """An annotations.json of one model against one baseline, checked."""
    rows = read_json_list(path, "annotations")
    for i, row in enumerate(rows):
        missing = [k for k in ANNOTATION_FIELDS if k not in row]
        if missing:
            raise UserError(f"{where(path, i)}: missing field(s) {', '.join(missing)}")
        for k in ("instruction", "output_1", "output_2"):
            if not isinstance(row[k], str):
                raise UserError(f"{where(path, i, k)}: not a string")
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
            raise UserError(f"{where(path, i, 'raw_completion')}: neither 'm' nor 'M' among the top logprobs")
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


# --- metrics ---------------------------------------------------------------------------------------

def compute_metrics(rows: list[dict], difficulty: np.ndarray | None = None, gamed: lc_glm.GamedRows | None = None,
                    glm_weights: dict[str, dict] | None = None) -> dict:
    """Raw metrics, plus LC ones when ``difficulty`` (per row) is given."""
    prefs = [r["preference"] for r in rows]
    out: dict = alpaca_metrics(prefs, [r["output_2"] for r in rows])
    if difficulty is None:
        return out
    model, baseline = str(rows[0]["generator_2"]), str(rows[0]["generator_1"])
    if glm_weights is not None:
        for name in (model, baseline):
            if name not in glm_weights:
                raise UserError(f"--glm-weights has no row for {name!r}")
        probs = lc_glm.predict_from_published(glm_weights[model], glm_weights[baseline], difficulty)
        out["lc_glm"], out["lc_official"] = "published_weights", True
    elif model == baseline:
        probs = np.full(len(rows), 0.5)
        out["lc_glm"], out["lc_official"] = "length_controlled_v1", True
    else:
        sdl = lc_glm.std_delta_len([len(r["output_1"]) for r in rows], [len(r["output_2"]) for r in rows])
        weights = lc_glm.fit_lc_glm(np.array(prefs, dtype=float), sdl, difficulty, gamed)
        probs = lc_glm.predict_lc(weights, difficulty)
        out["lc_weights"] = weights.as_row()
        out["lc_glm"] = "length_controlled_v1" if gamed is not None else "length_controlled_noreg"
        out["lc_official"] = gamed is not None
    out["length_controlled_winrate"], out["lc_standard_error"] = lc_glm.lc_summary(probs)
    return out


# --- annotating ------------------------------------------------------------------------------------

@dataclass
class AnnotateStats:
    n_items: int = 0
    n_identical: int = 0
    n_cached: int = 0
    n_called: int = 0
    n_failed: int = 0
    price_usd: float = 0.0
    call_time_s: float = 0.0
    wall_time_s: float = 0.0
    first_error: str | None = None


def annotate(items: Sequence[Comparison], judge, cache=None, chunk: int = 64,
             on_progress: Callable[[int], None] | None = None) -> tuple[list[Judgement | None], AnnotateStats]:
    """Judge each item once: identical outputs are draws, cached items are reused, the rest are
    judged and cached as each result arrives (so an interrupted run resumes without repeats)."""
    start = time.perf_counter()
    stats = AnnotateStats(n_items=len(items))
    results: list[Judgement | None] = [None] * len(items)
    todo = []
    for i, item in enumerate(items):
        if item.output_1 == item.output_2:
            results[i] = Judgement(preference=1.5)
            stats.n_identical += 1
        elif cache is not None and (hit := cache.get(item)) is not None:
            results[i] = hit
            stats.n_cached += 1
        else:
            todo.append(i)

    def record(i: int, judgement: Judgement) -> None:
        results[i] = judgement
        stats.n_called += 1
        stats.price_usd += judgement.price
        stats.call_time_s += judgement.time
        if judgement.preference is None:
            stats.n_failed += 1
            stats.first_error = stats.first_error or judgement.error or "no preference"
        elif cache is not None:
            cache.put(items[i], judgement)
        if on_progress is not None:
            on_progress(1)

    if hasattr(judge, "judge_detailed"):  # reports each result as it arrives
        judge.judge_detailed([items[i] for i in todo], on_result=lambda j, jd: record(todo[j], jd))
    else:
        for lo in range(0, len(todo), chunk):
            idx = todo[lo: lo + chunk]
            for i, pref in zip(idx, judge.judge([items[i] for i in idx])):
                record(i, Judgement(preference=None if pref is None else float(pref)))
    stats.wall_time_s = time.perf_counter() - start
    return results, stats


def annotation_records(rows: list[dict], judgements: Sequence[Judgement | None], annotator: str) -> list[dict]:
    out = []
    for row, j in zip(rows, judgements):
        out.append({**row, "annotator": annotator, "preference": None if j is None else j.preference,
                    "price_per_example": 0.0 if j is None else j.price,
                    "time_per_example": 0.0 if j is None else j.time,
                    "raw_completion": None if j is None else j.raw_completion})
    return out


# --- writing ---------------------------------------------------------------------------------------

def write_leaderboard(path: Path, name: str, metrics: dict, mode: str = "community") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    values = {**metrics, "mode": mode}
    with tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["", *LEADERBOARD_COLUMNS])
        w.writerow([name, *("" if values.get(c) is None else values[c] for c in LEADERBOARD_COLUMNS)])
    os.replace(tmp, path)


def stats_dict(stats: AnnotateStats) -> dict:
    return {f"judge_{k}": v for k, v in asdict(stats).items() if k != "first_error"}


# --- evaluating (what `dicekit eval alpaca` runs) -------------------------------------------------

@dataclass(frozen=True)
class LCInputs:
    """Inputs of the length-controlled win rate; without a difficulty there is no LC."""
    difficulty: str | None = None  # instruction difficulty CSV, or "hub"
    gamed: str | None = None  # gamed-baseline rows CSV (upstream df_gamed.csv), or "hub": the official fit
    glm_weights: str | None = None  # published per-model GLM coefficients instead of fitting
    legacy_row_order: bool = False  # join difficulty by row position, as upstream


def generate_outputs(model: str, reference: list[dict], settings: GenerationSettings = GenerationSettings(), *,
                     name: str | None = None, out: Path | None = None, quiet: bool = False) -> list[dict]:
    """The model's outputs on the eval set (``out/model_outputs.json``, reused when complete)."""
    name = name or model_name(model)
    path = out / "model_outputs.json" if out else None
    if path is not None and path.is_file():  # a finished generation stage is reused
        rows = load_outputs(path, "outputs")
        have = {r["instruction"] for r in rows}
        if rows[0]["generator"] == name and all(r["instruction"] in have for r in reference):
            say(f"reusing {path}")
            return rows
    texts = generate_answers(model, [r["instruction"] for r in reference], settings, quiet=quiet)
    rows = [{"instruction": r["instruction"], "output": t, "generator": name, "dataset": r.get("dataset")}
            for r, t in zip(reference, texts)]
    if path is not None:
        rundir.write_json(path, rows)
    return rows


def judge_rows(rows: list[dict], judge: PairwiseJudge, cache_dir: str | Path | None = None) -> tuple[list[dict], dict]:
    """(annotation records, judge statistics) for rows paired with the reference. Judgements are
    cached under ``cache_dir`` (default ~/.cache/dicekit/judge_annotations) for judges with an identity;
    raises :class:`JudgeCallsFailed` when some calls failed (the rest stay cached)."""
    from dicekit.evals.cache import AnnotationCache, default_cache_dir

    cache = None
    if hasattr(judge, "identity"):
        cache = AnnotationCache(cache_dir or default_cache_dir(), judge.identity())
    items = [Comparison(r["instruction"], r["output_1"], r["output_2"]) for r in rows]
    judgements, stats = annotate(items, judge, cache)
    say(f"judge {judge.name}: {stats.n_items} items, {stats.n_cached} cached, {stats.n_identical} identical, "
        f"{stats.n_called} called ({stats.n_failed} failed), ${stats.price_usd:.4f}, {stats.wall_time_s:.1f} s")
    if stats.n_failed:
        raise JudgeCallsFailed(f"{stats.n_failed} of {stats.n_called} judge calls failed (first: {stats.first_error}); "
                               "rerun the same command to retry them — the rest are cached")
    return annotation_records(rows, judgements, judge.name), stats_dict(stats)


def lc_inputs(rows: list[dict], lc: LCInputs, reference: list[dict] | None, reference_outputs: str | None):
    """(per-row difficulty, gamed rows, GLM weights) for :func:`compute_metrics`; all None without LC."""
    gamed, difficulty = None, None
    if lc.gamed:
        gamed, difficulty = load_gamed(lc.gamed)
    if lc.difficulty:
        difficulty = load_difficulty(lc.difficulty)
    if difficulty is None:
        if lc.glm_weights:
            raise UserError("--glm-weights needs --difficulty (or --gamed) for the instruction difficulties")
        return None, None, None
    if reference is None and difficulty.by_instruction is None and not lc.legacy_row_order:
        reference = load_outputs(reference_outputs, "reference outputs")
    per_row = difficulty_for_rows(rows, difficulty, reference, lc.legacy_row_order)
    weights = load_glm_weights(lc.glm_weights) if lc.glm_weights else None
    return per_row, gamed, weights


def evaluate_alpaca(*, model: str | None = None, outputs: str | None = None, annotations: str | None = None,
                    make_judge: Callable[[], PairwiseJudge] | None = None, reference_outputs: str | None = None,
                    name: str | None = None, out: str | Path | None = None, max_instances: int | None = None,
                    generation: GenerationSettings = GenerationSettings(), cache_dir: str | Path | None = None,
                    lc: LCInputs = LCInputs(), reparse_completions: bool = False, quiet: bool = False) -> dict:
    """AlpacaEval 2 of one model from exactly one source: ``model`` (generate, judge, metrics),
    ``outputs`` (a model_outputs.json: judge, metrics) or ``annotations`` (metrics only).

    ``make_judge`` builds the judge when judging starts (after generation, so a local judge model and
    the model under test are not in memory together). ``reference_outputs``: the eval set with the
    baseline's outputs (default: the hub file). Returns ``{"model": name, **metrics}`` and, with
    ``out``, writes model_outputs.json, annotations.json, leaderboard.csv and metrics.json there."""
    if sum(x is not None for x in (model, outputs, annotations)) != 1:
        raise ValueError("evaluate_alpaca: give exactly one of model, outputs, annotations")
    out = Path(out) if out is not None else None
    extra: dict = {}
    reference = None
    if annotations is not None:
        rows = load_annotations(annotations)
        if reparse_completions:
            rows, extra["n_reparsed"], extra["n_reparse_mismatch"] = reparse(rows, annotations)
    else:
        if make_judge is None:
            raise ValueError("evaluate_alpaca: judging needs make_judge")
        reference = load_outputs(reference_outputs, "reference outputs")
        if max_instances:
            reference = reference[:max_instances]
        if model is not None:
            answers = generate_outputs(model, reference, generation, name=name, out=out, quiet=quiet)
        else:
            answers = load_outputs(outputs, "outputs", name)
        pairs = pair_with_reference(reference, answers)
        if len(pairs) < max(len(reference), len(answers)):
            say(f"note: {len(pairs)} instructions judged; {len(reference) - len(pairs)} reference instructions have "
                f"no model output, {len(answers) - len(pairs)} model outputs match no reference instruction")
        rows, extra = judge_rows(pairs, make_judge(), cache_dir)
        if out is not None:
            rundir.write_json(out / "annotations.json", rows)
    difficulty, gamed, weights = lc_inputs(rows, lc, reference, reference_outputs)
    metrics = {**compute_metrics(rows, difficulty, gamed, weights), **extra}
    name = str(rows[0]["generator_2"])
    if out is not None:
        write_leaderboard(out / "leaderboard.csv", name, metrics)
        rundir.write_json(out / "metrics.json", {"model": name, **metrics})
    return {"model": name, **metrics}
