"""dicekit's Arena-Hard scores beside the official scripts' own, on synthetic judgment sets.

The official code is run from the user's arena-hard-auto checkouts (never copied), each in its own
process: v2.0 at 196f6b8 (``show_result.load_judgments`` for the battles; its style-control function
with the bootstrap replaced by one full-data fit, so the two point estimates are comparable — once
as the script fits (float32 L-BFGS, 50 iterations) and once with the same objective fitted to
convergence in float64, L-BFGS step 1) and
v0.1 at 0489bf3 (``show_result.get_battles_from_judgment``, ``utils_math.compute_mle_elo``,
``construct_style_matrices`` and ``fit_bt``; numpy 2's missing ``np.NAN`` alias is restored for it).
Needs torch, scikit-learn, pandas and tqdm.

    git clone https://github.com/lmarena/arena-hard-auto ah-v2 && git -C ah-v2 checkout 196f6b8
    git clone https://github.com/lmarena/arena-hard-auto ah-v01 && git -C ah-v01 checkout 0489bf3
    python benchmarks/arena_hard_parity.py --v2-checkout ah-v2 --v01-checkout ah-v01

The synthetic sets: 3 models; v2.0 with 60 hard_prompt and 30 creative_writing questions, ~3% of
judgments missing a game or a verdict; v0.1 with 100 questions; random verdicts skewed per model,
random token / markdown counts as answer metadata (``metadata`` / ``conv_metadata``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

LABELS = ["A>>B", "A>B", "A=B", "B>A", "B>>A"]
SKEW = {"m1": 0.2, "m2": 0.0, "m3": -0.25}
V2_BASE = {"hard_prompt": "o3-mini-2025-01-31", "creative_writing": "gemini-2.0-flash-001"}
V01_BASE = "gpt-4-0314"


def _meta(rng):
    return {"token_len": rng.randint(50, 900), "header_count": {"h1": rng.randint(0, 3), "h2": rng.randint(0, 4)},
            "list_count": {"ordered": rng.randint(0, 6), "unordered": rng.randint(0, 8)},
            "bold_count": {"**": rng.randint(0, 5), "__": 0}}


def _label(rng, skew, model_is_a):
    x = rng.gauss(skew, 0.5)  # > 0: the model is better
    i = 0 if x < -0.6 else 1 if x < -0.15 else 2 if x < 0.15 else 3 if x < 0.6 else 4
    return LABELS[4 - i] if model_is_a else LABELS[i]


def _write(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_v2_set(root: Path, seed: int = 3) -> None:
    rng = random.Random(seed)
    data = root / "data" / "arena-hard-v2.0"
    qs = [(f"h{i}", "hard_prompt") for i in range(60)] + [(f"c{i}", "creative_writing") for i in range(30)]
    _write(data / "question.jsonl", [{"uid": u, "category": c, "prompt": "?"} for u, c in qs])
    for m in [*SKEW, *V2_BASE.values()]:
        _write(data / "model_answer" / f"{m}.jsonl", [
            {"uid": u, "model": m, "metadata": _meta(rng),
             "messages": [{"role": "user", "content": "?"}, {"role": "assistant", "content": {"answer": "x"}}]} for u, _ in qs])
    for m, skew in SKEW.items():
        rows = []
        for u, c in qs:
            g1 = None if rng.random() < 0.03 else {"score": _label(rng, skew, False) if rng.random() > 0.03 else None}
            rows.append({"uid": u, "category": c, "judge": "gpt-4.1", "model": m, "baseline": V2_BASE[c],
                         "games": [g1, {"score": _label(rng, skew, True)}]})
        _write(data / "model_judgment" / "gpt-4.1" / f"{m}.jsonl", rows)


def write_v01_set(root: Path, seed: int = 7) -> None:
    rng = random.Random(seed)
    data = root / "data" / "arena-hard-v0.1"
    qs = [f"q{i}" for i in range(100)]
    _write(data / "question.jsonl", [{"question_id": q, "turns": [{"content": "?"}]} for q in qs])
    for m in [*SKEW, V01_BASE]:
        _write(data / "model_answer" / f"{m}.jsonl", [
            {"question_id": q, "model_id": m, "choices": [{"index": 0, "turns": [{"content": "x y"}]}],
             "conv_metadata": _meta(rng)} for q in qs])
    for m, skew in SKEW.items():
        _write(data / "model_judgment" / "j" / f"{m}.jsonl", [
            {"question_id": q, "model": m, "judge": "j", "games": [{"score": _label(rng, skew, False)},
                                                                    {"score": _label(rng, skew, True)}]} for q in qs])


# --- the official scripts, each run in its own process from its checkout -------------------------

def official_v2(checkout: str, root: str) -> dict:
    sys.path.insert(0, checkout)
    os.chdir(root)
    import show_result as sr
    from utils.math_utils import fit_pairwise_model

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        battles = sr.load_judgments(["gpt-4.1"], "arena-hard-v2.0")
    out = {"mean": {}, "n_battles": {}}
    for c in V2_BASE:
        b = battles[battles.category == c]
        out["mean"][c] = {m: 100 * float(v) for m, v in b.groupby("model").scores.mean().items()}
        out["n_battles"][c] = {m: int(v) for m, v in b.groupby("model").size().items()}
    import torch

    captured = {}
    keep = sr.format_confidence_interval

    def capture(mean, lower, upper, baseline=None):
        captured.update({m: 100 * float(s) for m, s in zip(mean["model"], mean["scores"])})
        return keep(mean, lower, upper, baseline)

    def converged(X, y, loss_type="bt"):  # the same objective in float64, L-BFGS (step 1) to a 1e-12 gradient
        torch.set_default_dtype(torch.float64)
        coefs = fit_pairwise_model(X.double(), y.double(), loss_type, lr=1.0, tol=1e-12, max_epochs=5000)[0]
        torch.set_default_dtype(torch.float32)
        return coefs[None].float(), None
    sr.format_confidence_interval = capture
    for key, fit in [("style", lambda X, y, loss_type="bt": (fit_pairwise_model(X, y, loss_type)[0][None], None)),
                     ("style_converged", converged)]:
        sr.bootstrap_pairwise_model = fit  # one full-data fit in place of the 100 bootstrap fits
        hard = battles[battles.category == "hard_prompt"].reset_index(drop=True)
        with contextlib.redirect_stdout(io.StringIO()):
            sr.print_leaderboard_with_style_features(hard, "arena-hard-v2.0", "hard_prompt", ["markdown", "length"])
        out[key] = dict(captured)
    return out


def official_v01(checkout: str, root: str) -> dict:
    import numpy as np

    if not hasattr(np, "NAN"):
        np.NAN = np.nan  # numpy 2 dropped the alias v0.1's utils_math uses
    sys.path.insert(0, checkout)
    os.chdir(root)
    import show_result as sr
    from utils_math import compute_mle_elo, construct_style_matrices, fit_bt, predict_win_rate

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        battles = sr.get_battles_from_judgment("arena-hard-v0.1", "j", baseline_model=V01_BASE, style_control=True)
        elo = compute_mle_elo(battles, baseline_model=V01_BASE)
        X, Y, models = construct_style_matrices(battles)
        style_elo, _ = fit_bt(X, Y, models, baseline_model=V01_BASE)
    return {"bt": {m: 100 * float(v) for m, v in predict_win_rate(elo.to_dict())[V01_BASE].items() if m != V01_BASE},
            "style": {m: 100 * float(v) for m, v in predict_win_rate(style_elo.to_dict())[V01_BASE].items() if m != V01_BASE}}


def _official(which: str, checkout: str, root: Path) -> dict:
    res = subprocess.run([sys.executable, __file__, "--official", which, checkout, str(root)],
                         capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


# --- dicekit -------------------------------------------------------------------------------------

def dicekit_v2(root: Path) -> dict:
    from dicekit.evals import arena_hard_v2 as v2

    data = root / "data" / "arena-hard-v2.0"
    rows = v2.load_judgments(sorted((data / "model_judgment" / "gpt-4.1").glob("*.jsonl")))
    answers = {p.stem: v2.load_answers(p)[1] for p in (data / "model_answer").glob("*.jsonl")}
    plain = v2.score(rows, rounds=0)
    style = v2.score(rows, ["hard_prompt"], answers=answers, control=("length", "markdown"), rounds=0)
    board = lambda res: {r["model"]: r["score"] for r in res["leaderboard"] if not r.get("baseline")}  # noqa: E731
    return {"mean": {c: board(plain[c]) for c in V2_BASE}, "style": board(style["hard_prompt"]),
            "n_battles": {c: {r["model"]: r["n_battles"] for r in plain[c]["leaderboard"] if not r.get("baseline")}
                          for c in V2_BASE}}


def dicekit_v01(root: Path) -> dict:
    from dicekit.evals import arena_hard as ah

    data = root / "data" / "arena-hard-v0.1"
    table = ah.battles_from_judgments(ah.load_judgments(sorted((data / "model_judgment" / "j").glob("*.jsonl"))), V01_BASE)
    answers = {p.stem: ah.load_answers(p)[1] for p in (data / "model_answer").glob("*.jsonl")}
    styled, _ = ah.with_style(table, answers)
    board = lambda t: {r["model"]: r["score"] for r in ah.leaderboard(t, rounds=0) if not r.get("baseline")}  # noqa: E731
    return {"bt": board(table), "style": board(styled)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--v2-checkout", required=True, help="arena-hard-auto at 196f6b8")
    p.add_argument("--v01-checkout", required=True, help="arena-hard-auto at 0489bf3")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        v2_root, v01_root = Path(tmp) / "v2", Path(tmp) / "v01"
        write_v2_set(v2_root)
        write_v01_set(v01_root)
        pairs = []
        off, ours = _official("v2", os.path.abspath(args.v2_checkout), v2_root), dicekit_v2(v2_root)
        for c in V2_BASE:
            assert off["n_battles"][c] == ours["n_battles"][c], (c, off["n_battles"][c], ours["n_battles"][c])
            pairs += [(f"v2.0 {c}, mean", m, off["mean"][c][m], ours["mean"][c][m]) for m in SKEW]
        pairs += [("v2.0 hard_prompt, style control (the script's fit)", m, off["style"][m], ours["style"][m]) for m in SKEW]
        pairs += [("v2.0 hard_prompt, style control (its objective, converged)", m, off["style_converged"][m],
                   ours["style"][m]) for m in SKEW]
        off, ours = _official("v01", os.path.abspath(args.v01_checkout), v01_root), dicekit_v01(v01_root)
        pairs += [("v0.1, Bradley-Terry", m, off["bt"][m], ours["bt"][m]) for m in SKEW]
        pairs += [("v0.1, style control", m, off["style"][m], ours["style"][m]) for m in SKEW]
    print("| set | model | official | dicekit | difference |\n|---|---|---|---|---|")
    for what, m, a, b in pairs:
        print(f"| {what} | {m} | {a:.4f} | {b:.4f} | {abs(a - b):.2g} |")
    print("\nbattle counts per model and category (v2.0): equal")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--official":
        fn = official_v2 if sys.argv[2] == "v2" else official_v01
        print(json.dumps(fn(sys.argv[3], sys.argv[4])))
    else:
        main()
