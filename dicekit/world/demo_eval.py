"""The demo's evaluation files and its summary table (computed from those files only).

Per evaluated model (π_{-1}, π_0, π_t of each run) a folder ``<run>/evals/<model>/`` holds
(written once, reused on re-runs):

* ``outputs.jsonl``: ``samples`` sampled responses per eval prompt at the round's temperature, with
  the fixed reference response, both oracle qualities and the oracle judge's preference;
* ``outputs_greedy.jsonl``: the same for one greedy response per prompt;
* ``reward_pairs.jsonl``: the model's implicit reward against the model it was trained from
  (π_t vs π_{t-1}; none for π_{-1}) on the held-out pairs (two π_{-1} samples per eval prompt, the
  chosen one picked by a simulated annotator), with both oracle qualities.

``round_<t>/evals/world_oracle.json`` (π_t; round_0 = π_0) carries the same summary numbers in the
shape dicekit.view.report reads. ``<out>/world/`` holds copies of the world files the numbers depend on
(eval prompts with references, held-out and offline pairs, the world config), so the run folder
explains itself. :func:`summarize_demo` recomputes every number of the table from these files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from dicekit import rundir
from dicekit.data import read_jsonl
from dicekit.evals.reward_accuracy import accuracy
from dicekit.world import evaluate
from dicekit.world.oracle import quality

_SLUG = {"π_-1": "pi_m1"}


def slug(name: str) -> str:
    return _SLUG.get(name, name.replace("π_", "pi_"))


CONTROL = "control: oracle pairs"


def run_folder(out: Path, label: str) -> Path:
    """The folder of a run of the demo: "DICE" (the main run), "DICE <ablation>", or the control."""
    if label == "DICE":
        return out
    if label == CONTROL:
        return out / "controls" / "oracle_pairs"
    return out / "ablations" / label.split()[1]


def eval_dir(out: Path, label: str, name: str) -> Path:
    base = out if name in ("π_-1", "π_0") else run_folder(out, label)
    return base / "evals" / slug(name)


def copy_world_files(world, out: Path) -> Path:
    """Copy the small world files the table depends on into ``out/world`` (once)."""
    dst = out / "world"
    if not dst.exists():
        with rundir.atomic_path(dst) as tmp:
            tmp.mkdir()
            for src in (world.eval_prompts, world.heldout_pairs, world.offline_pairs, world.dice_prompts):
                shutil.copy2(src, tmp / Path(src).name)
            for stage_dir in (world.eval_prompts.parent, world.pi_m1, world.offline_pairs.parent, world.pi_0.parent):
                info = world.root / f"{stage_dir.name}.json"  # the stage's config, timing and sizes
                if info.exists():
                    shutil.copy2(info, tmp / f"stage_{stage_dir.name.split('-')[0]}.json")
    return dst


def evaluate_model(model: str, reference: str | None, world, folder: Path, *, seed: int, temperature: float,
                   top_p: float, samples: int, max_new_tokens: int, quiet: bool = True) -> Path:
    """Write the evaluation files of one model (skipping those that exist)."""
    prompts = read_jsonl(world.eval_prompts)
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "outputs.jsonl").exists():
        evaluate.generate_outputs(model, prompts, folder / "outputs.jsonl", temperature=temperature, top_p=top_p,
                                  max_new_tokens=max_new_tokens, seed=seed, samples=samples, quiet=quiet)
    if not (folder / "outputs_greedy.jsonl").exists():
        evaluate.generate_outputs(model, prompts, folder / "outputs_greedy.jsonl", temperature=0.0,
                                  max_new_tokens=max_new_tokens, seed=seed, samples=1, quiet=quiet)
    if reference is not None and not (folder / "reward_pairs.jsonl").exists():
        evaluate.score_pairs(model, reference, read_jsonl(world.heldout_pairs), folder / "reward_pairs.jsonl")
    return folder


def model_numbers(folder: Path) -> dict:
    """Every number of one model's row, from its evaluation files."""
    sampled = read_jsonl(folder / "outputs.jsonl")
    greedy = read_jsonl(folder / "outputs_greedy.jsonl")
    s, g = evaluate.summarize_outputs(sampled), evaluate.summarize_outputs(greedy)
    row = {"win_rate": s["win_rate"], "standard_error": s["standard_error"],
           "avg_length": s["avg_length"], "quality": s["quality"], "greedy_win_rate": g["win_rate"],
           "greedy_avg_length": g["avg_length"], "greedy_quality": g["quality"], "n_total": s["n_total"]}
    if (folder / "reward_pairs.jsonl").exists():
        r = evaluate.summarize_rewards(read_jsonl(folder / "reward_pairs.jsonl"))
        row.update(reward_acc_annotator=r["reward_acc_annotator"], reward_acc_oracle=r["reward_acc_oracle"])
    return row


def write_round_evals(out: Path, runs: dict[str, Path], rounds: int) -> None:
    """``round_<t>/evals/world_oracle.json`` of each run (round_0 = π_0, main run only)."""
    for label, run_dir in runs.items():
        for t in range(0 if label == "DICE" else 1, rounds + 1):
            path = run_dir / f"round_{t}" / "evals" / "world_oracle.json"
            if not path.exists():
                nums = model_numbers(eval_dir(out, label, f"π_{t}"))
                rundir.write_json(path, {"judge": "world-oracle", "reference": "fixed world responses", **nums})


def own_sample_row(run_dir: Path, t: int) -> dict:
    """The DICE precondition on round t's own samples (π_{t-1} ranked by its implicit reward).

    Pair numbers the round already wrote are read, not recomputed: "pairs right (untied)" and "pairs
    tied" from the round diagnostic in metrics.json (the world oracle on the best-vs-worst pairs at
    α*, at most ``diagnose_max_pairs`` of them), "len chosen − rejected" = its ``mean_len_diff``."""
    samples = pd.read_parquet(run_dir / f"round_{t}" / "samples.parquet")
    m = json.loads((run_dir / f"round_{t}" / "metrics.json").read_text())
    alpha = float(m["alpha"])
    own = evaluate.own_sample_diagnostics(samples, alphas=(alpha, 0.0))
    at_star, at_zero = own["by_alpha"][alpha], own["by_alpha"][0.0]
    # a round that trains on no generated pairs (γ = 1) still diagnoses its samples' pairs: not shown
    diag = (m.get("diagnostic") or {}).get("pairs_alpha_star") or {} if m.get("n_pairs_generated") != 0 else {}
    judged = diag.get("implicit_reward") or {}
    right = judged.get("agreement")
    tied = judged["n_ties"] / diag["n_pairs"] if diag.get("n_pairs") else None
    pairs = pd.read_parquet(run_dir / f"round_{t}" / "pairs.parquet")
    gen = pairs[pairs["source"] == "generated"]
    dq = [quality(p, c) - quality(p, r) for p, c, r in zip(gen["prompt"], gen["chosen"], gen["rejected"])]
    nan = float("nan")
    return {
        "round": t, "alpha*": alpha, "own-sample agreement (α*)": at_star["own_pair_agreement"],
        "own-sample agreement (α=0)": at_zero["own_pair_agreement"], "corr(reward_lr, quality)": at_star["own_corr_quality"],
        "corr(reward, length)": at_zero["own_corr_length"],
        "pairs right (untied)": nan if right is None else float(right),
        "pairs tied": nan if tied is None else float(tied),
        "quality chosen − rejected": float(np.mean(dq)) if dq else nan,
        "len chosen − rejected": nan if m.get("mean_len_diff") is None else float(m["mean_len_diff"]),
        "samples quality": own["own_quality"], "oracle best of K": own["oracle_best_of_k"],
    }


def world_row(out: Path) -> dict:
    """Offline pairs (annotator labels vs the oracle) and held-out pairs, from out/world/."""
    off = read_jsonl(out / "world" / "offline_pairs.jsonl")
    qc = np.array([quality(r["prompt"], r["chosen"]) for r in off])
    qr = np.array([quality(r["prompt"], r["rejected"]) for r in off])
    held = read_jsonl(out / "world" / "heldout_pairs.jsonl")
    hq = np.array([r["quality_chosen"] - r["quality_rejected"] for r in held])
    hl = np.array([len(r["chosen"]) - len(r["rejected"]) for r in held])
    return {
        "offline pairs": len(off), "oracle ties": float((qc == qr).mean()),
        "labels agree with oracle (untied)": float((qc > qr)[qc != qr].mean()),
        "len chosen − rejected": float(np.mean([len(r["chosen"]) - len(r["rejected"]) for r in off])),
        "held-out pairs": len(held), "held-out labels agree with oracle": accuracy(np.sign(hq)[hq != 0]),
        "longer-wins vs oracle (held-out)": accuracy((np.sign(hl) * np.sign(hq))[hq != 0]),
    }


def summarize_demo(out: Path, runs: dict[str, Path], rounds: int) -> dict:
    """The demo's tables as {section title: rows}, every number recomputed from files in ``out``."""
    models = []
    for label, run_dir in runs.items():
        names = ["π_-1", "π_0"] if label == "DICE" else []
        for name in names + [f"π_{t}" for t in range(1, rounds + 1)]:
            models.append({"run": label, "model": name, **model_numbers(eval_dir(out, label, name))})
    if (run_folder(out, CONTROL) / "evals" / "pi_1" / "outputs.jsonl").exists():
        models.append({"run": CONTROL, "model": "π_1", **model_numbers(eval_dir(out, CONTROL, "π_1"))})
    own = [{"run": label, **own_sample_row(run_dir, t)} for label, run_dir in runs.items() for t in range(1, rounds + 1)]
    return {
        "Models on the held-out eval prompts (judge: the world oracle; reference: fixed world responses)": models,
        "Implicit reward on the policy's own samples (the DICE precondition), per round": own,
        "World data": [world_row(out)],
        "Notes": NOTES,
    }


NOTES = (
    "Win rate: percent of eval comparisons the oracle judges better than the fixed reference response "
    "(draws count half), over sampled responses (the rounds' decoding) and over greedy ones. Quality: the "
    "oracle's mean score in [0, 1]. Reward accuracy: the implicit reward of π_t against π_{t-1} on held-out "
    "pairs of π_-1 samples, against the annotators' label and against the oracle (oracle ties left out); a "
    "pair counts as right only if the chosen side's reward is strictly higher (a reward tie counts as wrong, "
    "as RewardBench and dicekit eval reward-accuracy; the same rule for \"longer-wins\", where equal lengths "
    "count as wrong). Own-sample agreement: over pairs of one prompt's K round samples with different oracle "
    "quality, the fraction the length-regularised implicit reward orders like the oracle (a reward tie counts "
    "half; 0.5 = chance). Pairs right (untied) / pairs tied: the round diagnostic's oracle agreement on the "
    "best-vs-worst pairs at α* (pairs of equal quality left out) and the share of such ties; len chosen − "
    "rejected: the round's mean over its generated pairs (metrics.json). The oracle-pairs "
    "control is round 1 retrained with pairs picked by the oracle from the same samples (dicekit.world.control): "
    "what a perfect ranker would have given. The "
    "length-controlled win rate is not shown: alpaca_eval's GLM needs a per-instruction difficulty, which "
    "the world does not have, and without it the fit collapses to 50% for every model."
)


def format_summary(summary: dict) -> str:
    """Plain-text tables for the terminal."""
    lines = []
    for title, rows in summary.items():
        if not rows:
            continue
        if isinstance(rows, str):
            lines += ["", title, rows]
            continue
        df = pd.DataFrame(rows)
        lines += ["", title, df.to_string(index=False, float_format=lambda x: f"{x:.3f}")]
    return "\n".join(lines)
