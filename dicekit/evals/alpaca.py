"""AlpacaEval 2: the annotation loop, the metrics from annotations, the files it writes, and
:func:`evaluate_alpaca` (generate -> judge -> metrics, what `dicekit eval alpaca` runs). Reading and
checking its input files (outputs, annotations, difficulty, GLM weights): ``dicekit.evals.alpaca_data``.

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
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from dicekit import rundir
from dicekit.errors import JudgeCallsFailed, UserError, where
from dicekit.evals import lc_glm
from dicekit.evals.alpaca_data import (difficulty_for_rows, load_annotations, load_difficulty,
                                      load_gamed, load_glm_weights, load_outputs, pair_with_reference, reparse)
from dicekit.evals.generation import GenerationSettings, generate_answers, model_name, within_context
from dicekit.evals.judges import Comparison, Judgement, PairwiseJudge
from dicekit.evals.metrics import alpaca_metrics
from dicekit.progress import say

LEADERBOARD_COLUMNS = ("win_rate", "standard_error", "n_wins", "n_wins_base", "n_draws", "n_total",
                       "discrete_win_rate", "mode", "avg_length", "length_controlled_winrate", "lc_standard_error")


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
                     name: str | None = None, out: Path | None = None, quiet: bool = False,
                     source: str = "the eval set") -> list[dict]:
    """The model's outputs on the eval set (``out/model_outputs.json``, reused when complete).
    Instructions longer than the model's context are an error naming ``source``'s record, or left
    out (``settings.long_prompts``) before the model is loaded."""
    name = name or model_name(model)
    path = out / "model_outputs.json" if out else None
    if path is not None and path.is_file():  # a finished generation stage is reused
        rows = load_outputs(path, "outputs")
        have = {r["instruction"] for r in rows}
        if rows[0]["generator"] == name and all(r["instruction"] in have for r in reference):
            say(f"reusing {path}")
            return rows
    keep = within_context(model, [r["instruction"] for r in reference], settings,
                          lambda i: where(source, field="instruction", record=i + 1))
    if not all(keep):
        say(f"{len(keep) - sum(keep)} instructions longer than the model's context left out", quiet)
        reference = [r for r, k in zip(reference, keep) if k]
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
            answers = generate_outputs(model, reference, generation, name=name, out=out, quiet=quiet,
                                       source=reference_outputs or "the AlpacaEval reference outputs")
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
